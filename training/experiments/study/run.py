"""Running a paired study: every config's arms trained as ensembles, measured, stored in Optuna.

The random ``sweep`` gives each remedy its own trials, configs and seeds, so a remedy's effect is
buried in config-to-config spread (``docs/study.md`` compares it with the paired spread). Here
every comparison is paired:

- ``n_configs`` base configs are drawn once from the study file's region (``design.py``) and
  written to ``study.json``, so the design is readable and diffable before anything trains;
- each config trains every arm (``design.arms``): seeds x attention dropout x the task's target
  axis x variants. Arms of one config and seed share initialisation and batches (the target
  changes the loss only), so dropout and target differences are paired;
- every arm carries every averager, all fed the same raw trajectory, so averaging differences are
  paired within one run;
- arms of one model shape train as one batched ensemble (``training/ensemble.py``).

After training, each arm's weights are measured (``measure.py``); ``python -m interp study-report``
turns the records into effects and verdicts.

One config is one Optuna trial. Storage, heartbeats, workers and the failure cap are the shared
runner's (``training/experiments/runner.py``): SQLite in the study folder by default, PostgreSQL
to share between machines, a killed worker's config retried, ``--resume``, and a stop after
``max_failures`` failed configs. An arm that diverges inside an otherwise healthy config is
recorded with its error and counted per arm. Worker processes stay alive across configs (Optuna's
loop runs inside each).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from training import atomic
from training.errors import ConfigError, WorkbenchError
from training.experiments.runner import (
    LOCAL_DB,
    count,
    create_study,
    database_errors,
    default_threads,
    halt_on_fault,
    halted,
    heartbeat_settings,
    make_storage,
    next_trial_number,
    read_state,
    record_failure,
    run_workers,
    storage_url,
    unique_name,
)
from training.experiments.study.design import (
    STUDY_FILE,
    arm_label,
    arms,
    check_spec,
    compiled_spec,
    config_cost,
    draw_configs,
    load_spec,
    max_failures,
)
from training.experiments.study.measure import measure_member
from training.scoped import num_threads, optuna_quiet

STATE_KEYS = {"spec": dict, "configs": list, "storage": str, "study_name": str}
"""What ``study.json`` holds, and of which type."""


def check_state(meta: dict) -> None:
    """A ConfigError unless the study file in ``meta`` still checks and its configs are the ones
    the file draws: a report or a resume never reads a design that was edited into another."""
    check_spec(meta["spec"], "its study file")
    if meta["configs"] != draw_configs(meta["spec"]):
        raise ConfigError("its configs are not the ones its study file draws")


def task_axis(cfg) -> str:
    """The name of the task's length axis ('set length s', 'move index'), stored on each record
    so that the report labels its plots without asking which task it has."""
    from training.tasks import registry

    return registry.entry(cfg.kind).task_cls.index_name


def run_config(
    study_dir: Path, spec: dict, index: int, values: dict, measures: Callable | None, progress: bool = False
) -> list[dict]:
    """Train and measure every arm of config ``index``; its records, also written to
    ``runs/cNNN/arms.json``."""
    from training import runs
    from training.ensemble import ensemble_key, train_ensemble
    from training.experiments.study.design import arm_config

    folder = study_dir / "runs" / f"c{index:03d}"
    members = arms(spec)
    cfgs = [arm_config(spec, values, arm) for arm in members]
    # a retried config starts again: prepare_run with overwrite replaces what a killed try left
    dirs = [runs.prepare_run(folder / arm.name, cfg, overwrite=True) for arm, cfg in zip(members, cfgs)]
    # arms of one shape train as one ensemble; variants that change the model (Post-Norm, scalable
    # softmax) make their own
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(json.dumps(ensemble_key(cfg), sort_keys=True), []).append(i)
    results = [None] * len(cfgs)
    for g, members_i in enumerate(groups.values()):
        trained = train_ensemble(
            [cfgs[i] for i in members_i],
            [dirs[i] for i in members_i],
            progress=progress,
            desc=f"config {index}" + (f", group {g + 1} of {len(groups)}" if len(groups) > 1 else ""),
        )
        for i, res in zip(members_i, trained):
            results[i] = res
    records = []
    for arm, cfg, res in zip(members, cfgs, results):
        record = {
            "config": index,
            **arm.to_dict(),
            "run_dir": str(res.run_dir.relative_to(study_dir)),
            "error": res.error,
            "train_range": list(cfg.shape.train_range),
            "axis": task_axis(cfg),
        }
        if res.error is None:
            record["weights"] = measure_member(res.run_dir, cfg, res.final, measures, spec.get("measure_sets", 512))
        records.append(record)
    atomic.write_json(folder / "arms.json", {"config": index, "values": values, "arms": records})
    return records


# -- Optuna plumbing ------------------------------------------------------------------------


def objective_factory(study_dir: Path, spec: dict, configs: list[dict], measures: Callable | None):
    def objective(trial):
        import optuna

        if "config" not in trial.user_attrs:  # not from the queue: no config was left for this worker
            raise optuna.TrialPruned("no config left")
        index = trial.suggest_int("config", 0, len(configs) - 1)  # the queued value
        taken = _taken_by(trial, index)
        if taken is not None:
            raise optuna.TrialPruned(f"config {index} is taken by trial {taken}")
        try:
            records = run_config(study_dir, spec, index, configs[index], measures)
            ok = [r for r in records if r["error"] is None]
            if not ok:
                raise WorkbenchError(f"every arm of config {index} failed; the first: {records[0]['error']}")
        except Exception as e:  # recorded on the trial, then Optuna marks it failed
            record_failure(trial, e)
            raise
        trial.set_user_attr("arms", records)
        trial.set_user_attr("failed_arms", sum(r["error"] is not None for r in records))
        return sum(r["weights"]["raw"]["summary"]["in_range"]["tv"] for r in ok) / len(ok)

    return objective


def _taken_by(trial, index: int) -> int | None:
    """Another trial of config ``index`` with a lower number that is queued, running or done.

    A dead worker's trial is failed and queued again by whichever process notices first; two
    processes noticing at once (Optuna checks for stale trials at the start of every trial, in
    every worker) queue it twice. Of the live copies of a config, only the lowest-numbered runs."""
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    for t in trial.study.get_trials(deepcopy=False, states=live):
        if t.number < trial.number and t.params.get("config", t.user_attrs.get("config")) == index:
            return t.number
    return None


def _queued(study) -> int:
    from optuna.trial import TrialState

    return count(study, TrialState.WAITING)


def _work(args, on_config_done: Callable | None = None) -> None:
    """One worker: take queued configs until none is left (or too many failed)."""
    study_dir, url, name, spec, configs, measures, threads = args
    with optuna_quiet(), num_threads(threads), database_errors(url):
        import optuna
        from optuna.trial import TrialState

        study = optuna.load_study(study_name=name, storage=make_storage(url))
        optuna.storages.fail_stale_trials(study)  # a config a killed worker held goes back in the queue
        if not _queued(study) or count(study, TrialState.FAIL) >= max_failures(spec):
            return

        def stop_when_done(st, _trial) -> None:
            if not _queued(st) or count(st, TrialState.FAIL) >= max_failures(spec):
                st.stop()

        callbacks = [stop_when_done, halt_on_fault] + ([on_config_done] if on_config_done else [])
        study.optimize(
            objective_factory(Path(study_dir), spec, configs, measures), callbacks=callbacks, catch=(Exception,)
        )


def run_study(
    study_dir: str | Path,
    spec_path: str | Path | None = None,
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
    measures: Callable | None = None,
    threads: int | None = None,
    compile: bool = False,
    scale: str | None = None,
    fixed: list[str] = (),
) -> dict:
    """Create (or resume) the study in ``study_dir`` and train every config with ``workers``
    local worker processes of ``threads`` threads each (default: the cores shared out among
    the workers); returns ``summarize``'s counts. ``compile`` compiles every ensemble's step
    (``compiled_spec``; a new study only: a resumed one keeps its study file's settings). ``scale``
    runs the study file at one of its ``scales`` (``scaled_spec``; a new study only too), and
    ``fixed`` adds overrides after the file's own (``load_spec``; a new study only)."""
    with optuna_quiet():
        return _run_study(
            Path(study_dir), spec_path, storage, workers, resume, progress, measures, threads, compile, scale, fixed
        )


def _run_study(
    study_dir: Path, spec_path, storage, workers, resume, progress, measures, threads, compile, scale=None, fixed=()
) -> dict:
    if workers < 1:
        raise WorkbenchError("--workers must be positive")
    if threads is not None and threads < 1:
        raise WorkbenchError("--threads must be positive")
    if (compile or scale or fixed) and resume:
        flag = "compile" if compile else "scale" if scale else "set"
        raise WorkbenchError(f"--{flag} applies to a new study; a resumed study keeps the settings of its study file")
    meta_path = study_dir / STUDY_FILE
    if resume:
        meta = read_state(meta_path, STATE_KEYS, "study to resume", check_state)
        spec, configs, stored, name = meta["spec"], meta["configs"], storage or meta["storage"], meta["study_name"]
    else:
        if meta_path.exists():
            raise WorkbenchError(f"{study_dir} already holds a study (use --resume)")
        spec = load_spec(spec_path, scale, fixed)  # checked in full before anything is written
        if compile:
            spec = compiled_spec(spec)
        configs = draw_configs(spec)
        study_dir.mkdir(parents=True, exist_ok=True)
        stored = storage or LOCAL_DB
        name = unique_name("wm-study", study_dir)
    url = storage_url(stored, study_dir, must_exist=resume and storage is None)
    study = create_study(study_dir, url, name, resume)
    with database_errors(url):
        return _train_configs(
            study_dir, study, url, name, spec, configs, stored, resume, workers, progress, measures, threads
        )


def _train_configs(study_dir, study, url, name, spec, configs, stored, resume, workers, progress, measures, threads):
    """Queue the configs (a new study: all; a resumed one: those neither done nor live) and run
    the workers until none is left."""
    import optuna

    if resume:
        optuna.storages.fail_stale_trials(study)
    todo = _unfinished(study, len(configs)) if resume else range(len(configs))
    for index in sorted(todo, key=lambda i: -config_cost(spec, configs[i])):  # stable: ties keep their order
        study.enqueue_trial({"config": index}, user_attrs={"config": index})
    if not resume:
        atomic.write_json(
            study_dir / STUDY_FILE,
            {
                "spec": spec,
                "configs": configs,
                "storage": stored,
                "study_name": name,
                "arms": [a.to_dict() for a in arms(spec)],
            },
        )
    threads = threads or default_threads(workers)
    args = (str(study_dir), url, name, spec, configs, measures, threads)
    since = next_trial_number(study)
    bar = _bar(len(configs), progress)
    try:
        while True:
            run_workers(_work, [args] * workers, lambda: _show(bar, study, len(configs)))
            fault = halted(study, since)
            if fault:
                raise WorkbenchError(
                    f"stopped by {fault}; finished configs are kept: when that is fixed, "
                    f"resume with: python -m training study --resume {study_dir}"
                )
            if not _recover(study, spec):
                break
    finally:
        bar.close()
    result = summarize(study, len(configs))
    if result["failed_configs"] >= max_failures(spec) and result["completed"] < len(configs):
        first = result["failures"][0]["error"] if result["failures"] else "unknown"
        raise WorkbenchError(
            f"stopped after {result['failed_configs']} failed configs and {result['completed']} completed "
            f"(limit {max_failures(spec)}); the first failure: {first}"
        )
    return result


def _unfinished(study, n_configs: int) -> list[int]:
    """Configs with no completed, queued or running trial: what a resumed study queues again,
    so that a config failed by a fault (a full disk, a lost database), or killed more often than
    Optuna retries, is not left out for good."""
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    held = {t.params.get("config", t.user_attrs.get("config")) for t in study.get_trials(deepcopy=False, states=live)}
    return [i for i in range(n_configs) if i not in held]


def _recover(study, spec) -> bool:
    """After the workers stopped: wait out the grace period of trials whose worker died, so they
    are queued again. True when there is queued work (run the workers again)."""
    import optuna
    from optuna.trial import TrialState

    if count(study, TrialState.FAIL) >= max_failures(spec):
        return False
    heartbeat, grace = heartbeat_settings()
    deadline = time.time() + grace + 2 * heartbeat
    while count(study, TrialState.RUNNING) and time.time() < deadline:
        optuna.storages.fail_stale_trials(study)
        time.sleep(0.5)
    optuna.storages.fail_stale_trials(study)
    return _queued(study) > 0


def _bar(n: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=n, desc="study configs", disable=not progress)


def _show(bar, study, n_configs: int) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    bar.n = min(len(done), n_configs)
    failed_arms = sum(t.user_attrs.get("failed_arms", 0) for t in done)
    bar.set_postfix_str(
        f"failed configs {sum(t.state == TrialState.FAIL for t in trials)}, failed arms {failed_arms}", refresh=False
    )
    bar.refresh()


def completed_records(study) -> list[dict]:
    """Every arm record of every completed config, each config once (a config completed twice,
    which only a worker presumed dead but still alive could cause, counts once)."""
    from optuna.trial import TrialState

    seen, out = set(), []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state != TrialState.COMPLETE or t.params["config"] in seen:
            continue
        seen.add(t.params["config"])
        out.extend(t.user_attrs["arms"])
    return out


def summarize(study, n_configs: int) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = {t.params["config"] for t in trials if t.state == TrialState.COMPLETE}
    # a config that failed and then completed on a retry is not a failure; one that failed more
    # than once counts once, with its last error
    last_failure = {t.params.get("config"): t for t in trials if t.state == TrialState.FAIL}
    failed = [t for c, t in last_failure.items() if c not in complete]
    records = completed_records(study)
    failed_arms = {}
    for r in records:
        if r["error"] is not None:
            key = arm_label(r)
            failed_arms[key] = failed_arms.get(key, 0) + 1
    return {
        "completed": len(complete),
        "n_configs": n_configs,
        "failed_configs": len(failed),
        "failures": [
            {"number": t.number, "config": t.params.get("config"), "error": t.user_attrs.get("error", "unknown")}
            for t in failed
        ],
        "arms": len(records),
        "failed_arms": failed_arms,
    }


def open_study(study_dir: str | Path):
    """(spec, configs, optuna study) of a study folder, for the report and notebooks."""
    study_dir = Path(study_dir)
    meta_path = study_dir / STUDY_FILE
    meta = read_state(meta_path, STATE_KEYS, "study", check_state)
    spec, configs, name = meta["spec"], meta["configs"], meta["study_name"]
    url = storage_url(meta["storage"], study_dir, must_exist=True)
    import optuna

    with optuna_quiet():
        try:
            study = optuna.load_study(study_name=name, storage=make_storage(url))
        except KeyError:
            raise WorkbenchError(f"study {name!r} not found in {url}") from None
    return spec, configs, study

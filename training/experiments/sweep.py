"""Random hyperparameter search on the set complement task (Optuna, seeded ``RandomSampler``).

A search space is a readable JSON file (``training/configs/sweep_default.json``, ``sweep_quick.json``):
a base config, ``fixed`` overrides, and ``params`` (``loguniform``/``uniform``/``int``/``choice``
per dotted config key). Every trial is a normal training run kept under ``DIR/trials/``; its
per-length metrics are stored on the trial as user attributes. The objective (minimised) is the
beyond-range TV of the averaged weights (raw when averaging is off).

The study lives in an SQLite file in the sweep folder by default; ``--storage postgresql://...``
shares one study between machines (the Optuna plumbing is ``runner.py``'s, shared with the
study). Trials that raise or diverge are recorded as failed with their reason. Workers send
heartbeats: a trial whose worker died (``kill -9``) is marked failed after a grace period and
re-queued with the same parameters, so the study still reaches its number of
completed trials. A space whose trials keep failing stops after ``max_failures`` failed trials
(default ``2 * n_trials + 10``) with one line naming the first error.
"""

from __future__ import annotations

from pathlib import Path

from training import atomic
from training.errors import ConfigError, WorkbenchError
from training.experiments.runner import (
    LOCAL_DB,
    check_shared_keys,
    count,
    create_study,
    database_errors,
    default_threads,
    halt_on_fault,
    halted,
    make_storage,
    next_trial_number,
    param_candidates,
    read_json,
    read_state,
    record_failure,
    run_workers,
    stop_after_failures,
    storage_url,
    suggest,
    trial_config,
    unique_name,
)
from training.scoped import num_threads, optuna_quiet


def max_failures(space: dict) -> int:
    """Failed trials after which a sweep stops: its own ``max_failures`` or 2 * n_trials + 10."""
    return int(space.get("max_failures", 2 * space["n_trials"] + 10))


MAX_SEED = (2**32 - 1) // 1000 - 1
"""The largest sweep seed: worker ``i`` seeds Optuna's sampler (32-bit seeds) with ``seed * 1000 + i``."""


def load_space(path: str | Path) -> dict:
    """Read and check a search space before anything is written: its keys, its trial count, every
    parameter range (low <= high, positive bounds on a log scale, integers for 'int', a non-empty
    list for 'choice'), and every bound and choice through the run config's own validation."""
    space = read_json(path, "search space")
    check_space(space, f"search space {path}")
    return space


SWEEP_STATE = {"space": dict, "storage": str, "study_name": str}
"""What ``sweep.json`` holds, and of which type."""


def check_sweep_state(meta: dict) -> None:
    """A ConfigError unless the search space in ``meta`` still checks."""
    check_space(meta["space"], "its search space")


def check_space(space, where: str) -> None:
    """Raise a one-line ConfigError (starting with ``where``) unless ``space`` is a valid space."""
    if not isinstance(space, dict):
        raise ConfigError(f"{where} must be a JSON object")
    unknown = set(space) - {"base", "n_trials", "seed", "fixed", "params", "max_failures"}
    if unknown:
        raise ConfigError(f"{where}: unknown key '{sorted(unknown, key=str)[0]}'")
    if "n_trials" not in space:
        raise ConfigError(f"{where} has no n_trials (the number of completed trials to reach)")
    check_shared_keys(space, where, ("n_trials", "max_failures"))
    if space.get("seed", 0) > MAX_SEED:  # worker i samples with seed * 1000 + i, and Optuna's are 32-bit
        raise ConfigError(f"{where}: seed must be in 0..{MAX_SEED} for a sweep, got {space['seed']}")
    params = space.get("params", {})
    try:
        trial_config(space, {})
    except ConfigError as e:
        raise ConfigError(f"{where}: base and fixed settings: {e}") from None
    for key, spec in params.items():
        for value in param_candidates(key, spec, where):
            try:
                trial_config(space, {key: value})
            except ConfigError as e:
                raise ConfigError(f"{where}: params.{key} = {value!r}: {e}") from None


def objective_factory(space: dict, sweep_dir: Path):
    def objective(trial):
        from training import runs
        from training.trainer import train

        values = {k: suggest(trial, k, spec) for k, spec in space["params"].items()}
        try:
            cfg = trial_config(space, values)
            # Trial numbers are unique, so a trial's directory is new unless it is resumed.
            run_dir = runs.prepare_run(sweep_dir / "trials" / f"trial_{trial.number:04d}", cfg)
            trial.set_user_attr("run_dir", str(run_dir))
            trial.set_user_attr(
                "config", cfg.to_dict()
            )  # what the analysis reads: every value, not only the sampled ones
            res = train(cfg, run_dir, progress=False)
        except Exception as e:  # recorded on the trial, then Optuna marks it failed
            record_failure(trial, e)
            raise
        final = {k: m.to_dict() for k, m in res.final.items()}
        for weights, m in final.items():
            trial.set_user_attr(f"{weights}_summary", m["summary"])
            trial.set_user_attr(f"{weights}_tv", m["values"]["tv"])
            trial.set_user_attr(f"{weights}_itr", m["values"]["itr"])
        trial.set_user_attr("train_range", final["raw"]["train_range"])
        chosen = final.get("averaged", final["raw"])["summary"]
        return chosen["beyond"]["tv"] if "beyond" in chosen else chosen["in_range"]["tv"]

    return objective


def _work(args, on_trial_done=None) -> None:
    """One worker: run trials until the sweep has its completed trials or too many failed."""
    sweep_dir, url, name, space, threads, index = args
    with optuna_quiet(), num_threads(threads), database_errors(url):
        import optuna
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        study = optuna.load_study(
            study_name=name,
            storage=make_storage(url),
            sampler=optuna.samplers.RandomSampler(seed=space.get("seed", 0) * 1000 + index),
        )
        if count(study, TrialState.COMPLETE) >= space["n_trials"] or count(study, TrialState.FAIL) >= max_failures(
            space
        ):
            return
        callbacks = [
            MaxTrialsCallback(space["n_trials"], states=(TrialState.COMPLETE,)),
            stop_after_failures(max_failures(space)),
            halt_on_fault,
        ] + ([on_trial_done] if on_trial_done else [])
        study.optimize(objective_factory(space, Path(sweep_dir)), callbacks=callbacks, catch=(Exception,))


def run_sweep(
    sweep_dir: str | Path,
    space_path: str | Path | None = None,
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Create (or resume) a study in ``sweep_dir`` and run ``workers`` local worker processes."""
    with optuna_quiet():
        return _run_sweep(sweep_dir, space_path, storage, workers, resume, progress)


def _run_sweep(sweep_dir, space_path, storage, workers, resume, progress) -> dict:
    import optuna

    if workers < 1:
        raise WorkbenchError("--workers must be positive")
    sweep_dir = Path(sweep_dir)
    meta_path = sweep_dir / "sweep.json"
    if resume:
        meta = read_state(meta_path, SWEEP_STATE, "sweep to resume", check_sweep_state)
        space, stored = meta["space"], storage or meta["storage"]
    else:
        if meta_path.exists():
            raise WorkbenchError(f"{sweep_dir} already holds a sweep (use --resume)")
        space = load_space(space_path)  # checked in full before anything is written
        sweep_dir.mkdir(parents=True, exist_ok=True)
        stored = storage or LOCAL_DB
    url = storage_url(stored, sweep_dir, must_exist=resume and storage is None)
    name = meta["study_name"] if resume else unique_name("wm", sweep_dir)
    study = create_study(sweep_dir, url, name, resume, sampler=optuna.samplers.RandomSampler(seed=space.get("seed", 0)))
    if not resume:
        atomic.write_json(meta_path, {"space": space, "storage": stored, "study_name": name})
    with database_errors(url):
        return _run_workers(sweep_dir, study, url, name, space, workers, progress)


def _run_workers(sweep_dir: Path, study, url: str, name: str, space: dict, workers: int, progress: bool) -> dict:
    threads = default_threads(workers)
    since = next_trial_number(study)
    bar = _trial_bar(space["n_trials"], progress)
    try:
        run_workers(
            _work,
            [(str(sweep_dir), url, name, space, threads, i) for i in range(workers)],
            lambda: _show(bar, study, space["n_trials"]),
            poll_s=1.0,
        )
    finally:
        bar.close()
    fault = halted(study, since)
    if fault:
        raise WorkbenchError(
            f"stopped by {fault}; finished trials are kept: when that is fixed, "
            f"resume with: python -m training sweep --resume {sweep_dir}"
        )
    result = summarize(study)
    if result["failed"] >= max_failures(space) and result["completed"] < space["n_trials"]:
        first = result["failures"][0]["error"] if result["failures"] else "unknown"
        raise WorkbenchError(
            f"stopped after {result['failed']} failed trials and {result['completed']} completed "
            f"(limit {max_failures(space)}); the first failure: {first}"
        )
    return result


def _trial_bar(n_trials: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=n_trials, desc="sweep trials", disable=not progress)


def _show(bar, study, n_trials: int) -> None:
    """Completed trials and the best beyond-range TV so far, read from the shared study."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    bar.n = min(len(done), n_trials)
    if done:
        bar.set_postfix_str(f"best beyond-range TV {min(t.value for t in done):.4f}", refresh=False)
    bar.refresh()


def summarize(study) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    return {
        "completed": len(complete),
        "failed": len(failed),
        "failures": [
            {"number": t.number, "error": t.user_attrs.get("error", "worker died (heartbeat lost)")} for t in failed
        ],
        "best": {"number": study.best_trial.number, "value": study.best_value, "params": study.best_params}
        if complete
        else None,
    }

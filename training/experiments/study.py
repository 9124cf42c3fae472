"""The paired study of the set-complement claims: configs x seeds x dropout x target, every arm
carrying every averager.

The random ``sweep`` gives each remedy its own trials, configs and seeds, so a remedy's effect is
buried in config-to-config spread (residual SD about 0.04 TV against a paired SD under 0.001).
Here every comparison is paired:

- ``n_configs`` base configs (widths, learning rate, batch size, weight decay) are drawn once,
  from the study file's converged region, with a seeded generator, balanced over the ``strata``
  parameters when the file names any; they are written to ``study.json``, so the design is
  readable and diffable before anything trains;
- each config trains every arm: ``seeds`` x attention dropout ``dropouts`` x target ``targets``.
  Arms of one config and seed share initialisation and batches (the target changes the loss
  only), so dropout and target differences are paired;
- every arm carries every averager (``averagers``: EMA, BEMA, the extrapolation control), all fed
  the same raw trajectory, so averaging differences are paired within one run;
- all arms of a config train as one batched ensemble (``training/ensemble.py``).

After training, each arm's raw weights and every average are measured: TV, ITR and exact-support
accuracy per length; calibrated TV (one temperature per model, fit on held-out in-range sets); and,
when the caller passes ``measures`` (the command line passes ``interp.dispersion.study_measures``),
the dispersion measures. ``python -m interp study-report`` turns them into effects and verdicts.

One config is one Optuna trial. Storage and failure handling are the sweep's: SQLite in the
study folder by default, PostgreSQL to share between machines, heartbeats so that a killed
worker's config is retried, ``--resume``, and a stop after ``max_failures`` failed configs. An arm
that diverges inside an otherwise healthy config is recorded with its error and counted per arm.
Worker processes stay alive across configs (Optuna's loop runs inside each).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import random
import time
from pathlib import Path
from typing import Callable

from training import atomic
from training.allocator import keep_freed_memory
from training.errors import ConfigError, WorkbenchError
from training.scoped import num_threads, optuna_quiet

from .sweep import (_candidates, _count, check_shared_keys, exit_with_parent, heartbeat_settings, make_storage,
                    read_json, trial_config)

STUDY_FILE = "study.json"
SPEC_KEYS = {"base", "fixed", "params", "n_configs", "seed", "seeds", "dropouts", "targets", "averagers",
             "region", "delta", "measure_sets", "max_failures", "note", "variants", "strata"}
REFERENCE = "baseline"
"""The variant every other variant is paired against (a study without ``variants`` has only it)."""
DEFAULT_REGION = {"metric": "tv", "range": "in_range", "max": 0.05}


def max_failures(spec: dict) -> int:
    """Failed configs after which a study stops: its own ``max_failures`` or n_configs + 5."""
    return int(spec.get("max_failures", spec["n_configs"] + 5))


def load_spec(path: str | Path) -> dict:
    """Read and check a study file before anything is written."""
    spec = read_json(path, "study file")
    check_spec(spec, f"study file {path}")
    return spec


def _list_of(spec: dict, key: str, ok: Callable[[object], bool], what: str, where: str) -> list:
    values = spec.get(key)
    if not isinstance(values, list) or not values or not all(ok(v) for v in values) or len(set(map(json.dumps, values))) != len(values):
        raise ConfigError(f"{where}: {key} must be a non-empty list of distinct {what}")
    return values


def check_spec(spec, where: str) -> None:
    """A one-line ConfigError (starting with ``where``) unless ``spec`` is a valid study file."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a JSON object")
    unknown = sorted(set(spec) - SPEC_KEYS, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
    if "n_configs" not in spec:
        raise ConfigError(f"{where} has no n_configs (the number of base configs to draw)")
    check_shared_keys(spec, where, ("n_configs", "max_failures", "measure_sets"))
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
    _list_of(spec, "seeds", is_int, "non-negative integers", where)
    dropouts = _list_of(spec, "dropouts", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                        "rates in [0, 1)", where)
    if 0 not in dropouts:
        raise ConfigError(f"{where}: dropouts must include 0 (the arm every dropout effect is paired against)")
    _list_of(spec, "targets", lambda v: v in ("sampled", "exact"), "'sampled' or 'exact'", where)
    delta = spec.get("delta", 0.02)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(f"{where}: delta (the smallest TV effect of interest) must be in (0, 1), got {delta!r}")
    region = spec.get("region", DEFAULT_REGION)
    if (not isinstance(region, dict) or set(region) - {"metric", "range", "max", "note"}
            or region.get("range", "in_range") not in ("in_range", "beyond")
            or not isinstance(region.get("max", 0.05), (int, float)) or isinstance(region.get("max"), bool)):
        raise ConfigError(f"{where}: region must be {{\"metric\": \"tv\", \"range\": \"in_range\", \"max\": 0.05, \"note\": ...}}")
    params = spec.get("params", {})
    variants = spec.get("variants", {REFERENCE: []})
    if (not isinstance(variants, dict) or REFERENCE not in variants
            or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in variants.values())
            or not all(isinstance(k, str) and k.replace("_", "").replace("-", "").isalnum() for k in variants)):
        raise ConfigError(f"{where}: variants must map names (letters, digits, _ and -) to lists of 'section.key=value' "
                          f"overrides, one of them '{REFERENCE}'")
    if not isinstance(spec.get("averagers", []), list):
        raise ConfigError(f"{where}: averagers must be a list of named averagers")
    for key, spec_k in params.items():
        if key in ("train.seed", "model.attn_dropout", "task.target", "train.steps"):
            raise ConfigError(f"{where}: params.{key} is set by the study's arms or fixed budget, not sampled")
        for value in _candidates(key, spec_k, where):
            _arm_or_error(spec, {key: value}, where, f"params.{key} = {value!r}")
    for name in spec.get("variants", {}):
        _arm_or_error(spec, {}, where, f"variants.{name}", variant=name)
    check_strata(spec, where)
    cfg = _arm_or_error(spec, {}, where, "base and fixed settings")
    if cfg.kind != "set_complement":
        raise ConfigError(f"{where}: the study runs on the set complement task, not {cfg.kind!r}")
    if not cfg.averagers:
        raise ConfigError(f"{where}: averagers is empty: every arm must carry the averagers the study compares")


def _arm_or_error(spec: dict, values: dict, where: str, what: str, variant: str = REFERENCE):
    try:
        return arm_config(spec, values, {"seed": spec["seeds"][0], "dropout": max(spec["dropouts"]),
                                         "target": spec["targets"][0], "variant": variant})
    except ConfigError as e:
        raise ConfigError(f"{where}: {what}: {e}") from None


def arm_config(spec: dict, values: dict, arm: dict):
    """The run config of one arm of the config ``values`` (sampled parameter values): the base,
    the fixed settings, the sampled values, the arm's variant overrides, then its seed, dropout and
    target, every averager on."""
    variant = spec.get("variants", {}).get(arm.get("variant", REFERENCE), [])
    own = {"train.seed": arm["seed"], "model.attn_dropout": arm["dropout"], "task.target": arm["target"],
           "averagers": spec.get("averagers", []), "averaging.mode": "none"}
    return trial_config(spec, values, list(variant) + [f"{k}={json.dumps(v)}" for k, v in own.items()])


def config_cost(spec: dict, values: dict) -> float:
    """A rough training cost of one config: steps x batch size x the weights each token's step
    multiplies by (attention, MLP, unembedding), from its reference arm's model. The study
    queues its configs costliest first, so that its workers finish close together instead of one
    running the last long config while the other idles (longest-processing-time-first)."""
    cfg = arm_config(spec, values, {"seed": spec["seeds"][0], "dropout": 0.0, "target": spec["targets"][0]})
    m = cfg.model
    mlp = 0 if m.attn_only else 2 * m.d_model * (m.d_mlp or 4 * m.d_model)
    per_token = m.n_layers * (4 * m.d_model * m.n_heads * m.d_head + mlp) + m.d_model * cfg.vocab()[1]
    return float(cfg.train.steps * cfg.train.batch_size * per_token)


def arms(spec: dict) -> list[dict]:
    """Every arm of one config, in a fixed order (``variant`` only when the study has variants)."""
    variants = list(spec["variants"]) if "variants" in spec else [None]
    return [{"seed": s, "dropout": float(p), "target": t, **({"variant": v} if v else {})}
            for v in variants for s in spec["seeds"] for p in spec["dropouts"] for t in spec["targets"]]


def arm_name(arm: dict) -> str:
    variant = f"{arm['variant']}_" if "variant" in arm else ""
    return f"{variant}s{arm['seed']}_p{arm['dropout']:g}_{arm['target']}"


def strata_cells(spec: dict) -> list[tuple]:
    """Every combination of the stratifying parameters' choices, in the study file's order."""
    return list(itertools.product(*(spec["params"][k]["values"] for k in spec.get("strata", []))))


def check_strata(spec: dict, where: str) -> None:
    """``strata`` names sampled ``choice`` parameters, and ``n_configs`` fills every cell equally."""
    strata = spec.get("strata", [])
    if not isinstance(strata, list) or len(set(map(str, strata))) != len(strata):
        raise ConfigError(f"{where}: strata must be a list of distinct sampled choice parameters")
    for key in strata:
        if not isinstance(key, str) or spec.get("params", {}).get(key, {}).get("type") != "choice":
            raise ConfigError(f"{where}: strata entry {key!r} is not a sampled choice parameter under params")
    cells = len(strata_cells(spec))
    if spec["n_configs"] % cells:
        raise ConfigError(f"{where}: n_configs ({spec['n_configs']}) must be a multiple of the {cells} strata cells, "
                          "so every cell gets the same number of configs")


def stratum(spec: dict, values: dict) -> tuple:
    """The stratum (cell) of one drawn config: its values of the stratifying parameters."""
    return tuple(values[k] for k in spec.get("strata", []))


def draw_configs(spec: dict) -> list[dict]:
    """``n_configs`` parameter draws from the region, reproducible from the study's seed.

    With ``strata``, the stratifying parameters are not drawn independently: every block of
    as many configs as there are cells takes each cell once, in a shuffled order (permuted
    blocks), so the cells are balanced. The report then resamples configs within cells: a
    parameter that moves an effect a lot (one head or two, for dropout) no longer widens its
    interval by chance imbalance, while the estimate stays the plain mean over configs."""
    import math

    rng = random.Random(spec.get("seed", 0))
    out = []
    for _ in range(spec["n_configs"]):
        values = {}
        for key, p in spec.get("params", {}).items():
            if p["type"] == "loguniform":
                values[key] = math.exp(rng.uniform(math.log(p["low"]), math.log(p["high"])))
            elif p["type"] == "uniform":
                values[key] = rng.uniform(p["low"], p["high"])
            elif p["type"] == "int":
                values[key] = rng.randint(p["low"], p["high"])
            else:
                values[key] = rng.choice(p["values"])
        out.append(values)
    if spec.get("strata"):
        cells = strata_cells(spec)
        for start in range(0, len(out), len(cells)):
            block = rng.sample(cells, len(cells))
            for values, cell in zip(out[start:start + len(cells)], block):
                values.update(zip(spec["strata"], cell))
    return out


# -- one config: train its arms as one ensemble, measure every set of weights ----------------

def measure_member(run_dir: Path, cfg, final: dict, measures: Callable | None, measure_sets: int) -> dict:
    """Every outcome of one arm's raw weights and averages: per-length TV (raw and calibrated) and
    their summaries in range and beyond, plus ``measures``' dispersion summaries."""
    from training import runs
    from training.tasks.set_complement_eval import calibrated_lengths

    task = cfg.make_task()
    out = {}
    for name, metrics in final.items():
        model = runs.load_run(run_dir, weights=name)
        cal, scale = calibrated_lengths(model, task, sets_per_length=cfg.train.final_eval_sets, seed=cfg.train.eval_seed)
        summary = metrics.summary()
        cal_summary = cal.summary()
        for part in summary:
            summary[part] = {"tv": summary[part]["tv"], "itr": summary[part]["itr"], "acc": summary[part]["acc"],
                             "cal_tv": cal_summary[part]["tv"], "cal_acc": cal_summary[part]["acc"]}
        record = {"summary": summary, "tv": metrics.values["tv"], "cal_tv": cal.values["tv"], "logit_scale": scale}
        if measures is not None:
            extra = measures(model, task, measure_sets, cfg.train.eval_seed)
            for part, values in extra.get("by_range", {}).items():
                summary.setdefault(part, {}).update(values)
            record["model"] = extra.get("model", {})
        out[name] = record
    return out


def run_config(study_dir: Path, spec: dict, index: int, values: dict, measures: Callable | None,
               progress: bool = False) -> list[dict]:
    """Train and measure every arm of config ``index``; its records, also written to
    ``runs/cNNN/arms.json``."""
    from training import runs
    from training.ensemble import ensemble_key, train_ensemble

    folder = study_dir / "runs" / f"c{index:03d}"
    members = arms(spec)
    cfgs = [arm_config(spec, values, arm) for arm in members]
    # a retried config starts again: prepare_run with overwrite replaces what a killed try left
    dirs = [runs.prepare_run(folder / arm_name(arm), cfg, overwrite=True) for arm, cfg in zip(members, cfgs)]
    # arms of one shape train as one ensemble; variants that change the model (Post-Norm, scalable
    # softmax) make their own
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(json.dumps(ensemble_key(cfg), sort_keys=True), []).append(i)
    results = [None] * len(cfgs)
    for g, members_i in enumerate(groups.values()):
        trained = train_ensemble([cfgs[i] for i in members_i], [dirs[i] for i in members_i], progress=progress,
                                 desc=f"config {index}" + (f", group {g + 1} of {len(groups)}" if len(groups) > 1 else ""))
        for i, res in zip(members_i, trained):
            results[i] = res
    records = []
    for arm, cfg, res in zip(members, cfgs, results):
        record = {"config": index, **arm, "run_dir": str(res.run_dir.relative_to(study_dir)), "error": res.error,
                  "train_range": list(cfg.shape.train_range)}
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
        try:
            records = run_config(study_dir, spec, index, configs[index], measures)
            ok = [r for r in records if r["error"] is None]
            if not ok:
                raise WorkbenchError(f"every arm of config {index} failed; the first: {records[0]['error']}")
        except Exception as e:  # recorded on the trial, then Optuna marks it failed
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        trial.set_user_attr("arms", records)
        trial.set_user_attr("failed_arms", sum(r["error"] is not None for r in records))
        return sum(r["weights"]["raw"]["summary"]["in_range"]["tv"] for r in ok) / len(ok)

    return objective


def _queued(study) -> int:
    from optuna.trial import TrialState

    return _count(study, TrialState.WAITING)


def _work(args, on_config_done: Callable | None = None) -> None:
    """One worker: take queued configs until none is left (or too many failed)."""
    study_dir, url, name, spec, configs, measures, threads = args
    with optuna_quiet(), num_threads(threads):
        import optuna
        from optuna.trial import TrialState

        study = optuna.load_study(study_name=name, storage=make_storage(url))
        optuna.storages.fail_stale_trials(study)  # a config a killed worker held goes back in the queue
        if not _queued(study) or _count(study, TrialState.FAIL) >= max_failures(spec):
            return

        def stop_when_done(st, _trial) -> None:
            if not _queued(st) or _count(st, TrialState.FAIL) >= max_failures(spec):
                st.stop()

        callbacks = [stop_when_done] + ([on_config_done] if on_config_done else [])
        study.optimize(objective_factory(Path(study_dir), spec, configs, measures), callbacks=callbacks,
                       catch=(Exception,))


def compiled_spec(spec: dict) -> dict:
    """The study file with every arm's ensemble step compiled (``train.compile=true`` added to its
    fixed settings, so the saved study file says so and a resumed study keeps it)."""
    return {**spec, "fixed": [f for f in spec["fixed"] if not f.startswith("train.compile=")] + ["train.compile=true"]}


def run_study(study_dir: str | Path, spec_path: str | Path | None = None, storage: str | None = None,
              workers: int = 1, resume: bool = False, progress: bool = True,
              measures: Callable | None = None, threads: int | None = None, compile: bool = False) -> dict:
    """Create (or resume) the study in ``study_dir`` and train every config with ``workers``
    local worker processes of ``threads`` threads each (default: the cores shared out among
    the workers); returns ``summarize``'s counts. ``compile`` compiles every ensemble's step
    (``compiled_spec``; a new study only: a resumed one keeps its study file's settings)."""
    with optuna_quiet():
        return _run_study(Path(study_dir), spec_path, storage, workers, resume, progress, measures, threads, compile)


def _run_study(study_dir: Path, spec_path, storage, workers, resume, progress, measures, threads, compile) -> dict:
    import optuna

    if workers < 1:
        raise WorkbenchError("--workers must be positive")
    if threads is not None and threads < 1:
        raise WorkbenchError("--threads must be positive")
    if compile and resume:
        raise WorkbenchError("--compile applies to a new study; a resumed study keeps the settings of its study file")
    meta_path = study_dir / STUDY_FILE
    if resume:
        if not meta_path.is_file():
            raise WorkbenchError(f"{study_dir} holds no study to resume ({STUDY_FILE} missing)")
        meta = json.loads(meta_path.read_text())
        spec, configs, url, name = meta["spec"], meta["configs"], storage or meta["storage"], meta["study_name"]
    else:
        if meta_path.exists():
            raise WorkbenchError(f"{study_dir} already holds a study (use --resume)")
        spec = load_spec(spec_path)  # checked in full before anything is written
        if compile:
            spec = compiled_spec(spec)
        configs = draw_configs(spec)
        study_dir.mkdir(parents=True, exist_ok=True)
        url = storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"
        import uuid

        name = f"wm-study-{study_dir.name}-{uuid.uuid4().hex[:8]}"  # unique: many studies may share a database
    try:
        study = optuna.create_study(study_name=name, storage=make_storage(url), direction="minimize", load_if_exists=True)
    except WorkbenchError:
        if not resume and study_dir.is_dir() and not any(study_dir.iterdir()):
            study_dir.rmdir()
        raise
    if not resume:
        for index in sorted(range(len(configs)), key=lambda i: -config_cost(spec, configs[i])):  # stable: ties keep their order
            study.enqueue_trial({"config": index}, user_attrs={"config": index})
        atomic.write_json(meta_path, {"spec": spec, "configs": configs, "storage": url, "study_name": name,
                                      "arms": arms(spec)})
    threads = threads or max(1, (os.cpu_count() or 2) // workers)
    args = (str(study_dir), url, name, spec, configs, measures, threads)
    while True:
        _run_workers(args, workers, study, len(configs), progress)
        if not _recover(study, spec):
            break
    result = summarize(study, len(configs))
    if result["failed_configs"] >= max_failures(spec) and result["completed"] < len(configs):
        first = result["failures"][0]["error"] if result["failures"] else "unknown"
        raise WorkbenchError(f"stopped after {result['failed_configs']} failed configs and {result['completed']} completed "
                             f"(limit {max_failures(spec)}); the first failure: {first}")
    return result


def _child_work(args, parent: int) -> None:
    """A spawned worker: ``_work``, ending itself when the study command that started it dies
    (``kill -9`` included), so no orphan goes on training; its config is then retried."""
    exit_with_parent(parent)
    keep_freed_memory()  # a worker process is ours (see training/allocator.py)
    _work(args)


def _run_workers(args, workers: int, study, n_configs: int, progress: bool) -> None:
    if workers == 1:  # in this process, the bar following each finished config
        bar = _bar(n_configs, progress)
        _show(bar, study, n_configs)
        try:
            _work(args, on_config_done=lambda st, _trial: _show(bar, st, n_configs))
        finally:
            bar.close()
        return
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child_work, args=(args, os.getpid())) for _ in range(workers)]
    for p in procs:
        p.start()
    bar = _bar(n_configs, progress)
    while any(p.is_alive() for p in procs):
        _show(bar, study, n_configs)
        # every few seconds: reading the trials parses every finished config's records
        for _ in range(10):
            if not any(p.is_alive() for p in procs):
                break
            time.sleep(0.5)
    _show(bar, study, n_configs)
    bar.close()
    for p in procs:
        p.join()


def _recover(study, spec) -> bool:
    """After the workers stopped: wait out the grace period of trials whose worker died, so they
    are queued again. True when there is queued work (run the workers again)."""
    import optuna
    from optuna.trial import TrialState

    if _count(study, TrialState.FAIL) >= max_failures(spec):
        return False
    heartbeat, grace = heartbeat_settings()
    deadline = time.time() + grace + 2 * heartbeat
    while _count(study, TrialState.RUNNING) and time.time() < deadline:
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
    bar.set_postfix_str(f"failed configs {sum(t.state == TrialState.FAIL for t in trials)}, failed arms {failed_arms}",
                        refresh=False)
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
    failed = [t for t in trials if t.state == TrialState.FAIL]
    records = completed_records(study)
    failed_arms = {}
    for r in records:
        if r["error"] is not None:
            key = f"dropout {r['dropout']:g}, {r['target']}"
            failed_arms[key] = failed_arms.get(key, 0) + 1
    return {
        "completed": len(complete),
        "n_configs": n_configs,
        "failed_configs": len(failed),
        "failures": [{"number": t.number, "config": t.params.get("config"), "error": t.user_attrs.get("error", "unknown")}
                     for t in failed],
        "arms": len(records),
        "failed_arms": failed_arms,
    }


def open_study(study_dir: str | Path):
    """(spec, configs, optuna study) of a study folder, for the report and notebooks."""
    study_dir = Path(study_dir)
    meta_path = study_dir / STUDY_FILE
    if not meta_path.is_file():
        raise WorkbenchError(f"{study_dir} holds no study ({STUDY_FILE} missing)")
    try:
        meta = json.loads(meta_path.read_text())
        spec, configs, url, name = meta["spec"], meta["configs"], meta["storage"], meta["study_name"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise WorkbenchError(f"{meta_path} is corrupt ({type(e).__name__})") from None
    import optuna

    with optuna_quiet():
        try:
            study = optuna.load_study(study_name=name, storage=make_storage(url))
        except KeyError:
            raise WorkbenchError(f"study {name!r} not found in {url}") from None
    return spec, configs, study

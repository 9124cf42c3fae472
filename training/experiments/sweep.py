"""Random hyperparameter search on the set complement task (Optuna, seeded ``RandomSampler``).

A search space is a readable JSON file (``training/configs/sweep_default.json``, ``sweep_quick.json``):
a base config, ``fixed`` overrides, and ``params`` (``loguniform``/``uniform``/``int``/``choice``
per dotted config key). Every trial is a normal training run kept under ``DIR/trials/``; its
per-length metrics are stored on the trial as user attributes. The objective (minimised) is the
beyond-range TV of the averaged weights (raw when averaging is off).

The study lives in an SQLite file in the sweep folder by default; ``--storage postgresql://...``
shares one study between machines. Trials that raise or diverge are recorded as failed with their
reason. Workers send heartbeats: a trial whose worker died (``kill -9``) is marked failed after a
grace period and re-queued with the same parameters, so the study still reaches its number of
completed trials. A space whose trials keep failing stops after ``max_failures`` failed trials
(default ``2 * n_trials + 10``) with one line naming the first error.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
from pathlib import Path

from training import atomic
from training.allocator import keep_freed_memory
from training.errors import ConfigError, WorkbenchError
from training.scoped import num_threads, optuna_quiet


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: a worker that dies is noticed the grace
    period after its last heartbeat. Read when a storage is opened (tests shorten them)."""
    return int(os.environ.get("WM_SWEEP_HEARTBEAT_S", 5)), int(os.environ.get("WM_SWEEP_GRACE_S", 20))


def max_failures(space: dict) -> int:
    """Failed trials after which a sweep stops: its own ``max_failures`` or 2 * n_trials + 10."""
    return int(space.get("max_failures", 2 * space["n_trials"] + 10))


def load_space(path: str | Path) -> dict:
    """Read and check a search space before anything is written: its keys, its trial count, every
    parameter range (low <= high, positive bounds on a log scale, integers for 'int', a non-empty
    list for 'choice'), and every bound and choice through the run config's own validation."""
    space = read_json(path, "search space")
    check_space(space, f"search space {path}")
    return space


def read_json(path: str | Path, what: str):
    """The parsed JSON of ``path``, or a one-line ConfigError naming ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path} is not valid JSON: {e}") from None


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
    params = space.get("params", {})
    try:
        trial_config(space, {})
    except ConfigError as e:
        raise ConfigError(f"{where}: base and fixed settings: {e}") from None
    for key, spec in params.items():
        for value in _candidates(key, spec, where):
            try:
                trial_config(space, {key: value})
            except ConfigError as e:
                raise ConfigError(f"{where}: params.{key} = {value!r}: {e}") from None


def check_shared_keys(spec: dict, where: str, counts: tuple[str, ...]) -> None:
    """The checks a search space and a study file share: the ``counts`` keys positive integers, a
    non-negative seed, a base preset name or path, a list of fixed overrides, a params object."""
    for key in counts:
        value = spec.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    if not isinstance(spec.get("base", "demo"), str):
        raise ConfigError(f"{where}: base must be a preset name or a .json path, got {spec['base']!r}")
    fixed = spec.get("fixed", [])
    if not isinstance(fixed, list) or not all(isinstance(f, str) for f in fixed):
        raise ConfigError(f"{where}: fixed must be a list of 'section.key=value' strings")
    if not isinstance(spec.get("params", {}), dict):
        raise ConfigError(f"{where}: params must be an object of 'section.key': {{type, ...}}")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _candidates(key: str, spec, where: str) -> list:
    """The values of a parameter that must each give a valid config: its bounds, or its choices."""
    if not isinstance(spec, dict) or spec.get("type") not in ("loguniform", "uniform", "int", "choice"):
        raise ConfigError(f"{where}: params.{key}.type must be loguniform, uniform, int or choice")
    kind = spec["type"]
    allowed = {"type", "values"} if kind == "choice" else {"type", "low", "high"}
    extra = sorted(set(spec) - allowed, key=str)
    if extra:
        raise ConfigError(f"{where}: params.{key} of type {kind} takes {', '.join(sorted(allowed))}, not '{extra[0]}'")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: params.{key}.values must be a non-empty list")
        return values
    low, high = spec.get("low"), spec.get("high")
    if not (_number(low) and _number(high)):
        raise ConfigError(f"{where}: params.{key} needs finite numbers low and high, got {low!r} and {high!r}")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where}: params.{key} of type int needs integer bounds, got {low!r} and {high!r}")
    if low > high:
        raise ConfigError(f"{where}: params.{key} has low {low!r} above high {high!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: params.{key} is loguniform, so its bounds must be positive, got low {low!r}")
    return [low, high]


def _suggest(trial, key: str, spec: dict):
    kind = spec["type"]
    if kind == "loguniform":
        return trial.suggest_float(key, spec["low"], spec["high"], log=True)
    if kind == "uniform":
        return trial.suggest_float(key, spec["low"], spec["high"])
    if kind == "int":
        return trial.suggest_int(key, spec["low"], spec["high"])
    return trial.suggest_categorical(key, spec["values"])


def trial_config(space: dict, values: dict, extra: list[str] = ()):
    """The run config of the space's base with its fixed overrides, then ``values`` (key: value),
    then ``extra`` ('section.key=value' strings)."""
    from training.config import load_config, preset_path

    base = space.get("base", "demo")
    base_path = preset_path(base) if not str(base).endswith(".json") else Path(base)
    return load_config(base_path, list(space.get("fixed", [])) + [f"{k}={json.dumps(v)}" for k, v in values.items()]
                       + list(extra))


def objective_factory(space: dict, sweep_dir: Path):
    def objective(trial):
        from training import runs
        from training.trainer import train

        values = {k: _suggest(trial, k, spec) for k, spec in space["params"].items()}
        try:
            cfg = trial_config(space, values)
            # Trial numbers are unique, so a trial's directory is new unless it is resumed.
            run_dir = runs.prepare_run(sweep_dir / "trials" / f"trial_{trial.number:04d}", cfg)
            trial.set_user_attr("run_dir", str(run_dir))
            trial.set_user_attr("config", cfg.to_dict())  # what the analysis reads: every value, not only the sampled ones
            res = train(cfg, run_dir, progress=False)
        except Exception as e:  # recorded on the trial, then Optuna marks it failed
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        final = {k: m.to_dict() for k, m in res.final.items()}
        for kind, m in final.items():
            trial.set_user_attr(f"{kind}_summary", m["summary"])
            trial.set_user_attr(f"{kind}_tv", m["values"]["tv"])
            trial.set_user_attr(f"{kind}_itr", m["values"]["itr"])
        trial.set_user_attr("train_range", final["raw"]["train_range"])
        chosen = final.get("averaged", final["raw"])["summary"]
        return chosen["beyond"]["tv"] if "beyond" in chosen else chosen["in_range"]["tv"]

    return objective


def make_storage(url: str):
    """Optuna RDB storage with heartbeats; call inside ``optuna_quiet()``."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    heartbeat, grace = heartbeat_settings()
    try:
        return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    except ImportError as e:
        raise WorkbenchError(f"storage {url!r} needs a missing database driver ({e.name})") from None
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkbenchError(f"cannot open study storage {url!r}: {msg}") from None


def _count(study, state) -> int:
    return sum(t.state == state for t in study.get_trials(deepcopy=False))


def _stop_on_failures(limit: int):
    """Optuna callback: stop this worker once the study holds ``limit`` failed trials (Optuna's
    MaxTrialsCallback counts completed trials only, so a failing space would loop for ever)."""
    from optuna.trial import TrialState

    def callback(study, _trial) -> None:
        if _count(study, TrialState.FAIL) >= limit:
            study.stop()

    return callback


def exit_with_parent(parent: int) -> None:
    """In a spawned worker: end this process as soon as ``parent`` (the command that started it)
    is gone, ``kill -9`` included, so no orphan goes on training; its trial is then retried."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child_worker(args, parent: int) -> None:
    exit_with_parent(parent)
    keep_freed_memory()  # a worker process is ours (see training/allocator.py)
    _worker(args)


def _worker(args, progress: bool = False) -> None:
    """One worker process (or, with one worker, the main process, which then shows the bar)."""
    with optuna_quiet(), num_threads(args[4]):
        _work(args, progress)


def _work(args, progress: bool) -> None:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    sweep_dir, url, name, space, _threads, index = args
    study = optuna.load_study(study_name=name, storage=make_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=space.get("seed", 0) * 1000 + index))
    callbacks = [MaxTrialsCallback(space["n_trials"], states=(TrialState.COMPLETE,)), _stop_on_failures(max_failures(space))]
    if _count(study, TrialState.COMPLETE) >= space["n_trials"] or _count(study, TrialState.FAIL) >= max_failures(space):
        return
    bar = _trial_bar(space["n_trials"], progress)
    _show(bar, study, space["n_trials"])
    callbacks.append(lambda st, _trial: _show(bar, st, space["n_trials"]))
    try:
        study.optimize(objective_factory(space, Path(sweep_dir)), callbacks=callbacks, catch=(Exception,))
    finally:
        bar.close()


def run_sweep(sweep_dir: str | Path, space_path: str | Path | None = None, storage: str | None = None,
              workers: int = 1, resume: bool = False, progress: bool = True) -> dict:
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
        if not meta_path.is_file():
            raise WorkbenchError(f"{sweep_dir} holds no sweep to resume (sweep.json missing)")
        meta = json.loads(meta_path.read_text())
        space, url = meta["space"], storage or meta["storage"]
    else:
        if meta_path.exists():
            raise WorkbenchError(f"{sweep_dir} already holds a sweep (use --resume)")
        space = load_space(space_path)  # checked in full before anything is written
        sweep_dir.mkdir(parents=True, exist_ok=True)
        url = storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    if resume:
        name = meta["study_name"]
    else:  # unique, so that many sweeps can share one database
        import uuid

        name = f"wm-{sweep_dir.name}-{uuid.uuid4().hex[:8]}"
    try:
        study = optuna.create_study(study_name=name, storage=make_storage(url), direction="minimize",
                                    sampler=optuna.samplers.RandomSampler(seed=space.get("seed", 0)), load_if_exists=True)
    except WorkbenchError:
        if not resume and sweep_dir.is_dir() and not any(sweep_dir.iterdir()):
            sweep_dir.rmdir()  # leave nothing behind for a study that could not be opened
        raise
    if not resume:
        atomic.write_json(meta_path, {"space": space, "storage": url, "study_name": name})
    threads = max(1, (os.cpu_count() or 2) // workers)
    args = (str(sweep_dir), url, name, space, threads)
    if workers == 1:
        _worker(args + (0,), progress=progress)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_child_worker, args=(args + (i,), os.getpid())) for i in range(workers)]
        for p in procs:
            p.start()
        _watch(study, space["n_trials"], procs, progress)
        for p in procs:
            p.join()
    result = summarize(study)
    if result["failed"] >= max_failures(space) and result["completed"] < space["n_trials"]:
        first = result["failures"][0]["error"] if result["failures"] else "unknown"
        raise WorkbenchError(f"stopped after {result['failed']} failed trials and {result['completed']} completed "
                             f"(limit {max_failures(space)}); the first failure: {first}")
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


def _watch(study, n_trials: int, procs, progress: bool) -> None:
    import time

    bar = _trial_bar(n_trials, progress)
    while any(p.is_alive() for p in procs):
        _show(bar, study, n_trials)
        time.sleep(1.0)
    _show(bar, study, n_trials)
    bar.close()


def summarize(study) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    return {
        "completed": len(complete),
        "failed": len(failed),
        "failures": [{"number": t.number, "error": t.user_attrs.get("error", "worker died (heartbeat lost)")} for t in failed],
        "best": {"number": study.best_trial.number, "value": study.best_value, "params": study.best_params} if complete else None,
    }

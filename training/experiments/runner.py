"""Optuna orchestration shared by the random search (``sweep.py``) and the paired study (``study/``).

Both keep their state in an Optuna storage (SQLite in their folder by default, PostgreSQL to share
between machines) and run worker processes that each take trials until the experiment is done.
What they share lives here:

- **experiment files**: reading one as JSON with a one-line error (``read_json``), the keys both
  kinds of file share (``check_shared_keys``), parameter ranges (``param_candidates``, ``suggest``)
  and the run config of a base, its fixed overrides and sampled values (``trial_config``);
- **storage**: ``make_storage`` opens it with heartbeats, so that a trial whose worker died
  (``kill -9``) is marked failed a grace period after its last heartbeat (``heartbeat_settings``)
  and retried, and on SQLite with locking transactions, so that two workers never take the same
  queued trial (``_serialize_sqlite``); ``create_study`` leaves no empty folder behind when the
  storage cannot be opened;
- **workers**: ``run_workers`` runs one worker in this process (which then shows the progress
  bar) or spawns several, each ending itself when the command that started it dies; a failure
  cap (``stop_after_failures``) stops a worker once the study holds too many failed trials;
- **faults**: an error of the machine rather than of a trial (a full disk, a database that stopped
  answering) stops the experiment at once with one line (``record_failure``, ``halt_on_fault``,
  ``halted``, ``database_errors``): the next trial would fail the same way, and a trial failed by
  the machine is retried by ``--resume``.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from training.allocator import keep_freed_memory
from training.errors import ConfigError, WorkbenchError

PARAM_TYPES = ("loguniform", "uniform", "int", "choice")


# -- experiment files -------------------------------------------------------------------------


def read_json(path: str | Path, what: str):
    """The parsed JSON of ``path``, or a one-line ConfigError naming ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path} is not valid JSON: {e}") from None


def read_state(path: Path, keys: dict[str, type], what: str, check: Callable[[dict], None] | None = None) -> dict:
    """An experiment folder's state file (``study.json``, ``sweep.json``): a JSON object holding
    ``keys``, each of its type (a string: a non-empty one), and passing ``check`` (which raises a
    ConfigError), else a one-line WorkbenchError naming the file (missing, truncated, not an
    object, lacking or mistyping a key, or holding a design that no longer checks), so that no
    resume or report ever reads a half-written or edited-wrong state."""
    if not path.is_file():
        raise WorkbenchError(f"{path.parent} holds no {what} ({path.name} missing)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorkbenchError(f"{path} is corrupt (not valid JSON: {e.msg} at line {e.lineno})") from None
    except OSError as e:
        raise WorkbenchError(f"{path} cannot be read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise WorkbenchError(f"{path} is corrupt (a JSON object expected)")
    for key, kind in keys.items():
        if key not in data:
            raise WorkbenchError(f"{path} is corrupt (it lacks '{key}')")
        if not isinstance(data[key], kind) or (kind is str and not data[key]):
            raise WorkbenchError(f"{path} is corrupt ('{key}' should be a {_KIND_NAMES.get(kind, kind.__name__)})")
    if check is not None:
        try:
            check(data)
        except ConfigError as e:
            raise WorkbenchError(f"{path} is corrupt ({e})") from None
    return data


_KIND_NAMES = {dict: "JSON object", list: "list", str: "non-empty string"}


def check_shared_keys(spec: dict, where: str, counts: tuple[str, ...]) -> None:
    """The checks a search space and a study file share: the ``counts`` keys positive integers, a
    non-negative seed, a base preset name or path, a list of fixed overrides, a params object."""
    for key in counts:
        value = spec.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"{where}: seed must be an integer in 0..2^63-1, got {seed!r}")
    if not isinstance(spec.get("base", "demo"), str):
        raise ConfigError(f"{where}: base must be a preset name or a .json path, got {spec['base']!r}")
    fixed = spec.get("fixed", [])
    if not isinstance(fixed, list) or not all(isinstance(f, str) for f in fixed):
        raise ConfigError(f"{where}: fixed must be a list of 'section.key=value' strings")
    if not isinstance(spec.get("params", {}), dict):
        raise ConfigError(f"{where}: params must be an object of 'section.key': {{type, ...}}")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def param_candidates(key: str, spec, where: str) -> list:
    """The values of a parameter that must each give a valid config: its bounds, or its choices."""
    if not isinstance(spec, dict) or spec.get("type") not in PARAM_TYPES:
        raise ConfigError(f"{where}: params.{key}.type must be loguniform, uniform, int or choice")
    ptype = spec["type"]
    allowed = {"type", "values"} if ptype == "choice" else {"type", "low", "high"}
    extra = sorted(set(spec) - allowed, key=str)
    if extra:
        raise ConfigError(f"{where}: params.{key} of type {ptype} takes {', '.join(sorted(allowed))}, not '{extra[0]}'")
    if ptype == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: params.{key}.values must be a non-empty list")
        return values
    low, high = spec.get("low"), spec.get("high")
    if not (_number(low) and _number(high)):
        raise ConfigError(f"{where}: params.{key} needs finite numbers low and high, got {low!r} and {high!r}")
    if ptype == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where}: params.{key} of type int needs integer bounds, got {low!r} and {high!r}")
    if low > high:
        raise ConfigError(f"{where}: params.{key} has low {low!r} above high {high!r}")
    if ptype == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: params.{key} is loguniform, so its bounds must be positive, got low {low!r}")
    return [low, high]


def suggest(trial, key: str, spec: dict):
    """One value of parameter ``key`` from an Optuna trial."""
    ptype = spec["type"]
    if ptype == "loguniform":
        return trial.suggest_float(key, spec["low"], spec["high"], log=True)
    if ptype == "uniform":
        return trial.suggest_float(key, spec["low"], spec["high"])
    if ptype == "int":
        return trial.suggest_int(key, spec["low"], spec["high"])
    return trial.suggest_categorical(key, spec["values"])


def trial_config(spec: dict, values: dict, extra: list[str] = ()):
    """The run config of the file's base with its fixed overrides, then ``values`` (key: value),
    then ``extra`` ('section.key=value' strings)."""
    from training.config import load_config, preset_path

    base = spec.get("base", "demo")
    base_path = preset_path(base) if not str(base).endswith(".json") else Path(base)
    return load_config(
        base_path, list(spec.get("fixed", [])) + [f"{k}={json.dumps(v)}" for k, v in values.items()] + list(extra)
    )


# -- storage ------------------------------------------------------------------------------------


LOCAL_DB = "study.db"
"""The SQLite file an experiment keeps in its own folder by default. Its state file records the
storage as this bare name, not an absolute URL, so a folder that is copied or moved keeps using
its own database (``storage_url`` resolves it against the folder it is read from)."""


def storage_url(stored: str, folder: Path, must_exist: bool = False) -> str:
    """The Optuna URL of a stored storage: the folder's own SQLite file for ``LOCAL_DB``, else as is
    (a PostgreSQL URL, or an absolute SQLite URL written before folders were self-contained).
    ``must_exist`` (resuming, reporting): a missing local database is a one-line error, never a
    new empty one created as a side effect."""
    if not isinstance(stored, str):
        raise WorkbenchError(f"{Path(folder)} has a corrupt state file (storage {stored!r})")
    if stored != LOCAL_DB:
        return stored
    db = Path(folder) / LOCAL_DB
    if must_exist and not db.is_file():
        raise WorkbenchError(f"{folder} has lost its database ({LOCAL_DB} missing)")
    return f"sqlite:///{db.resolve()}"


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: a worker that dies is noticed the grace
    period after its last heartbeat. Read when a storage is opened (tests shorten them)."""
    return int(os.environ.get("WM_SWEEP_HEARTBEAT_S", 5)), int(os.environ.get("WM_SWEEP_GRACE_S", 20))


def _serialize_sqlite(engine) -> None:
    """Make every transaction on ``engine`` take SQLite's write lock at its start (BEGIN IMMEDIATE).

    Optuna takes a queued trial by reading it as WAITING and then setting it RUNNING, which is
    atomic only if the read is inside the transaction. Python's sqlite3 driver opens the
    transaction at the first write, after the read, so two workers could both read WAITING and
    both run the same trial (measured: 4 processes popping 200 queued trials took 227). This is
    SQLAlchemy's documented pysqlite recipe; PostgreSQL locks the row itself (FOR UPDATE)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver opens nothing by itself

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners were attached are dropped


CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a database server to answer before a one-line error."""

SQLITE_LOCK_WAIT_S = 60
"""Seconds a worker waits for another's SQLite write lock before giving up."""


def make_storage(url: str):
    """Optuna RDB storage with heartbeats; call inside ``optuna_quiet()``."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    heartbeat, grace = heartbeat_settings()
    engine_kwargs = {}
    if url.startswith("postgresql"):
        # a server that accepts the connection and never answers would otherwise hang forever
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    elif url.startswith("sqlite"):
        # every transaction takes the write lock at its start (_serialize_sqlite); on a loaded
        # machine another worker can hold it longer than the driver's default 5 s wait, which
        # failed a test run with "database is locked"
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_WAIT_S}
    try:
        storage = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat,
            grace_period=grace,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
        )
        if url.startswith("sqlite"):
            _serialize_sqlite(storage.engine)
        _quiet_heartbeat(storage)
        return storage
    except ImportError as e:
        raise WorkbenchError(f"storage {url!r} needs a missing database driver ({e.name})") from None
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkbenchError(f"cannot open study storage {url!r}: {msg}") from None


def _quiet_heartbeat(storage) -> None:
    """Heartbeats that fail say nothing: Optuna records them from a thread, whose exception would
    print a traceback on the user's terminal when the database goes away. A missed heartbeat is
    harmless (the trial goes stale and is retried); the next write of the worker itself reports
    the fault, through ``database_errors``."""
    record = storage.record_heartbeat

    def record_heartbeat(trial_id: int) -> None:
        try:
            record(trial_id)
        except Exception:
            pass

    storage.record_heartbeat = record_heartbeat


def _first_line(e: BaseException) -> str:
    """The first line of the deepest cause's message: a database error's own words, not the
    wrapper Optuna and SQLAlchemy put around it."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def database_fault(e: BaseException) -> BaseException | None:
    """The storage fault (Optuna's or SQLAlchemy's) behind ``e``, or None; the chain is followed
    because Optuna, failing to record a trial on a lost database, can raise an error of its own
    (an ``UnboundLocalError`` in its clean-up) while handling it. Imports neither library."""
    optuna_exc, sqlalchemy_exc = sys.modules.get("optuna.exceptions"), sys.modules.get("sqlalchemy.exc")
    kinds = tuple(
        k
        for k in (
            getattr(optuna_exc, "StorageInternalError", None),
            getattr(sqlalchemy_exc, "SQLAlchemyError", None),
        )
        if k is not None
    )
    seen = set()
    while e is not None and id(e) not in seen and kinds:
        if isinstance(e, kinds):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def database_message(fault: BaseException, url: str | None = None) -> str:
    """One line for a storage fault: what failed, in the database's own words, and how to go on."""
    where = f" {_redacted(url)}" if url else ""
    return (
        f"the experiment's database{where} failed ({_first_line(fault)}); finished work is kept: "
        "resume with --resume once it answers again"
    )


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a storage fault inside the block (a server that stopped answering, a disk too full for
    SQLite) into a one-line ``WorkbenchError`` that says how to go on."""
    try:
        yield
    except Exception as e:
        fault = database_fault(e)
        if fault is None:
            raise
        raise WorkbenchError(database_message(fault, url)) from None


def _redacted(url: str) -> str:
    """``url`` without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable URL)"


FAULTS = (OSError, MemoryError)
"""Exceptions of the machine, not the trial: a full disk, a lost permission, memory."""


def record_failure(trial, e: BaseException) -> None:
    """Store why ``trial`` failed; a fault of the machine (``FAULTS``, or a database error) also
    marks it ``halt``, so that ``halt_on_fault`` stops the experiment instead of failing every
    remaining trial the same way."""
    trial.set_user_attr("error", f"{type(e).__name__}: {e}")
    if isinstance(e, FAULTS) or database_fault(e) is not None:
        trial.set_user_attr("halt", True)


def halt_on_fault(study, trial) -> None:
    """Optuna callback: stop this worker after a trial that failed on a fault of the machine."""
    if trial.user_attrs.get("halt"):
        study.stop()


def halted(study, since: int) -> str | None:
    """The error of a trial numbered ``since`` or later that failed on a fault of the machine."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number >= since and t.user_attrs.get("halt"):
            return t.user_attrs.get("error", "a fault of the machine")
    return None


def next_trial_number(study) -> int:
    """The number the next trial of ``study`` gets: ``halted`` looks only at trials from here on."""
    return len(study.get_trials(deepcopy=False))


def create_study(folder: Path, url: str, name: str, resume: bool, **kwargs):
    """Create (or, resuming, load) the Optuna study ``name`` in storage ``url``; a new experiment's
    folder is removed again when it is still empty and the storage cannot be opened."""
    import optuna

    try:
        storage = make_storage(url)
        if resume:  # never a new, empty study under the old name: that would silently start over
            try:
                return optuna.load_study(study_name=name, storage=storage, **kwargs)
            except KeyError:
                raise WorkbenchError(f"{folder}: its study {name!r} is not in {_redacted(url)}") from None
        return optuna.create_study(study_name=name, storage=storage, direction="minimize", **kwargs)
    except WorkbenchError:
        if not resume and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def unique_name(prefix: str, folder: Path) -> str:
    """A study name no other experiment has: many may share one database."""
    import uuid

    return f"{prefix}-{folder.name}-{uuid.uuid4().hex[:8]}"


def count(study, state) -> int:
    """Trials of the study in ``state``."""
    return sum(t.state == state for t in study.get_trials(deepcopy=False))


def stop_after_failures(limit: int):
    """Optuna callback: stop this worker once the study holds ``limit`` failed trials (Optuna's
    MaxTrialsCallback counts completed trials only, so a failing file would loop for ever)."""
    from optuna.trial import TrialState

    def callback(study, _trial) -> None:
        if count(study, TrialState.FAIL) >= limit:
            study.stop()

    return callback


# -- workers ------------------------------------------------------------------------------------


def exit_with_parent(parent: int) -> None:
    """In a spawned worker: end this process as soon as ``parent`` (the command that started it)
    is gone, ``kill -9`` included, so no orphan goes on training; its trial is then retried."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child(work: Callable, args, parent: int, errors) -> None:
    import threading

    from tqdm.auto import tqdm

    exit_with_parent(parent)
    keep_freed_memory()  # a worker process is ours (see training/allocator.py)
    # tqdm's default lock is a multiprocessing semaphore, which a worker killed mid-step cannot
    # release: the resource tracker would then warn about it on the user's terminal
    tqdm.set_lock(threading.RLock())
    try:
        work(args)
    except WorkbenchError as e:  # the command prints it, once: a worker says nothing itself
        errors.put(str(e))
        sys.exit(2)


def run_workers(work: Callable, args: list, show: Callable[[], None], poll_s: float = 5.0) -> None:
    """Run ``work(args[i])`` for each worker. One worker runs in this process, as
    ``work(args[0], on_trial_done)``, an Optuna callback that calls ``show`` after each trial;
    several run in spawned processes while this one calls ``show`` every ``poll_s`` seconds
    (reading the trials back costs a parse of every finished one). A worker's one-line error is
    raised here once every worker has ended."""
    if len(args) == 1:
        show()
        try:
            work(args[0], lambda _study, _trial: show())
        finally:
            show()
        return
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_child, args=(work, a, os.getpid(), errors)) for a in args]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        show()
        deadline = time.time() + poll_s
        while time.time() < deadline and any(p.is_alive() for p in procs):
            time.sleep(0.5)
    for p in procs:
        p.join()
    if not errors.empty():
        raise WorkbenchError(errors.get())
    show()


def default_threads(workers: int) -> int:
    """Threads per worker when not given: the cores shared out among the workers."""
    return max(1, (os.cpu_count() or 2) // workers)

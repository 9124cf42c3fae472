"""Faults of the machine, on real processes, a real file system and a real database server.

- **A full disk** (a small tmpfs, filled while the command runs) under a run, a study and a report:
  one line and exit status 2, the earlier state intact (the last checkpoint, the finished
  configs), and the same command finishes once there is space again.
- **The PostgreSQL server stopped** in the middle of a study: one line, no traceback from any
  worker or heartbeat thread; after the server is started again ``--resume`` finishes with every
  config completed exactly once.

Mounting a tmpfs and stopping the server need root (as on CI and the developer machines); the
tests skip where that is not possible. The kill -9 faults are in test_study.py and
test_trainer_runs.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from training import runs
from training.experiments.study import completed_records, open_study

from .conftest import tiny_config
from .test_study import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
FAST_HEARTBEAT = {"WM_SWEEP_HEARTBEAT_S": "1", "WM_SWEEP_GRACE_S": "3"}


# -- a small disk -------------------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path):
    """A 64 MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> None:
    """Fill ``disk`` to the last byte with a ballast file."""
    block = b"\0" * (1 << 20)
    with open(disk / "ballast", "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(block[:size])
            except OSError as e:
                assert e.errno == errno.ENOSPC
    assert os.statvfs(disk).f_bavail == 0


def free(disk: Path) -> None:
    (disk / "ballast").unlink()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the command ended before the fault"
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("the command never got there")


def command(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running_config(out: Path) -> bool:
    if not (out / "study.json").exists():
        return False
    try:
        return any(t.state == TrialState.RUNNING for t in open_study(out)[2].get_trials())
    except Exception:  # the database is still being made
        return False


def shorten_steps(out: Path, long: int, short: int) -> None:
    """Make the remaining configs of a study quick: the same design with fewer steps."""
    meta = json.loads((out / "study.json").read_text())
    fixed = [f.replace(f"={long}", f"={short}") for f in meta["spec"]["fixed"]]
    meta["spec"]["fixed"] = [f"train.checkpoint_every={short}" if "checkpoint_every" in f else f for f in fixed]
    (out / "study.json").write_text(json.dumps(meta))


def resume_quickly(out: Path, long: int) -> subprocess.CompletedProcess:
    """``study --resume`` with the remaining configs shortened from ``long`` steps to 40; it must
    succeed."""
    shorten_steps(out, long, 40)
    done = subprocess.run(
        [sys.executable, "-m", "training", "study", "--resume", str(out), "--quiet"],
        cwd=ROOT,
        env={**os.environ, **FAST_HEARTBEAT},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def study_report(out: Path, report: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "interp", "study-report", str(out), "--out", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def each_config_completed_once(out: Path, n_configs: int) -> None:
    study = open_study(out)[2]
    complete = [t.params["config"] for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(complete) == list(range(n_configs))
    assert len(completed_records(study)) == n_configs * 8


# -- a full disk ----------------------------------------------------------------------------------


def test_disk_full_during_a_run(disk, tmp_path):
    cfg = tiny_config("train.steps=3000", "train.checkpoint_every=100", "train.eval_every=100")
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    run = disk / "run"
    proc = command("training", "train", "--config", str(cfg_file), "--out", str(run), "--quiet")
    wait_for(lambda: (run / runs.STATE).exists(), proc)
    fill(disk)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr[-3000:]
    assert "No space left on device" in one_line(stderr)
    step = runs.load_trainer_state(run / runs.STATE)["step"]  # the last checkpoint is whole
    assert 0 < step < 3000
    free(disk)
    done = subprocess.run(
        [sys.executable, "-m", "training", "resume", str(run), "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert runs.read_final_metrics(run)["raw"]
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    steps = [r["step"] for r in runs.read_metrics(run)]
    assert steps == sorted(set(steps)) and steps[-1] == 3000  # no record lost or torn into the next


def test_disk_full_during_a_study_and_its_report(disk, tmp_path):
    out = disk / "st"
    spec = tiny_spec(tmp_path, steps=4000, n_configs=2)
    # checkpoints every 100 steps: the full disk is met within a second of being filled
    spec.write_text(spec.read_text().replace("train.checkpoint_every=4000", "train.checkpoint_every=100"))
    proc = command(
        "training", "study", "--out", str(out), "--spec", str(spec), "--quiet", "--workers", "1", env=FAST_HEARTBEAT
    )
    wait_for(lambda: running_config(out), proc)
    fill(disk)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 2
    line = one_line(stderr)
    assert "No space left on device" in line or "disk is full" in line, line
    assert "--resume" in line
    free(disk)
    done = resume_quickly(out, 4000)
    assert "completed configs: 2 of 2" in done.stdout and "failed configs: 0" in done.stdout, done.stdout
    each_config_completed_once(out, 2)

    # the report: nothing half-written on a full disk, and the same command works with space again
    report = disk / "report"
    fill(disk)
    again = study_report(out, report)
    assert again.returncode == 2
    assert "No space left on device" in one_line(again.stderr)
    assert not report.exists() or not [p for p in report.rglob("*") if p.is_file()]
    free(disk)
    ok = study_report(out, report)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads((report / "study_report.json").read_text())["n_configs"] == 2


# -- a database server that stops ------------------------------------------------------------------


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster tests/start_postgres.sh uses."""
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[1] == "main":
            return parts[0], parts[1]
    return None


@pytest.fixture
def postgres(tmp_path):
    """A fresh database on the local server, and the cluster to stop and start."""
    try:
        made = subprocess.run(
            ["bash", str(ROOT / "tests" / "start_postgres.sh")], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("no PostgreSQL server can be started here")
    cluster = _cluster()
    if made.returncode != 0 or not made.stdout.strip() or cluster is None:
        pytest.skip("no PostgreSQL server can be started here")
    yield made.stdout.strip(), cluster
    subprocess.run(["pg_ctlcluster", *cluster, "start"], capture_output=True)  # whatever the test did


def test_postgres_stopped_mid_study(tmp_path, postgres):
    url, cluster = postgres
    out = tmp_path / "st"
    # the worker meets the stopped server when its config ends: a config of a few seconds
    spec = tiny_spec(tmp_path, steps=1500, n_configs=2)
    proc = command(
        "training",
        "study",
        "--out",
        str(out),
        "--spec",
        str(spec),
        "--quiet",
        "--workers",
        "2",
        "--storage",
        url,
        env=FAST_HEARTBEAT,
    )
    wait_for(lambda: running_config(out), proc)
    time.sleep(1.0)  # a heartbeat into the config
    subprocess.run(["pg_ctlcluster", *cluster, "stop", "-m", "fast"], check=True, capture_output=True)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 2
    line = one_line(stderr)  # no traceback from a worker or a heartbeat thread
    assert "database" in line and "--resume" in line and ":wm@" not in line, line  # and no password
    subprocess.run(["pg_ctlcluster", *cluster, "start"], check=True, capture_output=True)
    done = resume_quickly(out, 1500)
    assert "completed configs: 2 of 2" in done.stdout, done.stdout
    each_config_completed_once(out, 2)


# -- a fault stops the experiment, not only its trial ----------------------------------------------


def test_a_fault_stops_a_sweep_at_once_and_resume_retries(tmp_path, monkeypatch, capsys):
    """A full disk planted in the sweep's training: the first trial's fault stops the sweep in one
    line (the other trials would fail the same way), and --resume completes it."""
    from commands.train import main
    from training import trainer
    from training.config import preset_path

    real = trainer.train

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "somewhere/.trainer_state.pt")

    monkeypatch.setattr(trainer, "train", disk_full)
    space = json.loads(preset_path("sweep_quick").read_text())
    space["n_trials"] = 2
    space["fixed"] = [f.replace("=150", "=20") for f in space["fixed"]]
    (tmp_path / "space.json").write_text(json.dumps(space))
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), "--space", str(tmp_path / "space.json"), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and f"sweep --resume {out}" in err[0], err
    import optuna

    meta = json.loads((out / "sweep.json").read_text())
    trials = optuna.load_study(study_name=meta["study_name"], storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]  # stopped after the first
    monkeypatch.setattr(trainer, "train", real)
    assert main(["sweep", "--resume", str(out), "--quiet", "--workers", "1"]) == 0
    assert "completed trials: 2, failed: 1" in capsys.readouterr().out

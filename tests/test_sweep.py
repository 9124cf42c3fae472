"""The random search: concurrent workers on SQLite, failures recorded, killed workers recovered,
bad storage URLs reported in one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from commands.train import main
from training.config import preset_path
from training.experiments.runner import storage_url
from training.experiments.sweep import load_space, objective_factory, run_sweep
from training.scoped import optuna_quiet

ROOT = Path(__file__).resolve().parents[1]


def _study(sweep_dir):
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    return optuna.load_study(study_name=meta["study_name"], storage=storage_url(meta["storage"], sweep_dir))


def test_quick_study_with_two_workers(tmp_path):
    s = run_sweep(tmp_path / "sw", preset_path("sweep_quick"), workers=2, progress=False)
    assert s["completed"] >= 6 and s["failed"] == 0
    trials = _study(tmp_path / "sw").get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # nothing duplicated
    dirs = sorted(p.name for p in (tmp_path / "sw" / "trials").iterdir())
    assert dirs == [f"trial_{n:04d}" for n in sorted(numbers)]  # nothing lost
    for t in trials:
        assert t.state == TrialState.COMPLETE
        assert (Path(t.user_attrs["run_dir"]) / "final_metrics.json").exists()
        assert len(t.user_attrs["raw_tv"]) == 11 and "beyond" in t.user_attrs["raw_summary"]
    # resuming a finished study runs nothing more
    again = run_sweep(tmp_path / "sw", resume=True, progress=False)
    assert again["completed"] == s["completed"]


def test_failing_trial_is_recorded_with_its_reason(tmp_path):
    space = load_space(preset_path("sweep_quick"))
    space["params"] = {"train.lr": {"type": "choice", "values": [-1.0]}}
    study = optuna.create_study()
    study.optimize(objective_factory(space, tmp_path), n_trials=1, catch=(Exception,))
    t = study.trials[0]
    assert t.state == TrialState.FAIL
    assert t.user_attrs["error"] == "ConfigError: train.lr must be positive, got -1.0"


def test_killed_worker_trial_is_retried(tmp_path):
    sweep = tmp_path / "sw"
    env = {**os.environ, "WM_SWEEP_HEARTBEAT_S": "1", "WM_SWEEP_GRACE_S": "3"}
    space = load_space(preset_path("sweep_quick"))
    space["n_trials"] = 3
    space["fixed"] = [
        f for f in space["fixed"] if not f.startswith(("train.steps", "train.eval_every", "train.checkpoint_every"))
    ]
    space["fixed"] += ["train.steps=3000", "train.eval_every=3000", "train.checkpoint_every=3000"]
    (tmp_path / "space.json").write_text(json.dumps(space))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training",
            "sweep",
            "--out",
            str(sweep),
            "--space",
            str(tmp_path / "space.json"),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        if (sweep / "sweep.json").exists() and any(t.state == TrialState.RUNNING for t in _study(sweep).get_trials()):
            break
        time.sleep(0.3)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [t.number for t in _study(sweep).get_trials() if t.state == TrialState.RUNNING]
    assert killed, "no trial was running when the worker was killed"
    time.sleep(4)  # past the grace period
    fast = [
        f for f in space["fixed"] if not f.startswith(("train.steps", "train.eval_every", "train.checkpoint_every"))
    ]
    meta = json.loads((sweep / "sweep.json").read_text())
    meta["space"]["fixed"] = fast + ["train.steps=100", "train.eval_every=100", "train.checkpoint_every=100"]
    (sweep / "sweep.json").write_text(json.dumps(meta))
    env_keys = {"WM_SWEEP_HEARTBEAT_S": "1", "WM_SWEEP_GRACE_S": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "training", "sweep", "--resume", str(sweep), "--quiet"],
        cwd=ROOT,
        env={**os.environ, **env_keys},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    trials = _study(sweep).get_trials()
    assert all(trials[n].state == TrialState.FAIL for n in killed)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") in killed]
    assert retried and all(t.state == TrialState.COMPLETE for t in retried)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 3


@pytest.mark.parametrize("url", ["notaurl", "postgresql://nobody@127.0.0.1:1/none"])
def test_bad_storage_urls_are_one_line_errors(tmp_path, capsys, url):
    assert main(["sweep", "--quick", "--out", str(tmp_path / "sw"), "--storage", url, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "sw").exists()


@pytest.fixture(scope="module")
def postgres_url():
    """A fresh database on a local PostgreSQL server (CI installs one); skip only if none starts."""
    url = os.environ.get("WM_TEST_POSTGRES_URL")
    if not url:
        proc = subprocess.run(
            ["bash", str(ROOT / "tests" / "start_postgres.sh")], capture_output=True, text=True, timeout=120
        )
        url = proc.stdout.strip()
    if not url:
        pytest.skip("no PostgreSQL server could be started")
    return url


def test_two_workers_share_one_postgres_study(tmp_path, postgres_url):
    s = run_sweep(tmp_path / "pg", preset_path("sweep_quick"), storage=postgres_url, workers=2, progress=False)
    assert s["completed"] >= 6 and s["failed"] == 0
    meta = json.loads((tmp_path / "pg" / "sweep.json").read_text())
    assert meta["storage"].startswith("postgresql://") and not (tmp_path / "pg" / "study.db").exists()
    trials = optuna.load_study(study_name=meta["study_name"], storage=postgres_url).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and all(t.state == TrialState.COMPLETE for t in trials)


def test_one_worker_sweep_shows_progress(tmp_path, capsys):
    space = load_space(preset_path("sweep_quick"))
    space["n_trials"] = 2
    (tmp_path / "space.json").write_text(json.dumps(space))
    s = run_sweep(tmp_path / "sw", tmp_path / "space.json", workers=1, progress=True)
    assert s["completed"] == 2
    err = capsys.readouterr().err
    assert "sweep trials" in err and "2/2" in err and "best beyond-range TV" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="trials fail here because CUDA is missing")
def test_a_space_whose_trials_all_fail_stops(tmp_path, capsys):
    # Every trial fails at once (train.device=cuda on a machine without CUDA; the config itself is
    # valid). Optuna's MaxTrialsCallback counts completed trials only, so this used to loop for ever.
    space = load_space(preset_path("sweep_quick"))
    space.update(n_trials=2, fixed=space["fixed"] + ["train.device=cuda"])
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    assert main(["sweep", "--space", str(path), "--out", str(tmp_path / "sw"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped after 14 failed trials and 0 completed (limit 14)" in err[0]
    assert "CUDA is not available" in err[0]
    assert len(_study(tmp_path / "sw").get_trials()) == 14


def test_search_space_without_n_trials_is_one_line(tmp_path, capsys):
    space = load_space(preset_path("sweep_quick"))
    del space["n_trials"]
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    assert main(["sweep", "--space", str(path), "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no n_trials" in err[0]
    assert not (tmp_path / "sw").exists()


def _pop_all(args):
    """Worker of the race test: wait for a common start, then take queued trials until none is left."""
    url, name, start = args
    from training.experiments.runner import make_storage

    with optuna_quiet():
        study = optuna.load_study(study_name=name, storage=make_storage(url))
        while time.time() < start:
            time.sleep(0.001)
        taken = []
        while (trial_id := study._pop_waiting_trial_id()) is not None:
            taken.append(trial_id)
        return taken


def test_workers_never_take_the_same_queued_trial(tmp_path):
    """Four processes emptying one queue of 200 trials at once take each exactly once. Before
    make_storage locked SQLite transactions at their start, they took 227 (two workers trained the
    same study config, and the second failed with 'Cannot tell a COMPLETE trial')."""
    import multiprocessing as mp

    url = f"sqlite:///{tmp_path / 'q.db'}"
    with optuna_quiet():
        study = optuna.create_study(storage=url, study_name="q")
        for i in range(200):
            study.enqueue_trial({"x": i})
    start = time.time() + 3  # every process is loaded before the first pop
    with mp.get_context("spawn").Pool(4) as pool:
        taken = [t for got in pool.map(_pop_all, [(url, "q", start)] * 4) for t in got]
    assert sorted(taken) == sorted(t._trial_id for t in study.get_trials(deepcopy=False))

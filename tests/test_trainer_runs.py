"""Training runs end to end: files written, exact resume (also after kill -9), NaN handling,
and checkpoint errors."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from training import runs
from training.errors import CheckpointError, TrainingDiverged, WorkbenchError
from training.tasks.set_complement.task import SetComplementTask
from training.trainer import lr_lambda, train

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _weights(run_dir, kind):
    return load_file(str(Path(run_dir) / runs.WEIGHTS[kind]))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_writes_everything(tmp_path):
    cfg = tiny_config("averaging.mode=bema", "model.attn_dropout=0.1")
    d = runs.create_run_dir(tmp_path / "run", cfg)
    res = train(cfg, d, progress=False)
    assert res.finished and res.step == 30
    names = {p.name for p in d.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "final_metrics.json",
        "trainer_state.pt",
        "weights_raw.safetensors",
        "weights_averaged.safetensors",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]
    records = runs.read_metrics(d)
    assert [r["step"] for r in records] == [10, 20, 30]
    assert set(records[0]) >= {"raw", "averaged", "loss", "lr"}
    final = runs.read_final_metrics(d)
    assert final["raw"]["sets_per_length"] == 64 and len(final["raw"]["lengths"]) == 7
    assert json.loads((d / "config.json").read_text())["train"]["steps"] == 30


def test_load_run_and_plain_transformer_lens_recipe(tmp_path):
    cfg = tiny_config("averaging.mode=ema", "averaging.decay=0.5")
    d = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, d, progress=False)
    raw, avg = runs.load_run(d, "raw"), runs.load_run(d, "averaged")
    assert isinstance(raw, HookedTransformer) and not raw.training
    x = torch.randint(1, 9, (3, 7))
    assert not torch.equal(raw(x), avg(x))
    # The README's recipe: config.json + safetensors with nothing but TransformerLens.
    kw = json.loads((d / "config.json").read_text())["hooked_transformer_config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = HookedTransformer(HookedTransformerConfig.from_dict(kw))
    plain.load_state_dict(load_file(str(d / "weights_averaged.safetensors")))
    assert torch.equal(plain.eval()(x), avg(x))


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    cfg = tiny_config("averaging.mode=bema", "model.attn_dropout=0.2", "model.resid_dropout=0.1")
    full = runs.create_run_dir(tmp_path / "full", cfg)
    train(cfg, full, progress=False)
    part = runs.create_run_dir(tmp_path / "part", cfg)
    first = train(cfg, part, stop_after=20, progress=False)
    assert not first.finished and first.step == 20 and first.start_step == 0
    second = train(cfg, part, progress=False)
    assert second.finished and second.start_step == 20
    # training seconds are the run's, carried by the checkpoint, not this call's: a call on a
    # finished run (the demo reusing it) starts from the stored figure instead of near 0
    stored = runs.load_trainer_state(part / runs.STATE)["train_seconds"]
    assert 0 < stored <= second.train_seconds
    again = train(cfg, part, progress=False)
    assert again.start_step == 30 and again.train_seconds >= stored
    for kind in ("raw", "averaged"):
        assert _same(_weights(full, kind), _weights(part, kind)), kind
    assert [r["step"] for r in runs.read_metrics(part)] == [10, 20, 30]
    assert runs.read_final_metrics(part)["raw"] == runs.read_final_metrics(full)["raw"]


def test_kill_9_then_resume_matches_uninterrupted(tmp_path):
    over = [
        "train.steps=3000",
        "train.checkpoint_every=100",
        "train.eval_every=1000",
        "averaging.mode=bema",
        "model.attn_dropout=0.1",
    ]
    cfg = tiny_config(*over)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "--config", str(cfg_file), "--out", str(killed), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while not (killed / runs.STATE).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(killed / runs.STATE, weights_only=True)["step"]
    assert 0 < step_at_kill < 3000
    (killed / ".trainer_state.pt.torn.tmp").write_bytes(b"half a checkpoint")  # as if killed mid-write
    from commands.train import main

    assert main(["resume", str(killed), "--quiet"]) == 0
    full = runs.create_run_dir(tmp_path / "full", cfg)
    train(cfg, full, progress=False)
    for kind in ("raw", "averaged"):
        assert _same(_weights(full, kind), _weights(killed, kind)), kind
    assert not [p for p in killed.iterdir() if p.name.endswith(".tmp")]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    cfg = tiny_config()
    d = runs.create_run_dir(tmp_path / "run", cfg)
    real_loss = SetComplementTask.loss
    calls = {"n": 0}

    def loss(self, logits, batch):
        calls["n"] += 1
        value = real_loss(self, logits, batch)
        return value * float("nan") if calls["n"] > 14 else value

    monkeypatch.setattr(SetComplementTask, "loss", loss)
    with pytest.raises(TrainingDiverged, match="last good checkpoint \\(step 10\\)"):
        train(cfg, d, progress=False)
    state = torch.load(d / runs.STATE, weights_only=True)
    assert state["step"] == 10
    raw = _weights(d, "raw")
    assert all(torch.isfinite(v).all() for k, v in raw.items() if not k.endswith("IGNORE"))
    assert not (d / runs.FINAL).exists()
    # The command line reports it in one line, exit status 2.
    from commands.train import main

    calls["n"] = 0
    capsys.readouterr()
    assert main(["resume", str(d), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss became nan" in err[0]


def test_existing_run_dir_is_never_overwritten_silently(tmp_path):
    cfg = tiny_config()
    d = runs.create_run_dir(tmp_path / "run", cfg)
    (d / "marker").write_text("keep")
    with pytest.raises(WorkbenchError, match="already exists"):
        runs.create_run_dir(d, cfg)
    assert (d / "marker").exists()
    runs.create_run_dir(d, cfg, overwrite=True)
    assert not (d / "marker").exists()
    other = tmp_path / "notarun"
    other.mkdir()
    (other / "data.txt").write_text("x")
    with pytest.raises(WorkbenchError, match="not a run directory"):
        runs.create_run_dir(other, cfg, overwrite=True)
    assert (other / "data.txt").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = tiny_config("averaging.mode=bema")
    d = runs.create_run_dir(tmp_path_factory.mktemp("ckpt") / "run", cfg)
    train(cfg, d, progress=False)
    return d


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_checkpoint(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        runs.load_run(tmp_path / "nope")
    d = _copy(trained, tmp_path / "r")
    (d / "weights_averaged.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file not found"):
        runs.load_run(d)


def test_truncated_checkpoint(trained, tmp_path):
    d = _copy(trained, tmp_path / "r")
    f = d / "weights_raw.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        runs.load_run(d, "raw")
    s = d / runs.STATE
    s.write_bytes(s.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(runs.read_run_config(d), d, progress=False)


def test_mismatched_checkpoint(trained, tmp_path):
    d = _copy(trained, tmp_path / "r")
    data = json.loads((d / "config.json").read_text())
    data["model"]["d_model"] = 32
    (d / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="does not match"):
        runs.load_run(d)
    with pytest.raises(CheckpointError, match="does not match"):
        train(runs.read_run_config(d), d, progress=False)


def test_corrupt_config_json(trained, tmp_path):
    d = _copy(trained, tmp_path / "r")
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        runs.load_run(d)


def test_lr_schedule_shape():
    cfg = tiny_config("train.steps=100", "train.warmup_steps=10", "train.min_lr_ratio=0.1").train
    f = lr_lambda(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)


def test_clip_grad_norm_matches_torch():
    from training.trainer import clip_grad_norm

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn_like(p) * 3
        q.grad = p.grad.clone()
    n1 = clip_grad_norm(a, 1.0)
    n2 = torch.nn.utils.clip_grad_norm_(b, 1.0)
    assert torch.allclose(n1, n2)
    assert all(torch.allclose(p.grad, q.grad, atol=1e-6) for p, q in zip(a, b))
    # Below the threshold the gradients are unchanged.
    g = [p.grad.clone() for p in a]
    clip_grad_norm(a, 100.0)
    assert all(torch.allclose(p.grad, x) for p, x in zip(a, g))


def test_demo_sized_runs_are_bit_reproducible(tmp_path, monkeypatch):
    """At d_model 64 on 2 threads, CPU kernels are only reproducible in deterministic mode: the
    trainer switches it on for training only, as train.deterministic says, and two identical runs
    then end with identical weights."""
    from training.trainer import Trainer

    over = [
        "model.d_model=64",
        "model.d_head=64",
        "model.n_heads=1",
        "task.v=32",
        "task.train_max_len=8",
        "train.batch_size=64",
        "train.steps=60",
        "train.eval_every=60",
        "train.checkpoint_every=60",
    ]
    seen = []
    step = Trainer.train_step

    def spy(self):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", spy)
    torch.use_deterministic_algorithms(False)
    for name in ("a", "b"):
        train(tiny_config(*over), runs.create_run_dir(tmp_path / name, tiny_config(*over)), progress=False)
    assert seen == [True] * 120 and not torch.are_deterministic_algorithms_enabled()
    assert _same(_weights(tmp_path / "a", "raw"), _weights(tmp_path / "b", "raw"))
    seen.clear()
    off = tiny_config(*over, "train.deterministic=false", "train.steps=5")
    train(off, runs.create_run_dir(tmp_path / "c", off), progress=False)
    assert seen == [False] * 5


def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch):
    # The GPU-only modes cannot run here; check the trainer hands the configured mode to
    # torch.compile (None for 'default', torch's own default) and trains through the result.
    from training.trainer import Trainer

    seen = []

    def fake_compile(model, mode=None, dynamic=None):
        seen.append(mode)
        assert dynamic is None  # the single run's forward keeps torch's default shape handling
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    for mode, expected in (("default", None), ("reduce-overhead", "reduce-overhead")):
        cfg = tiny_config("train.compile=true", f"train.compile_mode={mode}")
        Trainer(cfg, tmp_path).train_step()
        assert seen[-1] == expected
    Trainer(tiny_config("train.compile=false", "train.compile_mode=max-autotune"), tmp_path)
    assert len(seen) == 2  # compile off: the mode is ignored


def test_training_scope_makes_room_for_one_graph_per_shape_and_restores_dynamo():
    import torch._dynamo.config as dynamo

    from training.trainer import RECOMPILE_LIMIT, training_scope

    before = dynamo.recompile_limit
    assert before < RECOMPILE_LIMIT  # dynamo's default of 8 graphs per function
    with training_scope(tiny_config("train.compile=true")):
        assert dynamo.recompile_limit == RECOMPILE_LIMIT
    assert dynamo.recompile_limit == before
    with training_scope(tiny_config("train.compile=false")):
        assert dynamo.recompile_limit == before  # eager: dynamo's settings untouched


def test_averaging_never_changes_the_raw_trajectory(tmp_path):
    # othello-compare reads the 'none' variant off the EMA run's raw weights; that is only
    # sound if the averager touches no RNG and no parameter, so the raw weights are bit-identical.
    raws = []
    for mode in ("none", "ema", "bema"):
        cfg = tiny_config(f"averaging.mode={mode}", "model.attn_dropout=0.2", "model.resid_dropout=0.1")
        d = runs.create_run_dir(tmp_path / mode, cfg)
        train(cfg, d, progress=False)
        raws.append(_weights(d, "raw"))
    assert _same(raws[0], raws[1]) and _same(raws[0], raws[2])


def test_atomic_writes_get_the_ordinary_file_mode(tmp_path):
    """mkstemp's private 0600 would make results unreadable to a shared group."""
    import os

    from training import atomic

    atomic.write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_run_files_follow_the_umask(tmp_path, mask):
    """A run folder and every file in it (weights included) get the modes mkdir and open() give
    under the user's umask: not the private 0700/0600 of the temporary names they start under."""
    old = os.umask(mask)
    try:
        run = runs.create_run_dir(tmp_path / "run", tiny_config())
        runs.save_weights(run / "weights_raw.safetensors", {"w": torch.zeros(2)}, step=1)
    finally:
        os.umask(old)
    assert (run.stat().st_mode & 0o777) == 0o777 & ~mask
    for f in (run / "config.json", run / "weights_raw.safetensors"):
        assert (f.stat().st_mode & 0o777) == 0o666 & ~mask, f.name

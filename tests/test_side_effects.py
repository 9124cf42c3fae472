"""Importing or calling the workbench leaves the caller's process and models as they were: train/eval
mode, torch's deterministic switch, the global RNG, the plotting backend, environment settings."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.core.patching import patch_swap
from interp.core.visualize import attention_html
from interp.othello.board_probe import fit_board_probe, membership_probe, probe_accuracy
from interp.othello.intervention import intervene
from interp.set_complement.displacement import decompose_logits, displacement_by_length
from interp.set_complement.interventions import evaluate_interventions
from interp.set_complement.probes import attention_entropy, evaluate_lengths
from training import runs
from training.models import ModelConfig, build_model
from training.tasks.othello.engine import random_games
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask
from training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _set_model():
    cfg = ModelConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        attn_only=False,
        d_mlp=32,
        normalization="LN",
        attn_dropout=0.1,
        resid_dropout=0.1,
    )
    return build_model(cfg, 9, 8, 8, seed=0), SetComplementTask(SetComplementConfig(v=8, train_max_len=3))


def _othello_model():
    cfg = ModelConfig(
        n_layers=2,
        d_model=32,
        n_heads=2,
        d_head=16,
        attn_only=False,
        d_mlp=64,
        normalization="LN",
        positional="learned",
        attn_dropout=0.1,
    )
    return build_model(cfg, 61, 61, 59, seed=0)


SET_PROBES = {
    "evaluate_lengths": lambda m, t, tmp: evaluate_lengths(m, t, n=8),
    "task.evaluate": lambda m, t, tmp: t.evaluate(m, 8),
    "attention_entropy": lambda m, t, tmp: attention_entropy(m, t, n=8),
    "displacement_by_length": lambda m, t, tmp: displacement_by_length(m, t, n=8),
    "decompose_logits": lambda m, t, tmp: decompose_logits(m, torch.tensor([[1, 2, 3]])),
    "evaluate_interventions": lambda m, t, tmp: evaluate_interventions(m, t, n=8),
    "patch_swap": lambda m, t, tmp: patch_swap(m, t, 3, n=4),
    "membership_probe": lambda m, t, tmp: membership_probe(m, t, sets=16),
    "attention_html": lambda m, t, tmp: attention_html(m, torch.tensor([1, 2, 3]), tmp / "a.html"),
}


@pytest.mark.parametrize("name", list(SET_PROBES))
def test_set_probe_restores_train_mode(name, tmp_path):
    model, task = _set_model()
    model.train()
    before = {n: m.training for n, m in model.named_modules()}
    SET_PROBES[name](model, task, tmp_path)
    assert {n: m.training for n, m in model.named_modules()} == before
    model.eval()
    SET_PROBES[name](model, task, tmp_path)
    assert not any(m.training for m in model.modules())


def test_othello_probes_restore_train_mode():
    games = random_games(120, np.random.default_rng(0))
    model = _othello_model().train()
    probe = fit_board_probe(model, games[:80], "relative", positions=(0, 20))
    assert model.training
    probe_accuracy(model, probe, games[80:])
    assert model.training
    intervene(model, probe, games[80:], 10, "blocks.1.hook_resid_post")
    assert all(m.training for m in model.modules())


def test_training_restores_determinism_and_global_rng(tmp_path, tiny):
    cfg = tiny("train.steps=10", "train.eval_every=10", "train.checkpoint_every=10", "train.deterministic=true")
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    train(cfg, runs.create_run_dir(tmp_path / "r", cfg), progress=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream goes on as if nothing ran


def test_build_model_forks_every_cuda_generator(monkeypatch):
    # No GPU here: check that the fork covers every CUDA device torch.manual_seed would reseed.
    import training.models as models
    import training.scoped as scoped

    seen = []
    real_fork = torch.random.fork_rng

    def fork(devices=None, **kw):
        seen.append(list(devices))
        return real_fork(devices=[], **kw)

    monkeypatch.setattr(scoped.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(scoped.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(scoped.torch.random, "fork_rng", fork)
    monkeypatch.setattr(models.torch, "manual_seed", lambda seed: None)  # would touch CUDA otherwise
    models.build_model(ModelConfig(d_model=8, d_head=4), 9, 8, 8)
    assert seen == [[0, 1]]


def test_no_plotting_backend_is_chosen_at_import():
    code = (
        "import matplotlib; import interp.core.visualize, interp.set_complement.report, interp.othello.report, "
        "interp.analysis.sweep, "
        "interp.othello.intervention, commands.train, commands.interp; print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == "svg"


def test_runner_settings_from_the_environment_are_read_when_used(monkeypatch):
    from training.experiments import runner as sweep

    monkeypatch.setenv("WM_SWEEP_HEARTBEAT_S", "7")
    monkeypatch.setenv("WM_SWEEP_GRACE_S", "11")
    assert sweep.heartbeat_settings() == (7, 11)


def test_interp_ctrl_c_says_nothing_about_training(monkeypatch, capsys):
    import commands.interp

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands.interp, "cmd_eval", interrupted)
    assert commands.interp.main(["eval", "somewhere"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted") and "checkpoint" not in err and "resume" not in err

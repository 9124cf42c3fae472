"""Shared fixtures: tiny configs that train in a second or two on the CPU."""

from __future__ import annotations

import pytest
import torch

from training.config import RunConfig, load_config

torch.set_num_threads(2)

TINY = [
    "task.v=8",
    "task.train_max_len=3",
    "model.d_model=16",
    "model.d_head=8",
    "model.n_heads=2",
    "train.steps=30",
    "train.batch_size=16",
    "train.warmup_steps=5",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "train.eval_sets=32",
    "train.final_eval_sets=64",
    "train.device=cpu",
]


def tiny_config(*overrides: str) -> RunConfig:
    """A validated RunConfig small enough for unit tests."""
    return load_config(None, TINY + list(overrides))


def train_and_reload(tmp_path, *overrides: str):
    """Train a tiny run with ``overrides``, reload its raw weights through ``load_run`` and check
    that they evaluate exactly as the run's own final evaluation did; the reloaded model and the
    run directory."""
    from training import runs
    from training.trainer import train

    cfg = tiny_config(*overrides)
    run = runs.create_run_dir(tmp_path / "run", cfg)
    res = train(cfg, run, progress=False)
    model = runs.load_run(run, weights="raw")
    again = cfg.make_task().evaluate(model, cfg.train.final_eval_sets, cfg.train.eval_seed)
    assert again.values["tv"] == pytest.approx(res.final["raw"].values["tv"], abs=1e-6)
    return model, run


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(scope="session")
def othello_games(tmp_path_factory):
    """A folder of 3,000 random Othello games (seed 0), made once per test session."""
    from training.tasks.othello.data import generate_dataset

    d = tmp_path_factory.mktemp("othello") / "data"
    generate_dataset(d, 3000, seed=0, chunk=1000, workers=1, progress=False)
    return d


def small_othello_model(seed: int = 0):
    """An untrained OthelloGPT-shaped model (2 layers, d_model 32, 2 heads, MLP, LayerNorm, learned
    positions) for probe and intervention tests."""
    from training.models import ModelConfig, build_model

    cfg = ModelConfig(
        n_layers=2,
        d_model=32,
        n_heads=2,
        d_head=16,
        attn_only=False,
        d_mlp=64,
        normalization="LN",
        positional="learned",
    )
    return build_model(cfg, 61, 61, 59, seed=seed)

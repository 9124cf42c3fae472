"""Position transplant for OthelloGPT: the row mapping by hand, the in-range invariance, errors, and
the command on a tiny run."""

import json

import pytest
import torch

from commands.interp import main as interp_main
from interp.othello.positions import source_rows, transplant
from training import runs
from training.errors import WorkbenchError
from training.models import ModelConfig, build_model
from training.tasks.othello.checkpoints import othello_config
from training.tasks.othello.data import generate_dataset
from training.trainer import train


def test_source_rows_by_hand():
    # 8 positions, 4 trained (0..3): untrained 4, 6 are even like 2; 5, 7 odd like 3.
    assert source_rows(8, 4, "original") == list(range(8))
    assert source_rows(8, 4, "same_parity") == [0, 1, 2, 3, 2, 3, 2, 3]
    assert source_rows(8, 4, "opposite_parity") == [0, 1, 2, 3, 3, 2, 3, 2]
    assert source_rows(8, 4, "mean") == [0, 1, 2, 3, None, None, None, None]
    assert source_rows(59, 30, "same_parity")[30:33] == [28, 29, 28]
    with pytest.raises(WorkbenchError, match="unknown variant"):
        source_rows(8, 4, "shuffle")
    with pytest.raises(WorkbenchError, match="trained positions"):
        source_rows(8, 1, "mean")


def _model(positional="learned"):
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, attn_only=False, d_mlp=64, positional=positional)
    return build_model(cfg, 61, 61, 12, seed=0).eval()


def test_transplant_changes_only_untrained_rows_and_late_predictions():
    model, T = _model(), 5
    before = model.W_pos.detach().clone()
    moved = transplant(model, T, "same_parity")
    assert torch.equal(model.W_pos, before)  # the original is untouched
    assert torch.equal(moved.W_pos[:T], before[:T])
    assert torch.equal(moved.W_pos[5], before[3]) and torch.equal(moved.W_pos[6], before[4])  # 5 odd<-3, 6 even<-4
    assert torch.allclose(transplant(model, T, "mean").W_pos[9], before[:T].mean(0))
    tokens = torch.randint(1, 61, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(tokens), moved(tokens)
    assert torch.equal(a[:, :T], b[:, :T])  # causal: rows >= T cannot reach earlier positions
    assert not torch.allclose(a[:, T:], b[:, T:])
    with pytest.raises(WorkbenchError, match="no learned position embeddings"):
        transplant(_model("rotary"), T, "mean")


def test_othello_positions_command(tmp_path, capsys):
    data = tmp_path / "data"
    generate_dataset(data, 1200, seed=0, chunk=600, workers=1, progress=False)
    over = [
        "model.n_layers=1",
        "model.d_model=32",
        "model.n_heads=2",
        "model.d_head=16",
        "model.d_mlp=64",
        "othello.train_max_moves=20",
        "othello.val_games=100",
        "train.batch_size=16",
        "train.steps=10",
        "train.warmup_steps=2",
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "train.eval_sets=50",
        "train.final_eval_sets=50",
        "train.device=cpu",
    ]
    cfg = othello_config("cpu", data, over)
    run = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run, progress=False)
    assert interp_main(["othello-positions", str(run), "--games", "50", "--quiet"]) == 0
    assert "same_parity" in capsys.readouterr().out
    res = json.loads((run / "positions" / "positions.json").read_text())
    assert list(res) == ["original", "same_parity", "opposite_parity", "mean"]
    for v in res.values():  # in range, every variant predicts exactly as the original
        assert v["values"]["legal_top1"][:20] == res["original"]["values"]["legal_top1"][:20]
    assert (run / "positions" / "positions.png").exists()
    rotary = runs.create_run_dir(tmp_path / "rot", othello_config("cpu", data, over + ["model.positional=rotary"]))
    assert interp_main(["othello-positions", str(rotary), "--quiet"]) == 2
    assert "needs learned ones" in capsys.readouterr().err

"""The logit lens against ground truth: at the last boundary it is the model's own evaluation; on
the balanced model the embeddings alone give the direct path's gap b/s, and after the attention
block the full gap (b + c)/s."""

import numpy as np
import pytest

from interp.core.logit_lens import logit_lens
from interp.set_complement.theory import balanced_model
from training.models import ModelConfig, build_model
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

V, B, C = 10, 2.0, 5.0


def test_balanced_model_lens_by_length():
    task = SetComplementTask(SetComplementConfig(v=V, train_max_len=4))
    lens = logit_lens(balanced_model(V, B, C), task, n=32)
    gap = lens.series("gap")
    lengths = np.arange(1, V)
    assert np.allclose(gap[0].numpy(), B / lengths, atol=1e-5)  # embeddings: only the last item is pushed down
    assert np.allclose(gap[1].numpy(), (B + C) / lengths, atol=1e-5)
    assert lens.by_boundary[0].values["acc"][1:] == [0.0] * (V - 2)  # earlier members tie with valid items
    assert lens.by_boundary[1].values["acc"] == [1.0] * (V - 1)


@pytest.mark.parametrize("norm, final", [("LN", True), ("none", True), ("LN", False)])
def test_last_boundary_is_the_model_itself(norm, final):
    task = SetComplementTask(SetComplementConfig(v=8, train_max_len=3))
    cfg = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization=norm, final_norm=final
    )
    model = build_model(cfg, 9, 8, 7, seed=1).train()
    lens = logit_lens(model, task, n=32)
    own = task.evaluate(model, 32)
    assert model.training
    for metric in ("tv", "gap", "margin"):
        assert np.allclose(lens.by_boundary[-1].values[metric], own.values[metric], atol=1e-5)
    assert len(lens.by_boundary) == 3


def test_lens_by_move_index_on_othello(tmp_path):
    from training.tasks.othello.data import generate_dataset
    from training.tasks.othello.task import OthelloConfig, OthelloTask

    generate_dataset(tmp_path / "d", 300, seed=0, chunk=300, workers=1, progress=False)
    task = OthelloTask(OthelloConfig(data=str(tmp_path / "d"), val_games=50, train_max_moves=20))
    cfg = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization="LN", positional="learned"
    )
    model = build_model(cfg, 61, 61, 59, seed=0)
    lens = logit_lens(model, task, n=50)
    assert lens.by_boundary[0].lengths == list(range(1, 60))
    assert np.allclose(lens.by_boundary[-1].values["legal_top1"], task.evaluate(model, 50).values["legal_top1"])

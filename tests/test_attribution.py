"""Direct logit attribution per component against ground truth: the exact per-source
decomposition, the balanced model's closed forms, and the model's own gap (the parts add up)."""

import numpy as np
import pytest
import torch

from interp.core.attribution import component_attribution, plot_attribution
from interp.set_complement.displacement import decompose_logits
from interp.set_complement.theory import balanced_model
from training.models import ModelConfig, build_model
from training.tasks.set_complement.metrics import set_batches
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

V, B, C = 10, 2.0, 5.0


def _model(norm: str, seed: int = 1):
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization=norm)
    model = build_model(cfg, 9, 8, 8, seed=seed).eval()
    with torch.no_grad():  # away from the initialisation, so every component contributes
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    return model


def test_balanced_model_closed_forms():
    """Uniform attention, B = -b I, D = -c I: the embedding's gap is b/s, the head's c/s."""
    task = SetComplementTask(SetComplementConfig(v=V, train_max_len=4))
    att = component_attribution(balanced_model(V, B, C), task, n=32)
    s = np.arange(1, V)
    assert np.allclose(att.of("embed").numpy(), B / s, atol=1e-5)
    assert np.allclose(att.of("L0H0").numpy(), C / s, atol=1e-5)
    assert att.index == list(range(1, V)) and att.train_range == (1, 4)


@pytest.mark.parametrize("norm", ["LN", "none"])
def test_heads_match_the_exact_per_source_decomposition(norm):
    task = SetComplementTask(SetComplementConfig(v=8, train_max_len=3))
    model = _model(norm)
    n = 64
    att = component_attribution(model, task, n=n, seed=3)
    tokens = next(set_batches(task, n, task.cfg.max_eval_len, seed=3)).tokens
    for s in range(1, task.cfg.max_eval_len + 1):
        parts = decompose_logits(model, tokens[:, :s], position=-1)  # causal: the prefix is the set of length s
        members = task.membership(tokens[:, :s] - 1, task.v)[:, -1]
        per_head = parts.heads.sum(3)  # [b, layer, head, vocab], summed over source tokens
        for layer in range(2):
            for head in range(2):
                x = per_head[:, layer, head]
                gap = ((x * ~members).sum(-1) / (~members).sum(-1) - (x * members).sum(-1) / members.sum(-1)).mean()
                assert float(att.of(f"L{layer}H{head}")[s - 1]) == pytest.approx(float(gap), abs=1e-5), (s, layer, head)


def test_parts_add_up_to_the_models_gap():
    task = SetComplementTask(SetComplementConfig(v=8, train_max_len=3))
    model = _model("LN").train()
    att = component_attribution(model, task, n=64)
    assert model.training  # mode restored
    own = torch.tensor(task.evaluate(model, 64).values["gap"])
    assert torch.allclose(att.values.sum(0), own.to(att.values.dtype), atol=1e-4)
    assert att.labels == ["L0H0", "L0H1", "L1H0", "L1H1", "0_mlp_out", "1_mlp_out", "embed", "pos_embed", "bias"]
    fig = plot_attribution(att, top=4)
    assert len(fig.axes[0].lines) >= 4


def test_othello_gap_and_attribution_by_move_index(tmp_path):
    from training.tasks.othello.data import generate_dataset
    from training.tasks.othello.task import OthelloConfig, OthelloTask

    generate_dataset(tmp_path / "d", 200, seed=0, chunk=200, workers=1, progress=False)
    task = OthelloTask(OthelloConfig(data=str(tmp_path / "d"), val_games=40, train_max_moves=20))
    cfg = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization="LN", positional="learned"
    )
    model = build_model(cfg, 61, 61, 59, seed=0).eval()
    own = task.evaluate(model, 40)
    # the gap by hand: mean legal logit minus mean illegal-square logit, over live games
    tokens, legal = task.eval_data(40)
    with torch.no_grad():
        z = model(tokens)
    playable = torch.ones(61, dtype=torch.bool)
    playable[0] = False
    illegal = ~legal & playable
    gap = (z * legal).sum(-1) / legal.sum(-1).clamp(min=1) - (z * illegal).sum(-1) / illegal.sum(-1)
    live = legal.any(-1)
    want = (gap * live).sum(0) / live.sum(0).clamp(min=1)
    assert np.allclose(own.values["gap"], want.numpy(), atol=1e-5)
    att = component_attribution(model, task, n=40)
    assert att.index == list(range(1, 60)) and att.index_name == "move index"
    assert np.allclose(att.values.sum(0).numpy(), own.values["gap"], atol=1e-4)
    with pytest.raises(ValueError, match="no metric 'margin'"):
        component_attribution(model, task, n=40, metric="margin")

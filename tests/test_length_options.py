"""Trained length remedies as model options, against hand-written forward passes: scalable
softmax (scores x s_h log n, s_h learned) and attention-output rescaling by max(1, n / n_train)."""

import math

import pytest
import torch

from training import runs
from training.ensemble import train_ensemble
from training.models import ModelConfig, build_model

from .conftest import tiny_config, train_and_reload


def _randomise(model, seed=5):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return gen


def reference(model, tokens, ssmax: bool, n_train: int | None, len_scale: bool = False):
    """One attention-only layer, no norm, no positions, written out by hand."""
    x = model.W_E[tokens]
    n = tokens.shape[1]
    a = model.blocks[0].attn
    q = torch.einsum("bpm,hmd->bphd", x, a.W_Q) + a.b_Q
    k = torch.einsum("bpm,hmd->bphd", x, a.W_K) + a.b_K
    v = torch.einsum("bpm,hmd->bphd", x, a.W_V) + a.b_V
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(a.cfg.d_head)
    if ssmax:
        attended = torch.arange(1, n + 1, dtype=torch.float)
        scores = scores * (model.blocks[0].attn_ssmax.view(1, -1, 1, 1) * torch.log(attended).view(1, 1, -1, 1))
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
    pattern = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    out = torch.einsum("bqhd,hdm->bqm", torch.einsum("bhqk,bkhd->bqhd", pattern, v), a.W_O) + a.b_O
    if n_train is not None:
        out = out * torch.clamp(torch.arange(1, n + 1, dtype=torch.float) / n_train, min=1.0).view(1, -1, 1)
    resid = x + out
    if len_scale:  # the residual at the q-th position (q attended positions) times e^a q^b, by hand
        a, b = model.readout_len_scale.tolist()
        resid = resid * torch.tensor([math.exp(a) * q**b for q in range(1, n + 1)]).view(1, -1, 1)
    return resid @ model.W_U + model.b_U


@pytest.mark.parametrize("ssmax, n_train", [(True, None), (False, 3), (True, 3)])
def test_forward_matches_the_hand_written_one(ssmax, n_train):
    cfg = ModelConfig(d_model=16, n_heads=2, d_head=8, ssmax=ssmax, out_rescale_len=n_train)
    model = build_model(cfg, 9, 8, 8, seed=1).eval()
    gen = _randomise(model)
    tokens = torch.randint(0, 9, (4, 8), generator=gen)
    assert torch.isfinite(model(tokens)).all()
    assert torch.allclose(model(tokens), reference(model, tokens, ssmax, n_train), atol=1e-5)
    if ssmax:
        assert model.blocks[0].attn_ssmax.requires_grad and "blocks.0.attn_ssmax" in model.state_dict()


@pytest.mark.parametrize("ssmax, n_train", [(False, None), (True, 3)])
def test_readout_length_scale_matches_the_hand_written_forward(ssmax, n_train):
    cfg = ModelConfig(d_model=16, n_heads=2, d_head=8, ssmax=ssmax, out_rescale_len=n_train, readout_len_scale=True)
    model = build_model(cfg, 9, 8, 8, seed=1).eval()
    plain = build_model(ModelConfig(**{**cfg.__dict__, "readout_len_scale": False}), 9, 8, 8, seed=1)
    tokens = torch.randint(0, 9, (4, 8), generator=torch.Generator().manual_seed(3))
    # (a, b) start at 0: the same weights and logits as the model without it
    assert model.readout_len_scale.tolist() == [0.0, 0.0]
    assert torch.equal(model(tokens), plain.eval()(tokens))
    _randomise(model)
    assert model.readout_len_scale[1].abs() > 0.05  # a real power of the length
    assert torch.allclose(model(tokens), reference(model, tokens, ssmax, n_train, len_scale=True), atol=1e-5)
    # the stream itself is unscaled (caches hold what the model without it computes); only the readout is
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "readout_len_scale"})
    _, cache = model.run_with_cache(tokens)
    _, plain_cache = plain.run_with_cache(tokens)
    assert torch.equal(cache["blocks.0.hook_resid_post"], plain_cache["blocks.0.hook_resid_post"])


def test_out_rescale_leaves_training_lengths_alone():
    base = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 8, seed=1).eval()
    rescaled = build_model(ModelConfig(d_model=16, d_head=8, out_rescale_len=4), 9, 8, 8, seed=1).eval()
    tokens = torch.randint(1, 9, (3, 8))
    assert torch.equal(base(tokens)[:, :4], rescaled(tokens)[:, :4])
    assert not torch.allclose(base(tokens)[:, 4:], rescaled(tokens)[:, 4:])


@pytest.mark.parametrize(
    "option, param, start",
    [("model.ssmax=true", "blocks.0.attn_ssmax", 1.0), ("model.readout_len_scale=true", "readout_len_scale", 0.0)],
)
def test_learned_length_options_train_reload_and_ensemble(tmp_path, option, param, start):
    model, run = train_and_reload(tmp_path, option)  # reloads and evaluates exactly as it trained
    learned = model.state_dict()[param]
    assert (learned - start).abs().max() > 1e-4  # learned, moved from its start
    # an ensemble member reads its own parameter (functional weights), matching its separate run
    cfgs = [tiny_config(option, f"train.seed={s}") for s in (3, 0)]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    train_ensemble(cfgs, dirs, progress=False)
    mine = runs.load_weights(dirs[1] / runs.weights_file("raw"))
    theirs = runs.load_weights(run / runs.weights_file("raw"))
    assert torch.allclose(mine[param], theirs[param], atol=2e-4)


def test_tied_positions_equal_the_same_parity_transplant():
    """tie_positions_from=N is the test-time same-parity transplant (interp.othello.positions,
    which rewrites W_pos) made part of the model: same logits at every position on the same
    weights; untrained rows get no gradient; it reloads exactly."""
    from interp.othello.positions import transplant
    from training.errors import ConfigError
    from training.models import tied_position_rows

    assert tied_position_rows(9, 4).tolist() == [0, 1, 2, 3, 2, 3, 2, 3, 2]  # by hand: rows 3, 2 alternate
    plain_cfg = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization="LN", positional="learned"
    )
    plain = build_model(plain_cfg, 9, 8, 12, seed=1).eval()
    _randomise(plain)
    tied = build_model(ModelConfig(**{**plain_cfg.__dict__, "tie_positions_from": 5}), 9, 8, 12, seed=1).eval()
    tied.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 9, (3, 12), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(tied(tokens), transplant(plain, 5, "same_parity")(tokens), atol=1e-6)
    assert torch.allclose(tied(tokens)[:, :5], plain(tokens)[:, :5], atol=1e-6)  # trained positions untouched
    assert not torch.allclose(tied(tokens)[:, 5:], plain(tokens)[:, 5:], atol=1e-3)
    tied.train()
    tied(tokens).sum().backward()
    assert tied.W_pos.grad[5:].abs().max() == 0 and tied.W_pos.grad[:5].abs().max() > 0
    for bad in (dict(tie_positions_from=4), dict(positional="learned", tie_positions_from=1)):
        with pytest.raises(ConfigError, match="tie_positions_from"):
            ModelConfig(**bad).validate()


def test_tied_positions_reload_exactly(tmp_path):
    model, _ = train_and_reload(tmp_path, "model.positional=learned", "model.tie_positions_from=3")
    assert model.workbench_options["tie_positions_from"] == 3

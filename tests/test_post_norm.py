"""Post-Norm against a hand-written post-norm forward pass on random weights, and exact reloads."""

import math

import pytest
import torch

from training import runs
from training.models import ModelConfig, build_model
from training.trainer import train

from .conftest import tiny_config


def _ln(x, w=None, b=None, eps=1e-5):
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x if w is None else x * w + b


def reference(model, tokens, attn_only: bool, affine: bool):
    """x = LN(x + attn(x)); x = LN(x + mlp(x)); logits = x W_U + b_U, written out by hand."""
    x = model.W_E[tokens] + model.W_pos[: tokens.shape[1]]
    n = tokens.shape[1]
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for block in model.blocks:
        a = block.attn
        q = torch.einsum("bpm,hmd->bphd", x, a.W_Q) + a.b_Q
        k = torch.einsum("bpm,hmd->bphd", x, a.W_K) + a.b_K
        v = torch.einsum("bpm,hmd->bphd", x, a.W_V) + a.b_V
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(a.cfg.d_head)
        pattern = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        attn_out = torch.einsum("bqhd,hdm->bqm", z, a.W_O) + a.b_O
        ln = block.ln_post_attn
        x = _ln(x + attn_out, ln.w, ln.b) if affine else _ln(x + attn_out)
        if not attn_only:
            m = block.mlp
            hidden = torch.nn.functional.gelu(x @ m.W_in + m.b_in)
            ln = block.ln_post_mlp
            y = x + hidden @ m.W_out + m.b_out
            x = _ln(y, ln.w, ln.b) if affine else _ln(y)
    return x @ model.W_U + model.b_U


@pytest.mark.parametrize("attn_only, norm", [(False, "LN"), (True, "LN"), (False, "LNPre")])
def test_post_norm_matches_the_hand_written_forward(attn_only, norm):
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=attn_only, d_mlp=32, normalization=norm,
                      norm_position="post", positional="learned")
    model = build_model(cfg, 9, 8, 8, seed=3).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # random weights everywhere, the post-norm LayerNorms included
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    tokens = torch.randint(0, 9, (4, 8), generator=gen)
    want = reference(model, tokens, attn_only, norm == "LN")
    assert torch.allclose(model(tokens), want, atol=1e-5)
    # the pre-norm model of the same weights is something else
    assert model.cfg.normalization_type is None
    _, cache = model.run_with_cache(tokens)
    stream = cache["blocks.1.hook_resid_post"]  # caches hold the normalised stream the unembedding reads
    assert torch.allclose(stream @ model.W_U + model.b_U, want, atol=1e-5)


def test_post_norm_run_reloads_exactly(tmp_path):
    cfg = tiny_config("model.normalization=LN", "model.norm_position=post", "model.attn_only=false")
    run = runs.create_run_dir(tmp_path / "run", cfg)
    res = train(cfg, run, progress=False)
    model = runs.load_run(run, weights="raw")
    again = cfg.make_task().evaluate(model, cfg.train.final_eval_sets, cfg.train.eval_seed)
    assert again.values["tv"] == pytest.approx(res.final["raw"].values["tv"], abs=1e-6)
    state = runs.load_weights(run / runs.weights_file("raw"))
    assert "blocks.0.ln_post_attn.w" in state and not torch.allclose(state["blocks.0.ln_post_attn.w"], torch.ones(1))


def test_post_norm_needs_a_norm():
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="needs model.normalization"):
        ModelConfig(norm_position="post").validate()


def test_additive_decompositions_refuse_models_they_do_not_describe():
    """Post-Norm and output rescaling break the sum that decompose_logits and the attribution rely
    on: their parts would not add up to the logits."""
    from interp.attribution import component_logits
    from interp.dispersion import dispersion
    from interp.displacement import decompose_logits
    from training.tasks.set_complement import SetComplementConfig, SetComplementTask

    tokens = torch.randint(1, 9, (4, 6))
    for cfg in (ModelConfig(d_model=16, d_head=8, normalization="LN", norm_position="post"),
                ModelConfig(d_model=16, d_head=8, out_rescale_len=3)):
        model = build_model(cfg, 9, 8, 8, seed=1).eval()
        with pytest.raises(ValueError, match="does not apply"):
            decompose_logits(model, tokens)
        with pytest.raises(ValueError, match="does not apply"):
            component_logits(model, tokens)
        d = dispersion(model, SetComplementTask(SetComplementConfig(v=8, train_max_len=3)), sets_per_length=16)
        assert math.isnan(d.self_displacement_cv[0][0]) and not math.isnan(d.margin_law[2])
    ssmax = build_model(ModelConfig(d_model=16, d_head=8, ssmax=True), 9, 8, 8, seed=1).eval()
    parts = decompose_logits(ssmax, tokens)  # scalable softmax changes only the pattern: still exact
    assert torch.allclose(parts.total(), parts.logits, atol=1e-4)

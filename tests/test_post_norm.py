"""Post-Norm against a hand-written post-norm forward pass on random weights, and exact reloads."""

import math

import pytest
import torch

from training import runs
from training.models import ModelConfig, build_model

from .conftest import train_and_reload


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
    cfg = ModelConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        attn_only=attn_only,
        d_mlp=32,
        normalization=norm,
        norm_position="post",
        positional="learned",
    )
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
    _, run = train_and_reload(tmp_path, "model.normalization=LN", "model.norm_position=post", "model.attn_only=false")
    state = runs.load_weights(run / runs.weights_file("raw"))
    assert "blocks.0.ln_post_attn.w" in state and not torch.allclose(state["blocks.0.ln_post_attn.w"], torch.ones(1))


def test_post_norm_needs_a_norm():
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="needs model.normalization"):
        ModelConfig(norm_position="post").validate()


def _random(cfg, seed=3):
    model = build_model(cfg, 9, 8, 8, seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def test_post_norm_decomposition_against_hand_computed_parts():
    """One attention-only layer, x = LN(e + p + attn): with the scale s of the last position
    computed by hand, the direct part is (C(W_E[t]) w / s) W_U, source k of head h adds
    a_hk (C(v_k W_O[h]) w / s) W_U, and the constants are (C(b_O) w / s + b) W_U + b_U."""
    from interp.set_complement.displacement import decompose_logits

    cfg = ModelConfig(d_model=16, n_heads=2, d_head=8, normalization="LN", norm_position="post")
    model = _random(cfg)
    tokens = torch.randint(1, 9, (3, 5), generator=torch.Generator().manual_seed(0))
    parts = decompose_logits(model, tokens)
    _, cache = model.run_with_cache(tokens)
    ln, W_U = model.blocks[0].ln_post_attn, model.W_U
    x = model.W_E[tokens] + model.W_pos[:5] + cache["blocks.0.hook_attn_out"]
    s = (x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()[:, -1]  # [b, 1], TL's eps
    C = lambda y: y - y.mean(-1, keepdim=True)  # noqa: E731
    assert torch.allclose(parts.direct, (C(model.W_E[tokens[:, -1]]) * ln.w / s) @ W_U, atol=1e-5)
    assert torch.allclose(parts.pos, (C(model.W_pos[4].expand(3, -1)) * ln.w / s) @ W_U, atol=1e-5)
    v, pattern = cache["blocks.0.attn.hook_v"], cache["blocks.0.attn.hook_pattern"][:, :, -1]  # [b,k,h,d], [b,h,k]
    for h in range(2):
        want = pattern[:, h, :, None] * ((C(v[:, :, h] @ model.W_O[0, h]) * ln.w / s[:, None]) @ W_U)
        assert torch.allclose(parts.heads[:, 0, h], want, atol=1e-5)
    bias = (C(model.b_O[0]).expand(3, -1) * ln.w / s) @ W_U + ln.b @ W_U + model.b_U
    assert torch.allclose(parts.bias, bias, atol=1e-5)
    assert torch.allclose(parts.total(), parts.logits, atol=1e-5)


def test_output_rescaled_decomposition_against_the_hand_factor():
    """No norm, output rescaled from 2 positions on: at the 5th position each head part is the
    plain pattern-weighted OV logit times 5 / 2, and so is b_O's."""
    from interp.set_complement.displacement import decompose_logits

    model = _random(ModelConfig(d_model=16, n_heads=2, d_head=8, normalization="none", out_rescale_len=2))
    tokens = torch.randint(1, 9, (3, 5), generator=torch.Generator().manual_seed(1))
    parts = decompose_logits(model, tokens)
    _, cache = model.run_with_cache(tokens)
    v, pattern = cache["blocks.0.attn.hook_v"], cache["blocks.0.attn.hook_pattern"][:, :, -1]
    for h in range(2):
        want = 2.5 * pattern[:, h, :, None] * ((v[:, :, h] @ model.W_O[0, h]) @ model.W_U)
        assert torch.allclose(parts.heads[:, 0, h], want, atol=1e-5)
    assert torch.allclose(parts.bias, (2.5 * model.b_O[0] @ model.W_U + model.b_U).expand(3, -1), atol=1e-5)
    assert torch.allclose(parts.total(), parts.logits, atol=1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        dict(normalization="LN", norm_position="post", n_layers=2, attn_only=False, d_mlp=32),
        dict(normalization="LNPre", norm_position="post", n_layers=2),
        dict(normalization="LN", out_rescale_len=3, n_layers=2, attn_only=False, d_mlp=32),
        dict(normalization="LN", norm_position="post", out_rescale_len=3),
        dict(normalization="LN", final_norm=False, n_layers=2, attn_only=False, d_mlp=32),
        dict(normalization="LN", block_norms=False, n_layers=2, attn_only=False, d_mlp=32),
        dict(readout_len_scale=True, n_layers=2, attn_only=False, d_mlp=32),
        dict(normalization="LN", readout_len_scale=True, out_rescale_len=3),
    ],
)
def test_every_decomposition_adds_up_through_post_norm_and_rescaling(changes):
    """The per-source split, the attribution and the dispersion CV apply to Post-Norm and
    output-rescaled models: their parts sum to the model's own logits at every position."""
    from interp.core.attribution import component_logits
    from interp.set_complement.dispersion import dispersion
    from interp.set_complement.displacement import decompose_logits
    from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

    model = _random(ModelConfig(d_model=16, n_heads=2, d_head=8, **changes))
    tokens = torch.randint(1, 9, (4, 6), generator=torch.Generator().manual_seed(2))
    logits = model(tokens)
    for q in range(6):
        parts = decompose_logits(model, tokens, position=q)
        assert torch.allclose(parts.total(), logits[:, q], atol=1e-4)
    stack, labels = component_logits(model, tokens)
    assert torch.allclose(stack.sum(0), logits, atol=1e-4)
    assert labels[:2] == ["L0H0", "L0H1"] and labels[-3:] == ["embed", "pos_embed", "bias"]
    d = dispersion(model, SetComplementTask(SetComplementConfig(v=8, train_max_len=3)), n=16)
    assert math.isfinite(d.self_displacement_cv[0][0]) and math.isfinite(d.margin_law[2])


def test_the_readout_matches_transformer_lens_on_a_pre_norm_model():
    """The frozen-scale readout and TransformerLens's get_full_resid_decomposition(apply_ln=True)
    are separate implementations of the same split on a pre-norm model."""
    from interp.core.attribution import _readout_components, component_logits

    model = _random(
        ModelConfig(d_model=16, n_heads=2, d_head=8, n_layers=2, attn_only=False, d_mlp=32, normalization="LN")
    )
    tokens = torch.randint(1, 9, (4, 6), generator=torch.Generator().manual_seed(4))
    ours, our_labels = _readout_components(model, tokens)
    tl, tl_labels = component_logits(model, tokens)
    assert our_labels == tl_labels
    assert torch.allclose(ours, tl, atol=1e-5)


def test_scalable_softmax_decomposes_too():
    from interp.set_complement.displacement import decompose_logits

    tokens = torch.randint(1, 9, (4, 6))
    ssmax = build_model(ModelConfig(d_model=16, d_head=8, ssmax=True), 9, 8, 8, seed=1).eval()
    parts = decompose_logits(ssmax, tokens)  # scalable softmax changes only the pattern: still exact
    assert torch.allclose(parts.total(), parts.logits, atol=1e-4)


def test_pre_norm_without_the_final_norm():
    """model.final_norm=false: the same weights as a pre-norm model, read out before ln_final
    (TransformerLens's own forward of the full model gives the stream it must unembed); it
    reloads exactly, and it is refused where there is no final LayerNorm to drop."""
    from training.errors import ConfigError

    full_cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization="LN")
    full = _random(full_cfg)
    bare = build_model(ModelConfig(**{**full_cfg.__dict__, "final_norm": False}), 9, 8, 8, seed=0).eval()
    state = {k: v for k, v in full.state_dict().items() if not k.startswith("ln_final.")}
    assert set(state) == set(bare.state_dict())
    bare.load_state_dict(state)
    tokens = torch.randint(0, 9, (4, 8), generator=torch.Generator().manual_seed(6))
    _, cache = full.run_with_cache(tokens)
    want = cache["blocks.1.hook_resid_post"] @ full.W_U + full.b_U
    assert torch.allclose(bare(tokens), want, atol=1e-5)
    assert not torch.allclose(full(tokens), want, atol=1e-3)
    assert "ln_final.hook_scale" not in bare.hook_dict
    for bad in (dict(final_norm=False), dict(final_norm=False, normalization="LN", norm_position="post")):
        with pytest.raises(ConfigError, match="final_norm=false"):
            ModelConfig(**bad).validate()


def test_pre_norm_without_the_final_norm_reloads_exactly(tmp_path):
    model, _ = train_and_reload(tmp_path, "model.normalization=LN", "model.final_norm=false")
    assert isinstance(model.ln_final, torch.nn.Identity)


def test_final_layer_norm_only():
    """model.block_norms=false: the blocks see the raw stream, as in the model without norms, and
    only ln_final normalises it before the unembedding. Ground truth: a model with no norms and
    the same block weights gives the stream, and a LayerNorm written out by hand reads it out."""
    from training.errors import ConfigError

    cfg = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization="LN", block_norms=False
    )
    model = _random(cfg)
    plain = build_model(ModelConfig(**{**cfg.__dict__, "normalization": "none", "block_norms": True}), 9, 8, 8).eval()
    state = model.state_dict()
    assert not any(".ln1." in k or ".ln2." in k for k in state)
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("ln_final.")})
    tokens = torch.randint(0, 9, (4, 8), generator=torch.Generator().manual_seed(7))
    _, cache = plain.run_with_cache(tokens)
    x = cache["blocks.1.hook_resid_post"]
    centred = x - x.mean(-1, keepdim=True)
    normed = centred / (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    want = (normed * model.ln_final.w + model.ln_final.b) @ model.W_U + model.b_U
    assert torch.allclose(model(tokens), want, atol=1e-5)
    assert "blocks.0.ln1.hook_scale" not in model.hook_dict and "ln_final.hook_scale" in model.hook_dict
    for bad in (
        dict(block_norms=False),
        dict(block_norms=False, normalization="LN", norm_position="post"),
        dict(block_norms=False, normalization="LN", final_norm=False),
    ):
        with pytest.raises(ConfigError, match="block_norms=false"):
            ModelConfig(**bad).validate()


def test_final_layer_norm_only_reloads_exactly_and_decomposes(tmp_path):
    from interp.set_complement.displacement import decompose_logits

    model, _ = train_and_reload(tmp_path, "model.normalization=LN", "model.block_norms=false")
    assert isinstance(model.blocks[0].ln1, torch.nn.Identity)
    tokens = torch.randint(1, 9, (4, 3), generator=torch.Generator().manual_seed(1))
    parts = decompose_logits(model, tokens)
    assert torch.allclose(parts.total(), parts.logits, atol=1e-4)

"""Model construction: dropout hooks, positional options, plain-TransformerLens round trip."""

import warnings

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from training.models import ModelConfig, build_model, hooked_config_kwargs


def _tokens(n=4, length=6, v=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, v, generator=g).argsort(1)[:, :length] + 1


def test_dropout_only_in_train_mode():
    cfg = ModelConfig(d_model=16, d_head=8, n_heads=2, attn_dropout=0.3, resid_dropout=0.3, embed_dropout=0.3)
    model = build_model(cfg, 9, 8, 8)
    x = _tokens()
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_dropout_hooks_survive_reset_and_zero_rate_is_a_no_op():
    cfg = ModelConfig(d_model=16, d_head=8, attn_dropout=0.5)
    model = build_model(cfg, 9, 8, 8).train()
    model.reset_hooks()
    x = _tokens()
    assert not torch.equal(model(x), model(x))
    plain = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 8)
    assert torch.equal(plain.train()(x), plain.eval()(x))


def test_pattern_dropout_acts_on_hook_pattern():
    cfg = ModelConfig(d_model=16, d_head=8, attn_dropout=0.5)
    model = build_model(cfg, 9, 8, 8).train()
    _, cache = model.run_with_cache(_tokens(), names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]
    # Inverted dropout: surviving entries are scaled by 1/(1-p), dropped ones are exactly 0.
    assert (pattern == 0).float().mean() > 0.2
    assert pattern.max() > 1.0


def test_no_positions_means_the_prefix_is_a_set():
    model = build_model(ModelConfig(d_model=16, d_head=8, positional="none"), 9, 8, 8).eval()
    assert not model.W_pos.requires_grad and (model.W_pos == 0).all()
    x = _tokens(length=5)
    shuffled = torch.cat([x[:, :4].flip(1), x[:, 4:]], dim=1)  # same set, same last token
    assert torch.allclose(model(x)[:, -1], model(shuffled)[:, -1], atol=1e-5)
    learned = build_model(ModelConfig(d_model=16, d_head=8, positional="learned"), 9, 8, 8).eval()
    assert not torch.allclose(learned(x)[:, -1], learned(shuffled)[:, -1], atol=1e-5)


def test_state_dict_round_trips_through_plain_transformer_lens():
    cfg = ModelConfig(
        n_layers=2, d_model=16, d_head=8, n_heads=2, attn_only=False, normalization="LN", attn_dropout=0.1
    )
    model = build_model(cfg, 9, 8, 8, seed=5).eval()
    kwargs = hooked_config_kwargs(cfg, 9, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = HookedTransformer(HookedTransformerConfig.from_dict(kwargs))
    plain.load_state_dict(model.state_dict())
    x = _tokens()
    assert torch.equal(plain.eval()(x), model(x))


def test_construction_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 8, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 8, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_deprecation_warning_is_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(ModelConfig(d_model=16, d_head=8, positional="rotary"), 9, 8, 8)
    assert not [w for w in caught if "HookedTransformer" in str(w.message)]


def test_workbench_options_name_only_what_applies():
    """A model without normalization reports no norm position or final norm (the report's README
    printed 'norm_position = pre, final_norm = True' for one); a LayerNorm model reports both."""
    from training.config import load_config, preset_path

    def options(*over):
        cfg = load_config(preset_path("demo"), list(over))
        return build_model(cfg.model, *cfg.vocab(), cfg.n_ctx(), 0).workbench_options

    plain = options()
    assert plain["normalization"] == "none" and "norm_position" not in plain and "final_norm" not in plain
    ln = options("model.normalization=LN", "model.final_norm=false")
    assert (ln["norm_position"], ln["final_norm"]) == ("pre", False)

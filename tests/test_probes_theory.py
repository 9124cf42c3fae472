"""Probes against ground truth: the hand-built balanced model's closed forms, exact logit
decomposition, uniform-attention entropy, interventions and patching with hand-derived results."""

import math
import re

import pytest
import torch

from interp.core.attention import pattern_entropy
from interp.core.patching import make_swap_pairs, patch_swap
from interp.core.visualize import attention_html, plot_displacement, plot_entropy, plot_metrics, plot_patching
from interp.set_complement.displacement import decompose_logits, displacement_by_length
from interp.set_complement.interventions import (
    evaluate_interventions,
    log_scale_hooks,
    out_rescale_hooks,
    temperature_hooks,
)
from interp.set_complement.probes import attention_entropy, evaluate_lengths
from interp.set_complement.theory import analytic_logits, balanced_model, closed_form, extract_BD
from training.models import ModelConfig, build_model
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

V, B_, C_ = 10, 2.0, 5.0


def _task(bos=False, v=V, train_max_len=4):
    return SetComplementTask(SetComplementConfig(v=v, bos=bos, train_max_len=train_max_len))


@pytest.mark.parametrize("bos", [False, True])
def test_balanced_model_matches_closed_form(bos):
    task = _task(bos)
    model = balanced_model(V, B_, C_, n_ctx=V + 1, bos=bos)
    measured = evaluate_lengths(model, task, n=64)
    exact = closed_form(V, B_, C_, bos=bos)
    for m in ("tv", "kl", "itr", "margin", "gap", "acc"):
        assert measured.values[m] == pytest.approx(exact.values[m], abs=2e-5), m


def test_closed_form_by_hand_at_length_two():
    # s=2, v=10: members get -5/2 and -2-5/2, eight valid tokens get 0.
    z = 8 + math.exp(-2.5) + math.exp(-4.5)
    cf = closed_form(V, B_, C_)
    assert cf.values["itr"][1] == pytest.approx((math.exp(-2.5) + math.exp(-4.5)) / z)
    assert cf.values["gap"][1] == pytest.approx((2.5 + 4.5) / 2)
    assert cf.values["margin"][1] == pytest.approx(2.5)
    assert [g * s for s, g in zip(cf.lengths, cf.values["gap"])] == pytest.approx([B_ + C_] * (V - 1))


@pytest.mark.parametrize("positions", ["last", "all"])
def test_uniform_attention_entropy_is_log_n(positions):
    task = _task(bos=True)
    stats = attention_entropy(balanced_model(V, B_, C_, n_ctx=V + 1, bos=True), task, n=32, positions=positions)
    for r in stats.rows:
        s = r["length"]
        logs = [math.log(j + 1) for j in range(1, s + 1)]  # BOS plus j items
        want = math.log(s + 1) if positions == "last" else sum(logs) / s
        assert r["entropy_mean"] == pytest.approx(want, abs=1e-6)
        assert r["uniform_entropy"] == pytest.approx(want, abs=1e-6)
        assert r["entropy_std"] == pytest.approx(0, abs=1e-6)
        bos = 1 / (s + 1) if positions == "last" else sum(1 / (j + 1) for j in range(1, s + 1)) / s
        assert r["bos_mass_mean"] == pytest.approx(bos, abs=1e-6)
    # the same numbers as a [layer, head, length] tensor
    assert stats["entropy_mean"].shape == (1, 1, len(stats.lengths))
    if positions == "last":
        assert torch.allclose(
            stats["entropy_mean"][0, 0], torch.log(torch.tensor(stats.lengths, dtype=torch.float64) + 1), atol=1e-6
        )
    assert pattern_entropy(torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(math.log(2))


def test_theory_gap_with_bos():
    """With BOS the balanced model's gap is b/s + c/(s+1), not (2/s) gap(2): at b=3, c=8 and s=3 the
    gap is 1 + 2 = 3.000, where (2/s) gap(2) would say 2.778."""
    task = _task(bos=True)
    stats = displacement_by_length(balanced_model(V, 3.0, 8.0, n_ctx=V + 1, bos=True), task, n=32)
    for r in stats.rows:
        s = r["length"]
        assert r["gap"] == pytest.approx(3.0 / s + 8.0 / (s + 1), abs=1e-5)
        assert r["theory_gap"] == pytest.approx(r["gap"], abs=1e-4)
    assert stats.rows[2]["theory_gap"] == pytest.approx(3.0, abs=1e-4)


def test_displacement_of_balanced_model():
    task = _task()
    stats = displacement_by_length(balanced_model(V, B_, C_), task, n=32)
    assert stats.max_decomposition_error < 1e-5
    for r in stats.rows:
        assert r["gap"] == pytest.approx((B_ + C_) / r["length"], abs=1e-5)
        assert r["theory_gap"] == pytest.approx(r["gap"], abs=1e-5)
        assert r["heads_invalid"] == pytest.approx(-C_ / r["length"], abs=1e-5)
        assert r["heads_valid"] == pytest.approx(0, abs=1e-6)
    d, b = stats.balance
    assert d["what"] == "D_self" and d["mean"] == pytest.approx(-C_) and d["cv"] < 1e-6
    # as tensors: the one head's gap is c/s (valid 0, invalid -c/s), every token's D_self is -c
    lengths = torch.tensor(stats.lengths, dtype=torch.float64)
    assert torch.allclose(stats.head_gap[0, 0], C_ / lengths, atol=1e-5)
    assert torch.allclose(stats.self_displacement[0, 0], torch.full((V,), -C_, dtype=torch.float64), atol=1e-5)
    assert b["what"] == "B_self" and b["mean"] == pytest.approx(-B_) and b["cv"] < 1e-6


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(d_model=16, d_head=8, n_heads=2),
        ModelConfig(
            n_layers=2, d_model=16, d_head=8, n_heads=2, attn_only=False, normalization="LN", positional="learned"
        ),
        ModelConfig(n_layers=3, d_model=16, d_head=4, n_heads=3, normalization="LNPre", positional="rotary"),
    ],
)
def test_decomposition_sums_to_logits(cfg):
    model = build_model(cfg, V + 1, V, V, seed=4)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    task = _task(bos=True)
    tokens = task.sample_batch(16, max_len=7, generator=torch.Generator().manual_seed(1)).tokens
    dec = decompose_logits(model, tokens)
    assert dec.heads.shape == (16, cfg.n_layers, cfg.n_heads, 8, V)
    assert (dec.total() - dec.logits).abs().max().item() < 1e-4
    assert displacement_by_length(model, task, n=16).max_decomposition_error < 1e-4


def test_analytic_model_reproduces_a_one_layer_model():
    """f = B[t_s] + sum_i a_i D[t_i] (+ bias), with B and D read off the weights, equals the forward pass."""
    model = build_model(ModelConfig(d_model=16, d_head=8, n_heads=1), V + 1, V, V, seed=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    B, D, const = extract_BD(model)
    tokens = _task().sample_batch(8, max_len=6, generator=torch.Generator().manual_seed(0)).tokens
    logits, cache = model.run_with_cache(tokens)
    attn = cache["blocks.0.attn.hook_pattern"][:, 0, -1]
    want = analytic_logits(B, D[0], tokens, attn) + const
    assert torch.allclose(want, logits[:, -1], atol=1e-4)
    uniform = analytic_logits(B, D[0], tokens)
    assert torch.allclose(uniform, B[tokens[:, -1]] + D[0][tokens].mean(1), atol=1e-6)


def test_interventions_on_the_balanced_model():
    task = _task(train_max_len=4)
    model = balanced_model(V, B_, C_)
    res = evaluate_interventions(
        model, task, {"T": temperature_hooks(model, 0.5), "log": log_scale_hooks(model, 4)}, n=16
    )
    # All attention scores are 0: sharpening or tempering them cannot change uniform attention.
    for name in ("T", "log"):
        assert res[name].values["tv"] == pytest.approx(res["none"].values["tv"], abs=1e-6)
    # Rescaling the attention output by s/4 beyond length 4 gives every member -C/4.
    tokens = task.sample_batch(4, max_len=8, generator=torch.Generator().manual_seed(0)).tokens
    with model.hooks(fwd_hooks=out_rescale_hooks(model, 4)):
        last = model(tokens)[:, -1]
    members = tokens[:, :-1] - 1
    assert torch.allclose(last.gather(1, members), torch.full(members.shape, -C_ / 4), atol=1e-5)


def test_log_scale_multiplies_scores_by_log_ratio():
    model = build_model(ModelConfig(d_model=16, d_head=8, n_heads=2), V + 1, V, V, seed=5).eval()
    tokens = _task().sample_batch(3, max_len=9, generator=torch.Generator().manual_seed(0)).tokens
    _, cache = model.run_with_cache(tokens)
    scores = cache["blocks.0.attn.hook_attn_scores"]
    with model.hooks(fwd_hooks=log_scale_hooks(model, 3)):
        _, hooked = model.run_with_cache(tokens)
    q = 7  # attends to 8 tokens
    factor = math.log(8) / math.log(3)
    want = torch.softmax(scores[:, :, q, : q + 1] * factor, dim=-1)
    assert torch.allclose(hooked["blocks.0.attn.hook_pattern"][:, :, q, : q + 1], want, atol=1e-6)
    assert torch.allclose(hooked["blocks.0.attn.hook_pattern"][:, :, 1], cache["blocks.0.attn.hook_pattern"][:, :, 1])


def test_patching_on_the_balanced_model():
    task = _task()
    pairs = make_swap_pairs(task, 8, 5, swap_position=1, seed=0)
    assert (pairs.clean != pairs.corrupted).sum(1).eq(1).all()
    assert not (pairs.clean == (pairs.new + 1)[:, None]).any()
    res = patch_swap(balanced_model(V, B_, C_), task, length=5, n=8, swap_position=1)
    assert res.clean_ld == pytest.approx(C_ / 5, abs=1e-5) and res.corrupted_ld == pytest.approx(-C_ / 5, abs=1e-5)
    heads = res.head_out[0, :, 0]
    assert heads[-1].item() == pytest.approx(1.0, abs=1e-5)  # the last position's head output carries it
    assert heads[:-1].abs().max().item() < 1e-5
    resid = res.resid_pre[0]
    assert resid[1].item() == pytest.approx(1.0, abs=1e-5)  # restoring the swapped token restores all
    assert resid[[0, 2, 3, 4]].abs().max().item() < 1e-5


def test_patching_multi_layer_multi_head():
    model = build_model(
        ModelConfig(n_layers=2, d_model=16, d_head=8, n_heads=2, attn_only=False, normalization="LN"),
        V + 1,
        V,
        V,
        seed=1,
    )
    res = patch_swap(model, _task(), length=4, n=16, swap_position=2)
    assert res.head_out.shape == (2, 4, 2) and res.resid_pre.shape == (2, 4)
    assert torch.isfinite(res.head_out).all()
    # Before layer 0 the runs differ only at the swapped position: patching it there restores the
    # clean run exactly, and patching any other position changes nothing.
    assert res.resid_pre[0, 2].item() == pytest.approx(1.0, abs=1e-4)
    assert res.resid_pre[0, [0, 1, 3]].abs().max().item() < 1e-4


def test_attention_html_is_offline_and_holds_the_view(tmp_path):
    model = balanced_model(V, B_, C_)
    path = attention_html(model, torch.tensor([3, 7, 1, 9]), tmp_path / "a.html", title="demo <set>")
    text = path.read_text()
    assert "AttentionHeads" in text and "&lt;set&gt;" in text
    assert '"3"' in text and '"9"' in text
    assert not re.search(r"""(src|href)\s*=\s*["']https?:""", text)
    assert "unpkg" not in text and not re.search(r"""(import|from)\s*\(?\s*["']https?:""", text)


def test_figures_are_returned_and_saved_on_request(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    task = _task()
    model = balanced_model(V, B_, C_)
    metrics = {"balanced": evaluate_lengths(model, task, n=8)}
    open_before = plt.get_fignums()
    figs = [
        plot_metrics(metrics),  # not saved
        plot_metrics(metrics, tmp_path / "m"),
        plot_entropy({"balanced": attention_entropy(model, task, n=8)}, tmp_path / "e"),
        plot_displacement({"balanced": displacement_by_length(model, task, n=8)}, tmp_path / "d"),
        plot_patching(patch_swap(model, task, 4, n=4), tmp_path / "p"),
    ]
    assert all(isinstance(f, Figure) and f.axes for f in figs)
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["d.png", "d.svg", "e.png", "e.svg", "m.png", "m.svg", "p.png", "p.svg"]
    assert all(p.stat().st_size > 1000 for p in files)
    # detached from pyplot: nothing accumulates in a script, nothing is shown twice in Jupyter
    assert plt.get_fignums() == open_before


def test_attention_html_from_a_pattern_or_a_cache_and_displacement_tokens(tmp_path):
    from interp.core.visualize import displacement_html

    model = balanced_model(V, B_, C_)
    tokens = torch.tensor([3, 7, 1, 9])
    _, cache = model.run_with_cache(tokens[None])
    from_cache = attention_html(None, tokens, tmp_path / "c.html", cache=cache).read_text()
    uniform = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]
    from_pattern = attention_html(None, tokens, tmp_path / "p.html", pattern=uniform[None]).read_text()
    from_model = attention_html(model, tokens, tmp_path / "m.html").read_text()
    import re

    same = [re.sub(r"circuits-vis-[0-9a-f-]+", "", t) for t in (from_cache, from_pattern, from_model)]
    assert same[0] == same[1] == same[2]  # the balanced model attends uniformly (element ids are random)
    with pytest.raises(ValueError, match="covers 4 positions but there are 3"):
        attention_html(None, tokens[:3], tmp_path / "x.html", pattern=uniform[None])
    text = displacement_html(model, tokens, tmp_path / "d.html").read_text()
    assert "ColoredTokens" in text and '"3"' in text and "unpkg" not in text
    # D = -c I under uniform attention over 4 tokens: each member's own displacement is -c/4
    import json

    values = json.loads(re.search(r'"values":\s*(\[[^\]]*\])', text).group(1))
    assert values == pytest.approx([-C_ / 4] * 4, abs=1e-5)

"""General activation patching against hand-built ground truth: the balanced model (uniform
attention, so only values and the last position's head output carry a swap), two models that
differ in one head, and Othello prefixes that differ in their last move."""

import numpy as np
import pytest
import torch

from interp.core.patching import (
    activation_patch,
    legal_mass_metric,
    logit_diff_metric,
    make_swap_pairs,
    model_pair_cache,
    normalised,
    othello_move_pairs,
    patch_swap,
)
from interp.set_complement.theory import balanced_model
from training.models import ModelConfig, build_model
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

V, B, C = 10, 2.0, 5.0


def _swap_setup(model, length=5, swap=1):
    task = SetComplementTask(SetComplementConfig(v=V, train_max_len=4))
    pairs = make_swap_pairs(task, 8, length, swap_position=swap, seed=0)
    ld = logit_diff_metric(pairs.new, pairs.old)
    clean_logits, cache = model.run_with_cache(pairs.clean)
    metric = normalised(ld, ld(clean_logits).item(), ld(model(pairs.corrupted)).item())
    return pairs, cache, metric


def test_every_kind_on_the_balanced_model():
    """W_Q = W_K = 0: attention is uniform whatever the input, so patching queries, keys or
    patterns recovers nothing; the swapped token's value recovers all, as does the last
    position's head output; any other position recovers nothing."""
    model = balanced_model(V, B, C).train()
    pairs, cache, metric = _swap_setup(model)
    out = activation_patch(
        model,
        pairs.corrupted,
        cache,
        metric,
        sites=(
            "resid_pre",
            "attn_out",
            "head_out",
            "head_q",
            "head_k",
            "head_v",
            "head_pattern",
            "head_out_all_pos",
            "head_v_all_pos",
        ),
    )
    assert model.training  # mode restored
    one, zero = pytest.approx(1.0, abs=1e-5), 1e-5
    assert out["head_v"][0, 1, 0].item() == one and out["head_v"][0, [0, 2, 3, 4], 0].abs().max() < zero
    assert out["head_out"][0, -1, 0].item() == one and out["head_out"][0, :-1, 0].abs().max() < zero
    assert out["attn_out"][0, -1].item() == one
    assert out["resid_pre"][0, 1].item() == one
    for kind in ("head_q", "head_k", "head_pattern"):
        assert out[kind].abs().max() < zero, kind
    assert out["head_out_all_pos"][0, 0].item() == one and out["head_v_all_pos"][0, 0].item() == one
    # the set-task specialisation gives the same numbers
    res = patch_swap(
        model, SetComplementTask(SetComplementConfig(v=V, train_max_len=4)), length=5, n=8, swap_position=1
    )
    assert torch.allclose(res.head_out, out["head_out"]) and torch.allclose(res.resid_pre, out["resid_pre"])


def test_bad_sites_are_refused():
    model = balanced_model(V, B, C)
    pairs, cache, metric = _swap_setup(model)
    with pytest.raises(ValueError, match="unknown patching site 'bogus'"):
        activation_patch(model, pairs.corrupted, cache, metric, sites=("bogus",))
    with pytest.raises(ValueError, match="attention-only"):
        activation_patch(model, pairs.corrupted, cache, metric, sites=("mlp_out",))


def test_two_models_on_the_same_tokens():
    """Source: the balanced model with its values doubled (W_V x 2). Patched into the original on
    the same tokens, the head's output at the last position restores the source's logit difference
    in full. So does the value at the old token's position alone (swap position 0): the logit
    difference reads only the old token's and the new token's logits, and each value displaces
    only its own token's logit."""
    target = balanced_model(V, B, C)
    source = balanced_model(V, B, C)
    with torch.no_grad():
        source.blocks[0].attn.W_V.mul_(2)
    task = SetComplementTask(SetComplementConfig(v=V, train_max_len=4))
    pairs = make_swap_pairs(task, 8, 5, seed=1)
    ld = logit_diff_metric(pairs.new, pairs.old)
    src_logits, src_cache = model_pair_cache(source, pairs.clean)
    metric = normalised(ld, ld(src_logits).item(), ld(target(pairs.clean)).item())
    out = activation_patch(target, pairs.clean, src_cache, metric, sites=("resid_pre", "head_out", "head_v"))
    assert out["head_out"][0, -1, 0].item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(out["head_v"][0, :, 0], torch.tensor([1.0, 0, 0, 0, 0]), atol=1e-5)
    assert out["head_out"][0, :-1, 0].abs().max() < 1e-5
    assert out["resid_pre"].abs().max() < 1e-5  # the embeddings are the same in both models


def test_othello_move_pairs_and_patching(tmp_path):
    from training.tasks.othello.data import generate_dataset
    from training.tasks.othello.engine import replay, tokens_to_squares

    generate_dataset(tmp_path / "d", 60, seed=0, chunk=60, workers=1, progress=False)
    games = np.load(tmp_path / "d" / "games.npy")
    pairs = othello_move_pairs(games, move_index=12, seed=0)
    assert len(pairs.games) > 40 and pairs.clean.shape == (len(pairs.games), 12)
    assert (pairs.clean != pairs.corrupted).sum(1).eq(1).all() and (pairs.clean[:, -1] != pairs.corrupted[:, -1]).all()
    replay(tokens_to_squares(pairs.corrupted.numpy()))  # every corrupted prefix is a legal game (raises otherwise)
    assert (pairs.legal_clean != pairs.legal_corrupted).any(1).float().mean() > 0.5
    assert not pairs.legal_clean[:, 0].any()
    cfg = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, attn_only=False, d_mlp=32, normalization="LN", positional="learned"
    )
    model = build_model(cfg, 61, 61, 59, seed=0).eval()
    mass = legal_mass_metric(pairs.legal_clean)
    clean_logits, cache = model.run_with_cache(pairs.clean)
    metric = normalised(mass, mass(clean_logits).item(), mass(model(pairs.corrupted)).item())
    out = activation_patch(model, pairs.corrupted, cache, metric, sites=("resid_pre", "head_out", "mlp_out"))
    # before layer 0 the runs differ only at the last move: patching it there restores everything
    assert out["resid_pre"][0, -1].item() == pytest.approx(1.0, abs=1e-4)
    assert out["resid_pre"][0, :-1].abs().max() < 1e-4
    assert out["head_out"].shape == (2, 12, 2) and out["mlp_out"].shape == (2, 12)

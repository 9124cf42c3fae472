"""Activation patching, built on ``transformer_lens.patching``: one generic function, pair and
metric builders, and the set task's swap experiment as a thin specialisation.

Patching runs the model on *corrupted* tokens, overwrites one activation with its value from a
*clean* cache, and reads a metric; normalised, 0 is the corrupted run and 1 the clean run.

- ``activation_patch(model, corrupted, clean_cache, metric, sites)`` runs any of TransformerLens's
  patching sweeps (``PATCHERS``: residual streams, attention and MLP outputs, each head's output,
  query, key, value or pattern, by position or over all positions) for any pair and metric.
- Pairs: ``make_swap_pairs`` (a set with one member swapped for a non-member),
  ``othello_move_pairs`` (game prefixes that differ in their last move, both legal), and two models
  on the same tokens (``model_pair_cache``: the clean cache comes from the other model, e.g. an
  original and a position-transplanted one).
- Metrics: ``logit_diff_metric`` (logit of given outputs minus others), ``legal_mass_metric``
  (probability on one board's legal moves minus the rest), ``normalised``.

The set swap: clean input a set ``S``; corrupted, ``S`` with the member at ``swap_position``
replaced by a token outside ``S``. The clean model should rank the new token above the old one (the
old one is a member), the corrupted model the other way round; the metric is the logit difference
``LD = logit[new] - logit[old]`` at the last position, averaged over examples. ``patch_swap`` reads
which heads and positions carry the membership information, for any number of layers and heads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import patching as tl_patching

from training.scoped import eval_mode, model_device
from training.tasks.set_complement.task import SetComplementTask


@dataclass
class SwapPairs:
    clean: torch.Tensor
    corrupted: torch.Tensor
    old: torch.Tensor  # output index of the swapped-out member
    new: torch.Tensor  # output index of the swapped-in non-member
    swap_position: int  # sequence position of the swap


def make_swap_pairs(
    task: SetComplementTask, n: int, length: int, swap_position: int = 0, seed: int = 0, device="cpu"
) -> SwapPairs:
    """``n`` clean sets of ``length`` items and their one-token corruptions at item ``swap_position``."""
    if not 0 <= swap_position < length:
        raise ValueError(f"swap_position must be in 0..{length - 1}, got {swap_position}")
    if not 1 <= length < task.v:
        raise ValueError(f"length must be in 1..{task.v - 1}, got {length}")
    gen = torch.Generator(device=device).manual_seed(seed)
    batch = task.sample_batch(n, max_len=length, generator=gen, device=device)
    old = batch.items[:, swap_position].clone()
    new = batch.next_item[:, -1].clone()  # the next permutation item is never in the set
    corrupted = batch.tokens.clone()
    corrupted[:, swap_position + task.offset] = task.output_to_token(new)
    return SwapPairs(batch.tokens, corrupted, old, new, swap_position + task.offset)


@dataclass
class PatchingResult:
    head_out: torch.Tensor  # [layer, pos, head] recovery
    resid_pre: torch.Tensor  # [layer, pos] recovery
    clean_ld: float
    corrupted_ld: float
    swap_position: int
    length: int

    def to_dict(self) -> dict:
        return {
            "head_out": self.head_out.tolist(),
            "resid_pre": self.resid_pre.tolist(),
            "clean_ld": self.clean_ld,
            "corrupted_ld": self.corrupted_ld,
            "swap_position": self.swap_position,
            "length": self.length,
        }


@contextlib.contextmanager
def _patching_bars(progress: bool):
    """``transformer_lens.patching`` draws a tqdm bar per sweep and has no switch for it; without
    ``progress`` its module-level ``tqdm`` is swapped for a pass-through, and put back after."""
    if progress:
        yield
        return
    original = tl_patching.tqdm
    tl_patching.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        tl_patching.tqdm = original


# -- the generic sweep ------------------------------------------------------------------------

PATCHERS = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,  # [layer, pos]
    "resid_mid": tl_patching.get_act_patch_resid_mid,  # [layer, pos]
    "attn_out": tl_patching.get_act_patch_attn_out,  # [layer, pos]
    "mlp_out": tl_patching.get_act_patch_mlp_out,  # [layer, pos]
    "head_out": tl_patching.get_act_patch_attn_head_out_by_pos,  # [layer, pos, head]
    "head_q": tl_patching.get_act_patch_attn_head_q_by_pos,  # [layer, pos, head]
    "head_k": tl_patching.get_act_patch_attn_head_k_by_pos,  # [layer, pos, head]
    "head_v": tl_patching.get_act_patch_attn_head_v_by_pos,  # [layer, pos, head]
    "head_pattern": tl_patching.get_act_patch_attn_head_pattern_by_pos,  # [layer, dest pos, head]
    "head_out_all_pos": tl_patching.get_act_patch_attn_head_out_all_pos,  # [layer, head]
    "head_q_all_pos": tl_patching.get_act_patch_attn_head_q_all_pos,
    "head_k_all_pos": tl_patching.get_act_patch_attn_head_k_all_pos,
    "head_v_all_pos": tl_patching.get_act_patch_attn_head_v_all_pos,
    "head_pattern_all_pos": tl_patching.get_act_patch_attn_head_pattern_all_pos,
}
"""Every patching sweep by name, with the axes of its result."""


@torch.no_grad()
def activation_patch(
    model,
    corrupted: Int[Tensor, "batch pos"],
    clean_cache,
    metric,
    sites: tuple[str, ...] = ("resid_pre", "head_out"),
    progress: bool = False,
) -> dict[str, Tensor]:
    """Each sweep of ``sites`` (keys of ``PATCHERS``): the metric of the corrupted run with each
    activation patched in from ``clean_cache``. The model's train/eval mode is restored."""
    unknown = [k for k in sites if k not in PATCHERS]
    if unknown:
        raise ValueError(f"unknown patching site {unknown[0]!r} (choose from {', '.join(PATCHERS)})")
    if model.cfg.attn_only and any(k in ("resid_mid", "mlp_out") for k in sites):
        raise ValueError("an attention-only model has no MLP, so no resid_mid or mlp_out to patch")
    with eval_mode(model), _patching_bars(progress):
        return {k: PATCHERS[k](model, corrupted, clean_cache, metric).cpu() for k in sites}


def normalised(metric, clean_value: float, corrupted_value: float):
    """``metric`` rescaled so that the corrupted run reads 0 and the clean run 1."""
    denom = clean_value - corrupted_value
    if abs(denom) < 1e-9:
        raise ValueError("clean and corrupted runs give the same metric; nothing to recover")
    return lambda logits: (metric(logits) - corrupted_value) / denom


def logit_diff_metric(good: Int[Tensor, " batch"], bad: Int[Tensor, " batch"], position: int = -1):
    """Mean over examples of ``logit[good] - logit[bad]`` at ``position`` (output indices)."""

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Tensor:
        last = logits[:, position]
        return (last.gather(1, good[:, None].to(last.device)) - last.gather(1, bad[:, None].to(last.device))).mean()

    return metric


def legal_mass_metric(legal: Bool[Tensor, "batch vocab"], position: int = -1, ignore: tuple[int, ...] = (0,)):
    """Mean over examples of the probability on ``legal`` outputs minus that on the others
    (outputs in ``ignore``, OthelloGPT's padding token by default, count for neither)."""
    other = ~legal
    other[:, list(ignore)] = False

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Tensor:
        p = logits[:, position].float().softmax(-1)
        return ((p * legal.to(p.device)).sum(-1) - (p * other.to(p.device)).sum(-1)).mean()

    return metric


@torch.no_grad()
def model_pair_cache(source_model, tokens: Int[Tensor, "batch pos"]):
    """(logits, cache) of ``source_model`` on ``tokens``: the clean side of a two-model pair, to be
    patched into another model of the same shape run on the same tokens."""
    with eval_mode(source_model):
        return source_model.run_with_cache(tokens)


@dataclass
class MovePairs:
    """Othello prefixes that differ only in their last move (both legal where they are played)."""

    clean: Int[Tensor, "batch moves"]
    corrupted: Int[Tensor, "batch moves"]
    legal_clean: Bool[Tensor, "batch vocab"]
    """Legal next moves (as tokens) after the clean prefix."""
    legal_corrupted: Bool[Tensor, "batch vocab"]
    games: Int[Tensor, " batch"]
    """Which of the given games each pair comes from (games without an alternative are dropped)."""


def othello_move_pairs(games, move_index: int, seed: int = 0) -> MovePairs:
    """From ``games`` (``[games, 60]`` squares, -1 padded): the first ``move_index`` moves, and the
    same with the last move replaced by another move legal at that point, chosen at random.
    Games shorter than ``move_index`` or with a single legal move there are dropped."""
    import numpy as np

    from training.tasks.othello.engine import SQUARE_TO_TOKEN, bits_to_bool, replay, squares_to_tokens
    from training.tasks.othello.task import N_CTX

    games = np.asarray(games)
    if not 1 <= move_index <= N_CTX:
        raise ValueError(f"move_index must be in 1..{N_CTX}, got {move_index}")
    prefix = games[:, :move_index].astype(np.int64)
    keep = (prefix >= 0).all(1)
    before = bits_to_bool(replay(prefix[:, : move_index - 1]).legal[:, -1])  # legal where the last move is played
    before[np.arange(len(prefix)), np.where(prefix[:, -1] >= 0, prefix[:, -1], 0)] = False  # not the move itself
    keep &= before.any(1)
    rng = np.random.default_rng(seed)
    prefix, before, index = prefix[keep], before[keep], np.flatnonzero(keep)
    # a uniformly random other legal square: the argmax of random keys over the legal ones
    alt = np.where(before, rng.random(before.shape), -1.0).argmax(1)
    corrupted = prefix.copy()
    corrupted[:, -1] = alt

    def legal_tokens(moves) -> Tensor:
        sq = bits_to_bool(replay(moves).legal[:, -1])
        out = np.zeros((len(moves), 61), dtype=bool)
        playable = SQUARE_TO_TOKEN >= 0
        out[:, SQUARE_TO_TOKEN[playable]] = sq[:, playable]
        return torch.from_numpy(out)

    return MovePairs(
        torch.from_numpy(squares_to_tokens(prefix)),
        torch.from_numpy(squares_to_tokens(corrupted)),
        legal_tokens(prefix),
        legal_tokens(corrupted),
        torch.from_numpy(index),
    )


# -- the set swap, a specialisation --------------------------------------------------------------


@torch.no_grad()
def patch_swap(
    model,
    task: SetComplementTask,
    length: int,
    n: int = 256,
    swap_position: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> PatchingResult:
    """Recovery of the swapped tokens' logit difference when patching each head output at each
    position, and each residual stream (``resid_pre``) at each position, from clean into corrupted."""
    with eval_mode(model), _patching_bars(progress):
        return _patch_swap(model, task, length, n, swap_position, seed)


def _patch_swap(model, task, length, n, swap_position, seed) -> PatchingResult:
    pairs = make_swap_pairs(task, n, length, swap_position, seed, model_device(model))
    ld = logit_diff_metric(pairs.new, pairs.old)
    clean_logits, clean_cache = model.run_with_cache(pairs.clean)
    clean_ld, corrupted_ld = ld(clean_logits).item(), ld(model(pairs.corrupted)).item()
    out = activation_patch(
        model, pairs.corrupted, clean_cache, normalised(ld, clean_ld, corrupted_ld), ("head_out", "resid_pre")
    )
    return PatchingResult(out["head_out"], out["resid_pre"], clean_ld, corrupted_ld, pairs.swap_position, length)

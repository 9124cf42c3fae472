"""Activation patching on set-complement models, built on ``transformer_lens.patching``.

Clean input: a set ``S``. Corrupted input: ``S`` with the member at ``swap_position`` replaced by a
token outside ``S``. At the last position the clean model should rank the new token above the old
one (the old one is a member), the corrupted model the other way round. The metric is the logit
difference ``LD = logit[new] - logit[old]`` averaged over examples, normalised so that 0 is the
corrupted run and 1 the clean run. Patching a clean activation into the corrupted run and reading
the recovery tells which heads and positions carry the membership information. Works for any
number of layers and heads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from transformer_lens import patching as tl_patching

from training.scoped import eval_mode, model_device
from training.tasks.set_complement import SetComplementTask


@dataclass
class SwapPairs:
    clean: torch.Tensor
    corrupted: torch.Tensor
    old: torch.Tensor  # output index of the swapped-out member
    new: torch.Tensor  # output index of the swapped-in non-member
    swap_position: int  # sequence position of the swap


def make_swap_pairs(task: SetComplementTask, n: int, length: int, swap_position: int = 0, seed: int = 0, device="cpu") -> SwapPairs:
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


def logit_diff(logits: torch.Tensor, pairs: SwapPairs) -> torch.Tensor:
    last = logits[:, -1]
    return (last.gather(1, pairs.new[:, None]) - last.gather(1, pairs.old[:, None])).mean()


@dataclass
class PatchingResult:
    head_out: torch.Tensor  # [layer, pos, head] recovery
    resid_pre: torch.Tensor  # [layer, pos] recovery
    clean_ld: float
    corrupted_ld: float
    swap_position: int
    length: int

    def to_dict(self) -> dict:
        return {"head_out": self.head_out.tolist(), "resid_pre": self.resid_pre.tolist(), "clean_ld": self.clean_ld,
                "corrupted_ld": self.corrupted_ld, "swap_position": self.swap_position, "length": self.length}


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


@torch.no_grad()
def patch_swap(model, task: SetComplementTask, length: int, n: int = 256, swap_position: int = 0, seed: int = 0,
               progress: bool = True) -> PatchingResult:
    """Recovery of the swapped tokens' logit difference when patching each head output at each
    position, and each residual stream (``resid_pre``) at each position, from clean into corrupted."""
    with eval_mode(model), _patching_bars(progress):
        return _patch_swap(model, task, length, n, swap_position, seed)


def _patch_swap(model, task, length, n, swap_position, seed) -> PatchingResult:
    pairs = make_swap_pairs(task, n, length, swap_position, seed, model_device(model))
    clean_logits, clean_cache = model.run_with_cache(pairs.clean)
    clean_ld = logit_diff(clean_logits, pairs).item()
    corrupted_ld = logit_diff(model(pairs.corrupted), pairs).item()
    denom = clean_ld - corrupted_ld
    if abs(denom) < 1e-9:
        raise ValueError("clean and corrupted runs have the same logit difference; nothing to recover")

    def metric(logits):
        return (logit_diff(logits, pairs) - corrupted_ld) / denom

    heads = tl_patching.get_act_patch_attn_head_out_by_pos(model, pairs.corrupted, clean_cache, metric)
    resid = tl_patching.get_act_patch_resid_pre(model, pairs.corrupted, clean_cache, metric)
    return PatchingResult(heads.cpu(), resid.cpu(), clean_ld, corrupted_ld, pairs.swap_position, length)

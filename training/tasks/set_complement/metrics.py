"""Length-generalization metrics for the set complement task, per set length.

For a set of size ``s`` the correct output is p* = uniform over the ``v - s`` items not in the set.
At the position that ends each set we measure, over many random sets:

- ``tv``: total variation distance between the model's distribution p and p*;
- ``kl``: KL(p* || p), in nats;
- ``itr``: invalid token rate, the probability mass on members of the set;
- ``margin``: the smallest valid logit minus the largest invalid (member) logit;
- ``gap``: mean valid logit minus mean invalid logit;
- ``acc``: exact-support accuracy, i.e. the top ``v - s`` logits are exactly the complement
  (equivalently ``margin > 0``).

Evaluation uses the causal structure: one pass over the first ``L`` items of random permutations
yields, at the position of item ``s``, the prediction for the set of the first ``s`` items. Each
such prefix is a uniformly random ``s``-set, so all lengths ``1..L`` are measured in one batched
pass, with a fixed seed so that every model (and every probe in ``interp``) sees the same sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from training.metrics import LengthMetrics
from training.scoped import eval_mode, model_device

if TYPE_CHECKING:
    from training.tasks.set_complement.task import SetComplementBatch, SetComplementTask

METRICS = ("tv", "kl", "itr", "margin", "gap", "acc")


def complement_metrics(
    logits: Float[Tensor, "*batch v"], members: Bool[Tensor, "*batch v"]
) -> dict[str, Float[Tensor, "*batch"]]:
    """Every metric for each set, from the logits over items and the set's membership mask."""
    logits = logits.float()
    logp = logits.log_softmax(dim=-1)
    p = logp.exp()
    valid = ~members
    n_valid = valid.sum(-1)
    n_members = members.sum(-1)
    p_star = valid / n_valid.unsqueeze(-1)
    neg_inf = torch.tensor(float("-inf"), device=logits.device)
    pos_inf = torch.tensor(float("inf"), device=logits.device)
    min_valid = torch.where(valid, logits, pos_inf).amin(-1)
    max_invalid = torch.where(members, logits, neg_inf).amax(-1)
    margin = min_valid - max_invalid
    mean_valid = (logits * valid).sum(-1) / n_valid
    mean_invalid = (logits * members).sum(-1) / n_members
    return {
        "tv": 0.5 * (p - p_star).abs().sum(-1),
        "kl": -torch.log(n_valid.float()) - (logp * valid).sum(-1) / n_valid,
        "itr": (p * members).sum(-1),
        "margin": margin,
        "gap": mean_valid - mean_invalid,
        "acc": (margin > 0).float(),
    }


def set_batches(
    task: "SetComplementTask",
    n: int,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> Iterator["SetComplementBatch"]:
    """Fixed-seed batches totalling ``n`` sequences of ``max_len`` items.

    With causal attention the position of item ``s`` ends a uniformly random ``s``-set, so one
    batch covers lengths 1..max_len; the same seed gives every model and probe the same sets."""
    max_len = task.cfg.max_eval_len if max_len is None else max_len
    gen = torch.Generator(device=device).manual_seed(seed)
    done = 0
    while done < n:
        k = min(batch_size, n - done)
        yield task.sample_batch(k, max_len=max_len, generator=gen, device=device)
        done += k


@torch.no_grad()
def evaluate_lengths(
    model: torch.nn.Module,
    task: "SetComplementTask",
    n: int = 2048,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    logit_scale: float | list[float] = 1.0,
) -> LengthMetrics:
    """Every metric at every set length 1..max_len (default: the task's evaluation range).

    ``logit_scale`` multiplies the logits first (1 / temperature; see ``calibrated_lengths``): one
    factor, or one per length 1..max_len."""
    return evaluate_lengths_at(model, task, {"": logit_scale}, n, max_len, seed, batch_size)[""]


@torch.no_grad()
def evaluate_lengths_at(
    model: torch.nn.Module,
    task: "SetComplementTask",
    scales: dict[str, float | list[float]],
    n: int = 2048,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, LengthMetrics]:
    """``evaluate_lengths`` at each of several logit scales, keyed as ``scales``, from one forward
    pass per batch: the sets and the logits are the same for every scale, only the metrics differ."""
    max_len = task.cfg.max_eval_len if max_len is None else max_len
    device = model_device(model)
    factors = {}
    for key, scale in scales.items():
        if isinstance(scale, (list, tuple)):
            if len(scale) != max_len:
                raise ValueError(f"{len(scale)} logit scales for {max_len} lengths")
            scale = torch.tensor(scale, dtype=torch.float32, device=device)[None, :, None]
        factors[key] = scale
    sums = {key: {m: torch.zeros(max_len, dtype=torch.float64, device=device) for m in METRICS} for key in scales}
    with eval_mode(model):
        for batch in set_batches(task, n, max_len, seed, batch_size, device):
            raw = task.prefix_logits(model(batch.tokens), batch)
            members = task.membership(batch.items, task.v)
            for key, scale in factors.items():
                logits = raw
                if isinstance(scale, torch.Tensor) or scale != 1.0:
                    logits = raw.float() * scale
                for m, values in complement_metrics(logits, members).items():
                    sums[key][m] += values.double().sum(0)
    return {
        key: LengthMetrics(
            lengths=list(range(1, max_len + 1)),
            train_range=(task.cfg.train_min_len, task.cfg.train_max_len),
            sets_per_length=n,
            values={m: (s / n).tolist() for m, s in per_key.items()},
        )
        for key, per_key in sums.items()
    }

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
pass, with a fixed seed so that every model sees the same sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from training.tasks.set_complement import SetComplementTask

from .sets import model_device, set_batches

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


@dataclass
class LengthMetrics:
    """Per-length means of every metric, with the training range for summaries.

    Also used for Othello, where "lengths" are move indices and the metrics differ."""

    lengths: list[int]
    train_range: tuple[int, int]
    sets_per_length: int
    values: dict[str, list[float]] = field(default_factory=dict)

    def _select(self, lo: int, hi: int) -> list[int]:
        return [i for i, s in enumerate(self.lengths) if lo <= s <= hi]

    def summary(self) -> dict[str, dict[str, float]]:
        """Means over the training lengths ('in_range') and over longer lengths ('beyond')."""
        lo, hi = self.train_range
        out = {}
        for key, idx in (("in_range", self._select(lo, hi)), ("beyond", self._select(hi + 1, 10**9))):
            if idx:
                out[key] = {m: sum(v[i] for i in idx) / len(idx) for m, v in self.values.items()}
        return out

    def at(self, length: int) -> dict[str, float]:
        i = self.lengths.index(length)
        return {m: v[i] for m, v in self.values.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train_range"] = list(self.train_range)
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LengthMetrics":
        return cls(
            lengths=list(d["lengths"]),
            train_range=tuple(d["train_range"]),
            sets_per_length=d["sets_per_length"],
            values={m: list(v) for m, v in d["values"].items()},
        )


@torch.no_grad()
def evaluate_lengths(
    model: torch.nn.Module,
    task: SetComplementTask,
    sets_per_length: int = 2048,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> LengthMetrics:
    """Every metric at every set length 1..max_len (default: the task's evaluation range)."""
    max_len = task.cfg.max_eval_len if max_len is None else max_len
    device = model_device(model)
    sums = {m: torch.zeros(max_len, dtype=torch.float64, device=device) for m in METRICS}
    was_training = model.training
    model.eval()
    try:
        for batch in set_batches(task, sets_per_length, max_len, seed, batch_size, device):
            logits = task.prefix_logits(model(batch.tokens), batch)
            members = task.membership(batch.items, task.v)
            for m, values in complement_metrics(logits, members).items():
                sums[m] += values.double().sum(0)
    finally:
        model.train(was_training)
    return LengthMetrics(
        lengths=list(range(1, max_len + 1)),
        train_range=(task.cfg.train_min_len, task.cfg.train_max_len),
        sets_per_length=sets_per_length,
        values={m: (s / sets_per_length).tolist() for m, s in sums.items()},
    )


def format_table(results: dict[str, LengthMetrics], metrics=("tv", "itr", "acc"), lengths=None) -> str:
    """A per-length text table with one column group per named result."""
    first = next(iter(results.values()))
    lengths = first.lengths if lengths is None else lengths
    lo, hi = first.train_range
    names = list(results)
    head1 = f"{'len':>5} " + " ".join(f"{n[:8 * len(metrics) + len(metrics) - 1]:^{9 * len(metrics) - 1}}" for n in names)
    head2 = f"{'':>5} " + " ".join(" ".join(f"{m:>8}" for m in metrics) for _ in names)
    lines = [head1, head2]
    for s in lengths:
        mark = "*" if lo <= s <= hi else " "
        cells = " ".join(" ".join(_fmt(results[n].at(s)[m]) for m in metrics) for n in names)
        lines.append(f"{s:>4}{mark} {cells}")
    for key in ("in_range", "beyond"):
        parts = []
        for n in names:
            summ = results[n].summary().get(key)
            parts.append(" ".join(_fmt(summ[m]) if summ else f"{'-':>8}" for m in metrics))
        lines.append(f"{key[:5]:>5} " + " ".join(parts))
    lines.append("(* = training length; in_ra/beyon = mean over training / longer lengths)")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:8.4f}"
    return f"{x:8.1e}"

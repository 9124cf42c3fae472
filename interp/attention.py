"""Attention dispersion: per-head attention entropy as the set grows.

The study's mechanism is that softmax attention spreads over more tokens as the input grows, so
each token's share (and its logit displacement) shrinks. For every layer, head and set length
``s`` we measure, at the position that ends the set (``positions="last"``) or averaged over every
item position of a length-``s`` sequence (``positions="all"``):

- ``entropy``: ``-sum_k p_k log p_k`` of the attention pattern (mean and standard deviation over
  sets);
- ``norm_entropy``: entropy divided by ``log n``, ``n`` the number of attended tokens (1 means
  uniform; defined as 1 when ``n = 1``);
- ``uniform_entropy``: what uniform attention would give (``log n``, averaged over positions
  for ``positions="all"``);
- ``bos_mass``: the attention on the BOS token (0 without BOS).

Only the ``hook_pattern`` hooks are cached, and every length is measured in the same batched
passes (see ``interp.sets``). Probes run in eval mode, so dropout never touches the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from training.scoped import eval_mode, model_device
from training.tasks.set_complement import SetComplementTask
from training.tasks.set_complement_eval import set_batches

STATS = ("entropy_mean", "entropy_std", "norm_entropy_mean", "bos_mass_mean", "uniform_entropy")


@dataclass
class AttentionStats:
    """Tidy table: one row per (layer, head, length)."""

    rows: list[dict]
    positions: str
    train_range: tuple[int, int]
    n_layers: int
    n_heads: int
    lengths: list[int] = field(default_factory=list)

    def series(self, layer: int, head: int, key: str = "entropy_mean") -> list[float]:
        """One statistic against length for one head."""
        return [r[key] for r in self.rows if r["layer"] == layer and r["head"] == head]

    def to_dict(self) -> dict:
        return {
            "positions": self.positions,
            "train_range": list(self.train_range),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "lengths": self.lengths,
            "rows": self.rows,
        }


def pattern_entropy(pattern: Float[Tensor, "... key"]) -> Float[Tensor, "..."]:
    """Entropy in nats of attention distributions over the last axis (0 log 0 = 0)."""
    return -torch.xlogy(pattern, pattern).sum(-1)


@torch.no_grad()
def attention_entropy(
    model,
    task: SetComplementTask,
    sets_per_length: int = 1024,
    max_len: int | None = None,
    seed: int = 0,
    positions: Literal["last", "all"] = "last",
    batch_size: int = 512,
) -> AttentionStats:
    """Entropy, normalised entropy and BOS mass of every head at every set length."""
    if positions not in ("last", "all"):
        raise ValueError(f"positions must be 'last' or 'all', got {positions!r}")
    cfg = model.cfg
    L = task.cfg.max_eval_len if max_len is None else max_len
    off = task.offset
    device = model_device(model)
    n_attended = torch.arange(1, L + 1, device=device, dtype=torch.float64) + off  # per item position
    log_n = torch.log(n_attended)
    shape = (cfg.n_layers, cfg.n_heads, L)
    s1, s2, sn, sb = (torch.zeros(shape, dtype=torch.float64, device=device) for _ in range(4))
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.n_layers)]
    with eval_mode(model):
        for batch in set_batches(task, sets_per_length, L, seed, batch_size, device):
            _, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in names)
            for layer, name in enumerate(names):
                pat = cache[name][:, :, off:, :].double()  # [b, head, item position, key]
                ent = pattern_entropy(pat)  # [b, head, L]
                norm = torch.where(n_attended > 1, ent / log_n.clamp(min=1e-12), torch.ones_like(ent))
                bos = pat[..., 0] if off else torch.zeros_like(ent)
                if positions == "all":
                    counts = torch.arange(1, L + 1, device=device, dtype=torch.float64)
                    ent, norm, bos = (x.cumsum(-1) / counts for x in (ent, norm, bos))
                s1[layer] += ent.sum(0)
                s2[layer] += (ent**2).sum(0)
                sn[layer] += norm.sum(0)
                sb[layer] += bos.sum(0)
    n = sets_per_length
    uniform = log_n if positions == "last" else log_n.cumsum(0) / torch.arange(1, L + 1, device=device)
    mean = s1 / n
    std = (s2 / n - mean**2).clamp(min=0).sqrt()
    rows = []
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            for i in range(L):
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "length": i + 1,
                        "entropy_mean": mean[layer, head, i].item(),
                        "entropy_std": std[layer, head, i].item(),
                        "norm_entropy_mean": (sn[layer, head, i] / n).item(),
                        "bos_mass_mean": (sb[layer, head, i] / n).item(),
                        "uniform_entropy": uniform[i].item(),
                    }
                )
    return AttentionStats(
        rows, positions, (task.cfg.train_min_len, task.cfg.train_max_len), cfg.n_layers, cfg.n_heads, list(range(1, L + 1))
    )

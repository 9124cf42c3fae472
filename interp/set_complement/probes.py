"""Set complement probes by set length: the per-length metrics and the attention table.

The metric math and its result type live on the training side (the trainer evaluates through the
task): ``training/metrics.py`` (``LengthMetrics``, ``metric_table``) and
``training/tasks/set_complement/metrics.py`` (``complement_metrics``, ``evaluate_lengths``,
``set_batches``: the fixed-seed sets every probe shares, so that a probe and the trainer's
evaluation see the very same sets for the same seed). They are re-exported here.

``attention_entropy`` is the set task's attention table. For every layer, head and set length
``s`` it measures, at the position that ends the set (``positions="last"``) or averaged over every
item position of a length-``s`` sequence (``positions="all"``):

- ``entropy``: ``-sum_k p_k log p_k`` of the attention pattern (mean and standard deviation over
  sets);
- ``norm_entropy``: entropy divided by ``log n``, ``n`` the number of attended tokens (1 means
  uniform; defined as 1 when ``n = 1``);
- ``uniform_entropy``: what uniform attention would give (``log n``, averaged over positions
  for ``positions="all"``);
- ``bos_mass``: the attention on the BOS token (0 without BOS).

Every length is measured in the same batched passes over ``set_batches``. Any task's entropy by
length is ``interp/core/attention.py``'s ``attention_by_index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.core.attention import normalised_entropy, pattern_entropy
from training.metrics import LengthMetrics, fmt, metric_table, metric_tables, table_lengths
from training.scoped import eval_mode, model_device
from training.tasks.set_complement.metrics import METRICS, complement_metrics, evaluate_lengths, set_batches
from training.tasks.set_complement.task import SetComplementTask

__all__ = [
    "METRICS",
    "STATS",
    "AttentionStats",
    "LengthMetrics",
    "attention_entropy",
    "complement_metrics",
    "evaluate_lengths",
    "fmt",
    "metric_table",
    "metric_tables",
    "set_batches",
    "table_lengths",
]

STATS = ("entropy_mean", "entropy_std", "norm_entropy_mean", "bos_mass_mean", "uniform_entropy")


@dataclass
class AttentionStats:
    """Every statistic of every head at every set length, as ``[layer, head, length]`` tensors
    (``tables[key]``, keys ``STATS``); ``rows`` renders them as a tidy table, one row per
    (layer, head, length), for JSON and pandas."""

    tables: dict[str, Float[Tensor, "layer head length"]]
    positions: str
    train_range: tuple[int, int]
    lengths: list[int] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return self.tables["entropy_mean"].shape[0]

    @property
    def n_heads(self) -> int:
        return self.tables["entropy_mean"].shape[1]

    def __getitem__(self, key: str) -> Float[Tensor, "layer head length"]:
        return self.tables[key]

    @property
    def rows(self) -> list[dict]:
        values = {k: t.tolist() for k, t in self.tables.items()}
        return [
            {"layer": layer, "head": head, "length": length, **{k: values[k][layer][head][i] for k in STATS}}
            for layer in range(self.n_layers)
            for head in range(self.n_heads)
            for i, length in enumerate(self.lengths)
        ]

    def series(self, layer: int, head: int, key: str = "entropy_mean") -> list[float]:
        """One statistic against length for one head."""
        return self.tables[key][layer, head].tolist()

    def to_dict(self) -> dict:
        return {
            "positions": self.positions,
            "train_range": list(self.train_range),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "lengths": self.lengths,
            "rows": self.rows,
        }


@torch.no_grad()
def attention_entropy(
    model,
    task: SetComplementTask,
    n: int = 1024,
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
        for batch in set_batches(task, n, L, seed, batch_size, device):
            _, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in names)
            for layer, name in enumerate(names):
                pat = cache[name][:, :, off:, :].double()  # [b, head, item position, key]
                ent = pattern_entropy(pat)  # [b, head, L]
                norm = normalised_entropy(ent, n_attended)
                bos = pat[..., 0] if off else torch.zeros_like(ent)
                if positions == "all":
                    counts = torch.arange(1, L + 1, device=device, dtype=torch.float64)
                    ent, norm, bos = (x.cumsum(-1) / counts for x in (ent, norm, bos))
                s1[layer] += ent.sum(0)
                s2[layer] += (ent**2).sum(0)
                sn[layer] += norm.sum(0)
                sb[layer] += bos.sum(0)
    uniform = log_n if positions == "last" else log_n.cumsum(0) / torch.arange(1, L + 1, device=device)
    mean = s1 / n
    std = (s2 / n - mean**2).clamp(min=0).sqrt()
    tables = {
        "entropy_mean": mean,
        "entropy_std": std,
        "norm_entropy_mean": sn / n,
        "bos_mass_mean": sb / n,
        "uniform_entropy": uniform.expand(cfg.n_layers, cfg.n_heads, L),
    }
    return AttentionStats(
        {k: tables[k] for k in STATS},
        positions,
        (task.cfg.train_min_len, task.cfg.train_max_len),
        list(range(1, L + 1)),
    )

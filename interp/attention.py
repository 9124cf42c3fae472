"""Attention dispersion: per-head attention entropy as the input grows.

``attention_by_index(model, task)`` works on every task: tensors ``[layer, head, index]`` of
entropy and normalised entropy by the task's own index (set length, or move index on OthelloGPT),
on the evaluation's fixed inputs (``Task.probe_batches``). ``attention_entropy`` below is the set
task's fuller table (spread, BOS mass, every position of a set).

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
        return [{"layer": layer, "head": head, "length": length, **{k: values[k][layer][head][i] for k in STATS}}
                for layer in range(self.n_layers) for head in range(self.n_heads) for i, length in enumerate(self.lengths)]

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


@dataclass
class AttentionByIndex:
    """Attention entropy of every head at every length or move index."""

    index: list[int]
    index_name: str
    train_range: tuple[int, int]
    entropy: Float[Tensor, "layer head index"]
    norm_entropy: Float[Tensor, "layer head index"]
    """Entropy over log of the number of attended positions (1 = uniform; 1 where only one is)."""

    def to_dict(self) -> dict:
        return {"index": self.index, "index_name": self.index_name, "train_range": list(self.train_range),
                "entropy": self.entropy.tolist(), "norm_entropy": self.norm_entropy.tolist()}


@torch.no_grad()
def attention_by_index(model, task, n: int = 512, seed: int = 0) -> AttentionByIndex:
    """Mean entropy and normalised entropy of every head's attention at the positions of each
    length or move index (causal: position p attends to p + 1 positions)."""
    cfg = model.cfg
    device = model_device(model)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.n_layers)]
    ent_sum = norm_sum = count = None  # [layer, head, index + 1]: bin 0 collects positions of no index
    with eval_mode(model):
        for batch in task.probe_batches(n, seed, device):
            if ent_sum is None:
                size = int(batch.index.max())
                ent_sum = torch.zeros(cfg.n_layers, cfg.n_heads, size + 1, dtype=torch.float64, device=device)
                norm_sum, count = ent_sum.clone(), torch.zeros(size + 1, dtype=torch.float64, device=device)
            _, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in names)
            n_attended = torch.arange(1, batch.tokens.shape[1] + 1, device=device, dtype=torch.float64)
            w = batch.live.double()  # [b, pos]
            idx = batch.index.expand_as(w)
            for layer, name in enumerate(names):
                ent = pattern_entropy(cache[name].double())  # [b, head, pos]
                norm = normalised_entropy(ent, n_attended)
                for total, x in ((ent_sum, ent), (norm_sum, norm)):
                    # scatter each position's weighted values into its index's bin
                    total[layer].index_add_(1, idx.reshape(-1), (x * w[:, None]).permute(1, 0, 2).reshape(cfg.n_heads, -1))
            count.index_add_(0, idx.reshape(-1), w.reshape(-1))
    c = count[1:].clamp(min=1)
    lo_hi = task.shape(task.cfg).train_range
    return AttentionByIndex(list(range(1, len(c) + 1)), task.index_name, lo_hi, (ent_sum[..., 1:] / c).cpu(),
                            (norm_sum[..., 1:] / c).cpu())


def pattern_entropy(pattern: Float[Tensor, "... key"]) -> Float[Tensor, "..."]:
    """Entropy in nats of attention distributions over the last axis (0 log 0 = 0)."""
    return -torch.xlogy(pattern, pattern).sum(-1)


def normalised_entropy(entropy: Float[Tensor, "... pos"], n_attended: Float[Tensor, " pos"]) -> Float[Tensor, "... pos"]:
    """Entropy over log n, n the positions each query attends to: 1 is uniform, and 1 where n = 1."""
    return torch.where(n_attended > 1, entropy / torch.log(n_attended).clamp(min=1e-12), torch.ones_like(entropy))


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
                norm = normalised_entropy(ent, n_attended)
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
    tables = {"entropy_mean": mean, "entropy_std": std, "norm_entropy_mean": sn / n, "bos_mass_mean": sb / n,
              "uniform_entropy": uniform.expand(cfg.n_layers, cfg.n_heads, L)}
    return AttentionStats({k: tables[k] for k in STATS}, positions, (task.cfg.train_min_len, task.cfg.train_max_len),
                          list(range(1, L + 1)))

"""Attention dispersion for any task: per-head attention entropy by length or move index.

The study's mechanism is that softmax attention spreads over more tokens as the input grows, so
each token's share (and its logit displacement) shrinks. ``attention_by_index(model, task)`` works
on every task: tensors ``[layer, head, index]`` of entropy and normalised entropy by the task's own
index (set length, or move index on OthelloGPT), on the evaluation's fixed inputs
(``Task.probe_batches``). The set task's fuller table (spread, BOS mass, every position of a set)
is ``interp/set_complement/probes.py``'s ``attention_entropy``.

- ``entropy``: ``-sum_k p_k log p_k`` of the attention pattern;
- ``norm_entropy``: entropy divided by ``log n``, ``n`` the number of attended tokens (1 means
  uniform; defined as 1 when ``n = 1``).

Only the ``hook_pattern`` hooks are cached. Probes run in eval mode, so dropout never touches the
pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from training.scoped import eval_mode, model_device


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
        return {
            "index": self.index,
            "index_name": self.index_name,
            "train_range": list(self.train_range),
            "entropy": self.entropy.tolist(),
            "norm_entropy": self.norm_entropy.tolist(),
        }


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
                    total[layer].index_add_(
                        1, idx.reshape(-1), (x * w[:, None]).permute(1, 0, 2).reshape(cfg.n_heads, -1)
                    )
            count.index_add_(0, idx.reshape(-1), w.reshape(-1))
    c = count[1:].clamp(min=1)
    lo_hi = task.shape(task.cfg).train_range
    return AttentionByIndex(
        list(range(1, len(c) + 1)), task.index_name, lo_hi, (ent_sum[..., 1:] / c).cpu(), (norm_sum[..., 1:] / c).cpu()
    )


def pattern_entropy(pattern: Float[Tensor, "... key"]) -> Float[Tensor, "..."]:
    """Entropy in nats of attention distributions over the last axis (0 log 0 = 0)."""
    return -torch.xlogy(pattern, pattern).sum(-1)


def normalised_entropy(
    entropy: Float[Tensor, "... pos"], n_attended: Float[Tensor, " pos"]
) -> Float[Tensor, "... pos"]:
    """Entropy over log n, n the positions each query attends to: 1 is uniform, and 1 where n = 1."""
    return torch.where(n_attended > 1, entropy / torch.log(n_attended).clamp(min=1e-12), torch.ones_like(entropy))

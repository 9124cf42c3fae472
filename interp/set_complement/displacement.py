"""Logit displacement: where each last-position logit comes from, and how it shrinks with length.

The study's one-layer model writes the logits at the end of a set ``t_1..t_s`` as
``f = B[t_s] + sum_i a_i D[t_i]``: a direct path ``B`` (embedding to unembedding) plus, for each
source token, its attention weight times its OV output projected to logits, the *logit
displacement* ``D``. ``decompose_logits`` makes that split exact for any ``HookedTransformer``:

    logits = direct + pos + sum_{layer, head, source} heads + sum_layer mlp + bias

where ``heads[layer, head, k] = pattern[head, q, k] * U(v_k W_O)``, ``U`` the unembedding through
every later norm with its scale frozen from the forward pass (``interp/core/readout.py``: the final
LayerNorm, or each Post-Norm LayerNorm, and output rescaling), so the parts sum to the logits to
float precision. ``D[t] = U(v_t W_O)`` leaves out the per-query scalar (frozen ``1/s`` and the
rescale factor), so it stays a property of the token.

``displacement_by_length`` aggregates this over many sets per length: the mean head displacement
of invalid tokens (set members) and valid tokens and their gap, the direct-path gap, the total gap
next to the balanced-theory prediction (``theory_gaps``), and how balanced the unweighted
per-token displacement ``D[t]`` is across tokens (mean, spread and coefficient of variation of
each token's self-displacement ``D[t][t] - mean_{j != t} D[t][j]``).

The balanced theory (``interp/set_complement/theory.py``: uniform attention, ``B = -b I``, ``D = -c I``) gives
``gap(s) = b/s + c/n(s)``, where ``n(s)`` is the number of attended tokens: ``s``, or ``s + 1`` with
BOS. Without BOS that is ``(b + c)/s = (2/s) gap(2)``; with BOS, ``b`` and ``c`` are solved from
the measured ``gap(1)`` and ``gap(2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.core.hooks import require_position
from interp.core.readout import EMBED, Readout, attn_point, mlp_point, scale_hook_names
from training.scoped import eval_mode, model_device
from training.tasks.set_complement.metrics import set_batches
from training.tasks.set_complement.task import SetComplementTask


def _hook_names(model) -> list[str]:
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.attn.hook_pattern"]
        if not model.cfg.attn_only:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return names + scale_hook_names(model)


@dataclass
class LogitDecomposition:
    """Exact additive parts of the logits at one query position (per example)."""

    direct: Float[Tensor, "batch vocab"]
    pos: Float[Tensor, "batch vocab"]
    heads: Float[Tensor, "batch layer head key vocab"]
    mlp: Float[Tensor, "batch layer vocab"]
    bias: Float[Tensor, "batch vocab"]
    logits: Float[Tensor, "batch vocab"]

    def total(self) -> Float[Tensor, "batch vocab"]:
        return self.direct + self.pos + self.heads.sum((1, 2, 3)) + self.mlp.sum(1) + self.bias


def _parts(model, cache, q: slice | int):
    """Shared core: direct, pos, per-source heads, mlp and bias parts at query positions ``q``,
    and the ``Readout`` whose ``scaled(x, attn_point(layer))`` finishes a head part once the
    attention pattern has weighted it."""
    R = Readout(model, cache, q)
    direct = R.logits(cache["hook_embed"][:, q], EMBED)
    # rotary models have no positional embedding in the residual stream
    pos = (
        R.logits(cache["hook_pos_embed"][:, q], EMBED)
        if "hook_pos_embed" in cache.cache_dict
        else torch.zeros_like(direct)
    )
    heads, mlp = [], []
    for layer in range(model.cfg.n_layers):
        v = cache[f"blocks.{layer}.attn.hook_v"]  # [b, key, head, d_head]
        ov = torch.einsum("bkhd,hdm->bkhm", v, model.W_O[layer])
        ov_logits = R.unembed(ov, attn_point(layer))  # [b, key, head, vocab], unweighted OV displacement of each source
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, :, q]  # [b, head, (q,) key]
        heads.append((pattern, ov_logits))
        if not model.cfg.attn_only:
            mlp.append(R.logits(cache[f"blocks.{layer}.hook_mlp_out"][:, q], mlp_point(layer)))
    return direct, pos, heads, mlp, R.bias(), R


@torch.no_grad()
def decompose_logits(model, tokens, position: int = -1) -> LogitDecomposition:
    """Split the logits at ``position`` into direct, positional, per-(layer, head, source), MLP
    and bias parts that sum to the model's logits."""
    with eval_mode(model):
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in _hook_names(model))
    q = require_position(position, tokens.shape[1])
    direct, pos, heads, mlp, bias, R = _parts(model, cache, q)
    per_source = torch.stack(
        [
            R.scaled(pattern[..., None] * ov_logits.permute(0, 2, 1, 3), attn_point(layer))
            for layer, (pattern, ov_logits) in enumerate(heads)
        ],
        dim=1,
    )  # [b, layer, head, key, vocab]
    mlp_t = torch.stack(mlp, 1) if mlp else torch.zeros(direct.shape[0], 0, direct.shape[-1], device=direct.device)
    return LogitDecomposition(direct, pos, per_source, mlp_t, bias, logits[:, q])


def _gap(x: Float[Tensor, "b s vocab"], members) -> tuple[Tensor, Tensor]:
    """Mean over valid and over invalid (member) tokens, per example and length."""
    valid = ~members
    return (x * valid).sum(-1) / valid.sum(-1), (x * members).sum(-1) / members.sum(-1)


@dataclass
class DisplacementStats:
    """Per-length displacement table plus per-head token balance of D.

    ``rows`` (one dict per length) and ``balance`` are the JSON rendering; the per-head results
    are also tensors: ``head_gap[layer, head, length index]`` (each head's valid-minus-invalid
    logit gap) and ``self_displacement[layer, head, token]`` (each item token's unweighted
    ``D[t][t] - mean_{j != t} D[t][j]``, NaN for a token no set contained); ``lengths`` indexes
    the last axis of ``head_gap``."""

    rows: list[dict]
    balance: list[dict]
    max_decomposition_error: float
    train_range: tuple[int, int]
    head_gap: Float[Tensor, "layer head length"] | None = None
    self_displacement: Float[Tensor, "layer head token"] | None = None

    @property
    def lengths(self) -> list[int]:
        return [r["length"] for r in self.rows]

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.rows]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "balance": self.balance,
            "max_decomposition_error": self.max_decomposition_error,
            "train_range": list(self.train_range),
        }


def theory_gaps(gaps: list[float], offset: int = 0) -> list[float]:
    """The balanced theory's gap at lengths 1..len(gaps), from the measured ``gap(1)``, ``gap(2)``:
    ``gap(s) = b/s + c/(s + offset)`` (``offset`` 1 with BOS). Without BOS only ``b + c`` is
    identified, and the curve is ``(2/s) gap(2)``."""
    L = len(gaps)
    if L < 2:
        return [float("nan")] * L
    if offset == 0:
        gap2 = gaps[1]
        return [2.0 / s * gap2 for s in range(1, L + 1)]
    # b + c/(1+o) = gap(1) and b/2 + c/(2+o) = gap(2)
    c = (2 * gaps[1] - gaps[0]) / (2 / (2 + offset) - 1 / (1 + offset))
    b = gaps[0] - c / (1 + offset)
    return [b / s + c / (s + offset) for s in range(1, L + 1)]


class _Sums:
    """Running sums over sets of every quantity ``displacement_by_length`` reports."""

    KEYS = ("gap", "direct_gap", "heads_gap", "mlp_gap", "heads_valid", "heads_invalid")

    def __init__(self, model, task: SetComplementTask, L: int):
        cfg, device = model.cfg, model_device(model)
        self.model, self.task, self.L = model, task, L
        self.n_layers, self.n_heads, self.v = cfg.n_layers, cfg.n_heads, task.v
        self.sums = {k: torch.zeros(L, dtype=torch.float64, device=device) for k in self.KEYS}
        self.head_gap = torch.zeros(cfg.n_layers, cfg.n_heads, L, dtype=torch.float64, device=device)
        self.d_self = torch.zeros(cfg.n_layers, cfg.n_heads, task.v, dtype=torch.float64, device=device)
        self.counts = torch.zeros(task.v, dtype=torch.float64, device=device)  # occurrences of each item token
        self.b_self = torch.zeros(task.v, dtype=torch.float64, device=device)
        self.max_err = 0.0
        self.names = _hook_names(model)

    def add(self, batch) -> None:
        off, L = self.task.offset, self.L
        logits, cache = self.model.run_with_cache(batch.tokens, names_filter=lambda n: n in self.names)
        q = slice(off, off + L)
        direct, pos, heads, mlp, bias, R = _parts(self.model, cache, q)
        members = self.task.membership(batch.items, self.v)  # [b, L, v]
        heads_total = self._add_heads(heads, R, members, batch.items)
        self.counts.index_add_(
            0, batch.items.reshape(-1), torch.ones(batch.items.numel(), dtype=torch.float64, device=self.counts.device)
        )
        mlp_total = sum(mlp) if mlp else torch.zeros_like(direct)
        total = direct + pos + heads_total + mlp_total + bias
        self.max_err = max(self.max_err, (total - logits[:, q]).abs().max().item())
        for key, part in (
            ("gap", logits[:, q]),
            ("direct_gap", direct + pos),
            ("heads_gap", heads_total),
            ("mlp_gap", mlp_total),
        ):
            gv, gi = _gap(part, members)
            self.sums[key] += (gv - gi).double().sum(0)
        gv, gi = _gap(heads_total, members)
        self.sums["heads_valid"] += gv.double().sum(0)
        self.sums["heads_invalid"] += gi.double().sum(0)
        # direct-path self-suppression B[t][t] - mean_{j != t} B[t][j] of the query token
        own = direct.gather(-1, batch.items[..., None]).squeeze(-1)
        bd = (own - (direct.sum(-1) - own) / (self.v - 1)).double()
        self.b_self.index_add_(0, batch.items.reshape(-1), bd.reshape(-1))

    def _add_heads(self, heads, R: Readout, members, items) -> Tensor:
        """Per-head gaps and self-displacements; returns the heads' summed logit contribution."""
        off, L, v = self.task.offset, self.L, self.v
        head_sums = []
        for layer, (pattern, ov_logits) in enumerate(heads):
            # sum over sources: [b, head, L, vocab]
            hs = torch.einsum("bhqk,bkhv->bqhv", pattern, ov_logits)
            hs = R.scaled(hs, attn_point(layer)).permute(0, 2, 1, 3)
            head_sums.append(hs)
            for h in range(self.n_heads):
                gv, gi = _gap(hs[:, h], members)
                self.head_gap[layer, h] += (gv - gi).double().sum(0)
            # unweighted self-displacement of each source token (item positions only)
            src = ov_logits[:, off : off + L]  # [b, L, head, vocab]
            own = src.gather(-1, items[:, :, None, None].expand(-1, -1, self.n_heads, 1)).squeeze(-1)
            others = (src.sum(-1) - own) / (v - 1)
            selfd = (own - others).double()  # [b, L, head]
            for h in range(self.n_heads):
                self.d_self[layer, h].index_add_(0, items.reshape(-1), selfd[..., h].reshape(-1))
        return sum(hs.sum(1) for hs in head_sums)

    def result(self, n: int) -> "DisplacementStats":
        means = {k: (s / n).tolist() for k, s in self.sums.items()}
        theory = theory_gaps(means["gap"], self.task.offset)
        rows = []
        for i in range(self.L):
            row = {"length": i + 1, **{k: means[k][i] for k in self.KEYS}, "theory_gap": theory[i]}
            for layer in range(self.n_layers):
                for h in range(self.n_heads):
                    row[f"L{layer}H{h}_gap"] = (self.head_gap[layer, h, i] / n).item()
            rows.append(row)
        seen = self.counts > 0
        balance = []
        for layer in range(self.n_layers):
            for h in range(self.n_heads):
                d = (self.d_self[layer, h][seen] / self.counts[seen]).float()
                balance.append(_spread(d, layer=layer, head=h, what="D_self"))
        b = (self.b_self[seen] / self.counts[seen]).float()
        balance.append(_spread(b, layer=None, head=None, what="B_self"))
        cfg = self.task.cfg
        d_self = torch.where(seen, self.d_self / self.counts.clamp(min=1), float("nan"))
        return DisplacementStats(
            rows, balance, self.max_err, (cfg.train_min_len, cfg.train_max_len), self.head_gap / n, d_self
        )


@torch.no_grad()
def displacement_by_length(
    model,
    task: SetComplementTask,
    n: int = 1024,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> DisplacementStats:
    """Valid/invalid displacement and gaps at every length, with the balanced theory's gap."""
    L = task.cfg.max_eval_len if max_len is None else max_len
    sums = _Sums(model, task, L)
    with eval_mode(model):
        for batch in set_batches(task, n, L, seed, batch_size, model_device(model)):
            sums.add(batch)
    return sums.result(n)


def _spread(x: Tensor, **labels) -> dict:
    mean, std = x.mean().item(), x.std(unbiased=False).item()
    return {
        **labels,
        "mean": mean,
        "std": std,
        "cv": abs(std / mean) if mean else float("inf"),
        "min": x.min().item(),
        "max": x.max().item(),
        "per_token": x.tolist(),
    }

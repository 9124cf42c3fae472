"""The study's analytic one-layer model, a hand-built model that realises it, and closed forms.

At the end of a set ``t_1..t_s`` a one-layer attention-only transformer (no LayerNorm, no
positions) produces ``f = B[t_s] + sum_i a_i D[t_i]`` with ``B = W_E W_U`` (direct path), ``D`` the
per-token logit displacement through the OV circuit (``W_E W_V W_O W_U``) and ``a`` the softmax
attention. ``balanced_model`` builds a ``HookedTransformer`` with ``W_Q = W_K = 0`` (uniform
attention), ``B = -b I`` and ``D = -c I``. It needs ``d_model = 2v`` (items one-hot in the first
``v`` dimensions, their OV output in the other ``v``) and ``d_head = v``: a clear construction,
not the study's tight bounds. ``closed_form`` gives its TV, KL, ITR, margin, gap and accuracy at
every length: members of a length-``s`` set get ``-c/n`` (``n = s``, or ``s + 1`` with BOS), the
last one ``-b - c/n`` more, valid tokens 0, so the gap is ``(c s/n + b)/s`` (``(2/s) gap(2)``
without BOS).

Where training actually lands next to this theory is measured by the dimension scan
(``training/experiments/dim_scan.py``, ``python -m interp dim-scan``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from training.models import ModelConfig, build_model


def analytic_logits(
    B: Float[Tensor, "d_vocab v"],
    D: Float[Tensor, "d_vocab v"],
    tokens: Int[Tensor, "batch s"],
    attention: Float[Tensor, "batch s"] | None = None,
) -> Float[Tensor, "batch v"]:
    """``f = B[t_s] + sum_i a_i D[t_i]``; ``attention=None`` means uniform over the s tokens."""
    if attention is None:
        attention = torch.full(tokens.shape, 1.0 / tokens.shape[1], dtype=B.dtype)
    return B[tokens[:, -1]] + torch.einsum("bs,bsv->bv", attention, D[tokens])


def extract_BD(model) -> tuple[Tensor, Tensor, Tensor]:
    """``B``, per-head ``D`` and the constant bias of a 1-layer attention-only model without
    LayerNorm or positions, so that ``logits = B[t_s] + sum_h sum_i a_hi D_h[t_i] + const``."""
    cfg = model.cfg
    if cfg.n_layers != 1 or not cfg.attn_only or cfg.normalization_type is not None:
        raise ValueError("extract_BD needs a 1-layer attention-only model without LayerNorm")
    if cfg.positional_embedding_type == "standard" and model.W_pos.abs().max() > 0:
        raise ValueError("extract_BD needs a model without positional embeddings")
    with torch.no_grad():
        B = model.W_E @ model.W_U
        v = torch.einsum("td,hde->hte", model.W_E, model.W_V[0]) + model.b_V[0][:, None, :]
        D = torch.einsum("hte,hem,mv->htv", v, model.W_O[0], model.W_U)
        const = model.b_O[0] @ model.W_U + model.b_U
    return B, D, const


def balanced_model(v: int, b: float, c: float, n_ctx: int | None = None, bos: bool = False):
    """A ``HookedTransformer`` with uniform attention, ``B = -b I`` and ``D = -c I`` on the items.

    Token ids follow the set-complement task: items are 1..v, 0 is BOS (embedded as zero, so it
    takes attention but displaces nothing)."""
    n_ctx = n_ctx or v
    cfg = ModelConfig(
        n_layers=1,
        d_model=2 * v,
        n_heads=1,
        d_head=v,
        attn_only=True,
        normalization="none",
        positional="none",
        n_ctx=n_ctx,
    )
    model = build_model(cfg, v + 1, v, n_ctx)
    eye = torch.eye(v)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # (model.W_V etc. are stacked copies; write the block's own parameters)
        attn = model.blocks[0].attn
        model.W_E[1:, :v] = eye  # item t -> e_t in the first block
        attn.W_V[0, :v, :] = eye  # head reads the first block
        attn.W_O[0, :, v:] = eye  # and writes the second
        model.W_U[:v] = -b * eye  # direct path: B = -b I
        model.W_U[v:] = -c * eye  # OV path: D = -c I
    model.eval()
    model.balanced_bc = (b, c)
    return model


@dataclass
class ClosedForm:
    lengths: list[int]
    values: dict[str, list[float]]


def closed_form(v: int, b: float, c: float, max_len: int | None = None, bos: bool = False) -> ClosedForm:
    """Exact per-length metrics of ``balanced_model(v, b, c)``."""
    max_len = v - 1 if max_len is None else max_len
    out = {k: [] for k in ("tv", "kl", "itr", "margin", "gap", "acc")}
    for s in range(1, max_len + 1):
        n = s + (1 if bos else 0)
        member = -c / n
        last = -b - c / n
        valid_count = v - s
        z = valid_count + (s - 1) * math.exp(member) + math.exp(last)
        itr = ((s - 1) * math.exp(member) + math.exp(last)) / z
        p_valid = 1.0 / z
        tv = 0.5 * (itr + valid_count * abs(p_valid - 1.0 / valid_count))
        max_invalid = max(last, member) if s >= 2 else last
        margin = 0.0 - max_invalid
        out["tv"].append(tv)
        out["kl"].append(math.log(z) - math.log(valid_count))
        out["itr"].append(itr)
        out["margin"].append(margin)
        out["gap"].append(-((s - 1) * member + last) / s)
        out["acc"].append(1.0 if margin > 0 else 0.0)
    return ClosedForm(list(range(1, max_len + 1)), out)

"""Does attention read position parity? The position-to-position QK map and path patching from
``W_pos`` into each head's query and key.

OthelloGPT's collapse past the training length comes from untrained position rows, which lose
whose turn it is (``docs/othello.md``). If heads tell "my moves" from "their moves" by the parity of
positions, that shows in two places, tested here directly:

- ``position_qk(model, layer, head)``: the QK circuit restricted to positional embeddings,
  ``W_pos W_Q W_K^T W_pos^T`` as a TransformerLens ``FactoredMatrix`` (rows: query positions,
  columns: key positions). With LayerNorm the rows of ``W_pos`` are centred and multiplied by the
  layer's LN weight; LN's scale depends on the input and is left out, so for a normed model the map
  is the direction of the positional path, not its exact size. ``parity_contrast`` summarises it:
  the mean score of same-parity keys minus that of other-parity keys, over queries that see both.
- ``path_patch_positions(model, tokens, metric)``: for each head and each of its query and key
  inputs, the change in ``metric`` when *only that input* sees every position's embedding replaced
  by the next position's (which flips parity), every other path left as it was. It patches
  ``W_pos``'s direct path into one head's query or key, through TransformerLens's split
  query/key inputs (``hook_q_input``, ``hook_k_input``), switched on for the call and off after.
"""

from __future__ import annotations

import contextlib

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix

from interp.core.hooks import require_layer
from training.scoped import eval_mode


def _check_positions(model) -> None:
    if model.cfg.positional_embedding_type != "standard":
        raise ValueError(f"the model has {model.cfg.positional_embedding_type} positions, not a learned W_pos")


def _pos_rows(model, layer: int) -> Float[Tensor, "n_ctx d_model"]:
    """``W_pos`` as the layer's attention sees it (centred and weighted under LayerNorm)."""
    rows = model.W_pos
    norm = model.cfg.normalization_type
    if norm in ("LN", "LNPre"):
        rows = rows - rows.mean(-1, keepdim=True)
    if norm == "LN":
        rows = rows * model.blocks[layer].ln1.w
    return rows


def position_qk(model, layer: int, head: int) -> FactoredMatrix:
    """The positional QK map of one head: ``[query position, key position]`` attention scores from
    positional embeddings alone (before the 1/sqrt(d_head) scaling)."""
    _check_positions(model)
    require_layer(model, layer, head)
    rows = _pos_rows(model, layer)
    return FactoredMatrix(rows @ model.W_Q[layer, head], (rows @ model.W_K[layer, head]).T)


def parity_contrast(model) -> Float[Tensor, "layer head"]:
    """Per head: mean positional score of same-parity keys minus other-parity keys (causal: keys at
    or before the query), averaged over queries from position 1 on (position 0 sees only itself)."""
    _check_positions(model)
    n = model.cfg.n_ctx
    pos = torch.arange(n)
    causal = pos[None, :] <= pos[:, None]
    same = (pos[None, :] % 2 == pos[:, None] % 2) & causal
    other = (pos[None, :] % 2 != pos[:, None] % 2) & causal
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                S = position_qk(model, layer, head).AB.cpu()
                diff = (S * same).sum(1) / same.sum(1) - (S * other).sum(1) / other.sum(1).clamp(min=1)
                out[layer, head] = diff[1:].mean()
    return out


@contextlib.contextmanager
def _split_qkv(model):
    before = model.cfg.use_split_qkv_input
    model.set_use_split_qkv_input(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(before)


@torch.no_grad()
def path_patch_positions(
    model, tokens: Int[Tensor, "batch pos"], metric, shift: int = 1
) -> Float[Tensor, "layer head 2"]:
    """``metric(patched logits) - metric(logits)`` for every head's query (``[..., 0]``) and key
    (``[..., 1]``), when that input alone sees position p's embedding replaced by position
    p + shift's (the last positions wrap to p - shift). ``shift`` 1 flips parity."""
    _check_positions(model)
    n = tokens.shape[1]
    pos = torch.arange(n, device=tokens.device)
    target = torch.where(pos + shift < n, pos + shift, pos - shift).clamp(0, n - 1)
    delta = model.W_pos[target] - model.W_pos[pos]  # [pos, d_model]
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, 2)
    with eval_mode(model), _split_qkv(model):
        base = float(metric(model(tokens)))
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                for i, which in enumerate(("q", "k")):

                    def hook(x, hook, head=head):  # x: [batch, pos, head, d_model]
                        x = x.clone()
                        x[:, :, head] += delta
                        return x

                    logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_{which}_input", hook)])
                    out[layer, head, i] = float(metric(logits)) - base
    return out

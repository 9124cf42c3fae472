"""Frozen-scale readout: the logits as an exact sum of residual-stream contributions, for every
model the workbench builds (pre-norm, Post-Norm, output rescaling).

A LayerNorm is affine once its scale (``hook_scale``, one number per position) is frozen at its
value in the forward pass: ``LN(x) = C(x) * w / s + b``, with ``C`` the centering. So the logits
at a query position are a sum over contributions (the embeddings, each head's output, each MLP's
output, constants), each carried through every norm that comes *after* the point where it enters
the stream:

- pre-norm: only ``ln_final`` (what TransformerLens's ``apply_ln`` does), or nothing with
  ``model.final_norm=false``;
- Post-Norm (``model.norm_position=post``): every later ``blocks.{l}.ln_post_attn`` /
  ``ln_post_mlp``, and the LayerNorms' biases enter as constants of their own;
- output rescaling (``model.out_rescale_len``): an attention layer's output, ``b_O`` included, is
  multiplied by ``max(1, n / n_train)`` at a query attending to ``n`` positions;
- a learned length scale (``model.readout_len_scale``): the whole residual before ``W_U`` (every
  contribution, every norm's bias; not ``b_U``) is multiplied by ``exp(a + b log n)``.

Each contribution's readout splits into a query-independent linear map (centering and ``w`` of
each later norm, then ``W_U``: ``Readout.unembed``) and a per-query scalar (the product of the
later norms' ``1/s``, the rescale factor and the length scale: ``Readout.scale``). Keeping them
apart keeps a source token's unweighted displacement ``D[t]`` a property of the token; the
per-query scalar multiplies after the attention weighting.

Entry points are numbered in stream order: the embeddings 0, layer ``l``'s attention ``2l + 1``,
its MLP ``2l + 2``. A norm applied after point ``p`` acts on every contribution entering at ``p``
or before; its bias enters just after ``p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from training.models import has_final_norm, readout_len_factor

EMBED = 0


def attn_point(layer: int) -> int:
    return 2 * layer + 1


def mlp_point(layer: int) -> int:
    return 2 * layer + 2


def is_attn_point(point: int) -> bool:
    return point % 2 == 1


@dataclass
class _Norm:
    point: int
    scale_name: str
    w: Tensor | None
    b: Tensor | None


def _norms(model) -> list[_Norm]:
    """Every norm on the residual stream (not the pre-norms inside blocks, which only feed their
    sublayer), in stream order."""
    cfg = model.cfg
    options = getattr(model, "workbench_options", {})
    norms = []

    def of(module, point, name):
        return _Norm(point, f"{name}.hook_scale", getattr(module, "w", None), getattr(module, "b", None))

    if options.get("norm_position") == "post":
        for layer, block in enumerate(model.blocks):
            norms.append(of(block.ln_post_attn, attn_point(layer), f"blocks.{layer}.ln_post_attn"))
            if hasattr(block, "ln_post_mlp"):
                norms.append(of(block.ln_post_mlp, mlp_point(layer), f"blocks.{layer}.ln_post_mlp"))
    if has_final_norm(model):
        if cfg.normalization_type not in ("LN", "LNPre"):
            raise ValueError(f"the readout supports LN, LNPre or no norm, not {cfg.normalization_type}")
        norms.append(of(model.ln_final, mlp_point(cfg.n_layers - 1), "ln_final"))
    return norms


def scale_hook_names(model) -> list[str]:
    """The cache entries a ``Readout`` needs besides the contributions themselves."""
    return [n.scale_name for n in _norms(model)]


class Readout:
    """Logits of residual-stream contributions at query positions ``q`` (an int or a slice),
    through the frozen norms of one forward pass (``cache`` must hold ``scale_hook_names``)."""

    def __init__(self, model, cache, q: int | slice):
        self.model, self.q = model, q
        self.norms = _norms(model)
        self.scales = {n.scale_name: cache[n.scale_name][:, q, 0] for n in self.norms}  # [batch, (query)]
        n_pos = cache["hook_embed"].shape[1]
        device = cache["hook_embed"].device
        # positions a causal query attends to (1, 2, ...), for output rescaling
        self.attended = torch.arange(1, n_pos + 1, device=device, dtype=cache["hook_embed"].dtype)[q]
        options = getattr(model, "workbench_options", {})
        self.rescale_len = options.get("out_rescale_len")
        # the length scale sits after everything, just before W_U: it multiplies every contribution
        self.len_scale = (
            readout_len_factor(model.readout_len_scale, self.attended) if options.get("readout_len_scale") else None
        )
        self.batch = cache["hook_embed"].shape[0]

    def _after(self, point: int, strict: bool) -> list[_Norm]:
        return [n for n in self.norms if (n.point > point if strict else n.point >= point)]

    def unembed(
        self, x: Float[Tensor, "... d_model"], point: int, strict: bool = False
    ) -> Float[Tensor, "... d_vocab_out"]:
        """The query-independent part: centering and ``w`` of every later norm, then ``W_U``."""
        for norm in self._after(point, strict):
            x = x - x.mean(-1, keepdim=True)
            if norm.w is not None:
                x = x * norm.w
        return x @ self.model.W_U

    def scale(self, point: int, strict: bool = False) -> Float[Tensor, " batch *query"]:
        """The per-query scalar: 1/s of every later norm, times the rescale factor for attention."""
        shape = (self.batch,) + tuple(self.attended.shape)
        out = torch.ones(shape, device=self.attended.device, dtype=self.attended.dtype)
        for norm in self._after(point, strict):
            out = out / self.scales[norm.scale_name]
        if self.rescale_len is not None and not strict and is_attn_point(point):
            out = out * (self.attended / self.rescale_len).clamp(min=1.0)
        if self.len_scale is not None:
            out = out * self.len_scale
        return out

    def scaled(self, x: Float[Tensor, " batch *rest"], point: int, strict: bool = False) -> Tensor:
        """``x`` (batch first, then the query axis when ``q`` is a slice) times ``scale(point)``."""
        s = self.scale(point, strict)
        return x * s.reshape(s.shape + (1,) * (x.ndim - s.ndim))

    def logits(self, x: Float[Tensor, "batch *rest d_model"], point: int) -> Float[Tensor, "batch *rest d_vocab_out"]:
        """A contribution at the query positions, entering at ``point``, as logits."""
        return self.scaled(self.unembed(x, point), point)

    def bias(self) -> Float[Tensor, "batch *query d_vocab_out"]:
        """Every constant: each attention layer's ``b_O``, each norm's ``b`` (entering just after
        the norm), ``b_U``."""
        model = self.model
        shape = (self.batch,) + tuple(self.attended.shape) + (model.cfg.d_model,)
        out = model.b_U.expand(shape[:-1] + (model.cfg.d_vocab_out,))
        for layer in range(model.cfg.n_layers):
            out = out + self.logits(model.b_O[layer].expand(shape), attn_point(layer))
        for norm in self.norms:
            if norm.b is not None:
                out = out + self.scaled(
                    self.unembed(norm.b.expand(shape), norm.point, strict=True), norm.point, strict=True
                )
        return out

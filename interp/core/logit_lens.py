"""Logit lens against length or move index: is the answer computed by layer l, and just not read out?

At each layer boundary (the embeddings, then each block's ``resid_post``) the residual stream is
read through the final LayerNorm and the unembedding, TransformerLens's
``ActivationCache.accumulated_resid(apply_ln=True)``, and scored with the task's own metrics at every
length: set length for the set task (gap, TV, accuracy), move index for OthelloGPT (legal top-1,
ITR, TV). Any task works: the lens is wrapped as a model (``LensModel``) and handed to
``task.evaluate``, so the metrics and their fixed-seed data are exactly the evaluation's. At the
last boundary the lens is the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from training.metrics import LengthMetrics
from training.models import has_final_norm


@torch.no_grad()
def lens_logits(
    model, tokens: Int[Tensor, "batch pos"], boundary: int | None = None
) -> Float[Tensor, "*boundary batch pos vocab"]:
    """Logits read off the residual stream at every layer boundary (0 = embeddings), or at one."""
    _, cache = model.run_with_cache(
        tokens,
        names_filter=lambda n: n.endswith(
            ("hook_resid_pre", "hook_resid_post", "hook_scale", "hook_embed", "hook_pos_embed")
        ),
    )
    # a pre-norm model without its final LayerNorm (model.final_norm=false) reads the stream as is
    resid = cache.accumulated_resid(apply_ln=has_final_norm(model), incl_mid=False)  # [boundary, batch, pos, d_model]
    if boundary is not None:
        resid = resid[boundary]  # unembed only what is asked for
    return resid @ model.W_U + model.b_U


class LensModel(torch.nn.Module):
    """``model`` read out at layer boundary ``boundary``: a stand-in model for ``task.evaluate``."""

    def __init__(self, model, boundary: int):
        super().__init__()
        if not 0 <= boundary <= model.cfg.n_layers:
            raise ValueError(f"boundary must be in 0..{model.cfg.n_layers}, got {boundary}")
        self.model, self.boundary = model, boundary

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
        return lens_logits(self.model, tokens, self.boundary)


@dataclass
class LogitLens:
    """Per-length metrics of the lens at each boundary: ``by_boundary[0]`` reads the embeddings,
    ``by_boundary[l]`` the residual stream after block ``l - 1``."""

    by_boundary: list[LengthMetrics]

    def to_dict(self) -> dict:
        return {"by_boundary": [m.to_dict() for m in self.by_boundary]}

    def series(self, metric: str) -> Float[Tensor, "boundary length"]:
        return torch.tensor([m.values[metric] for m in self.by_boundary])


def logit_lens(model, task, n: int = 512, seed: int = 0) -> LogitLens:
    """The task's metrics at every length, read through the unembedding at every layer boundary."""
    return LogitLens([task.evaluate(LensModel(model, b), n, seed) for b in range(model.cfg.n_layers + 1)])

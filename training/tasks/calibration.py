"""One softmax temperature per model, for any task whose true next-token distribution is known.

Raw TV rewards any sharpening: more steps, a higher learning rate, weights scaled up by
extrapolation. Fitting one temperature per model on held-out *in-range* inputs, then evaluating
every length at it, removes that: a model that is only sharper gains nothing. This file holds the
fit, which only needs logits and the true distribution at the in-range positions; each task says
where those come from (``Task.calibration_data``) and evaluates at the fitted scale
(``Task.evaluate(..., logit_scale=)``). ``Task.calibrated_evaluate`` puts the two together.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

CALIBRATION_SEED = 777
"""Seed of the inputs a temperature is fit on where a task draws them (the set task): never the
evaluation's own seed (``train.eval_seed``)."""


def fit_scale(
    z: Float[Tensor, "*positions vocab"],
    p_star: Float[Tensor, "*positions vocab"],
    max_scale: float = 1e3,
    iters: int = 60,
) -> float:
    """The factor beta = 1/T that minimises the mean KL(p* || softmax(beta z)) over every position.

    The cross-entropy is convex in beta and its derivative, E_softmax(beta z)[z] - E_p*[z], grows
    with beta, so bisection on its sign finds the minimum (``max_scale`` if it lies beyond). For a
    model whose KL keeps falling as it sharpens, that is where float64 stops seeing a slope.
    ``z`` and ``p_star`` are float64; padding positions must already be left out."""
    target = (p_star * z).sum(-1).mean()  # E_p*[z], averaged over positions

    def slope(beta: float) -> float:
        return float((torch.softmax(beta * z, -1) * z).sum(-1).mean() - target)

    lo, hi = 0.0, max_scale
    if slope(hi) < 0:
        return max_scale
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)

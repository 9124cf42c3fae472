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
    iters: int = 100,
    rtol: float = 1e-13,
) -> float:
    """The factor beta = 1/T that minimises the mean KL(p* || softmax(beta z)) over every position.

    The cross-entropy is convex in beta: its derivative g(beta) = E_softmax(beta z)[z] - E_p*[z]
    grows with beta, and its second derivative is the variance of z under softmax(beta z). So the
    minimum is the root of g (``max_scale`` if it lies beyond), found by Newton's method kept
    inside a bracket [lo, hi] with g(lo) < 0 <= g(hi): a Newton step that leaves the bracket (or a
    flat g) is replaced by bisection. Newton's steps converge quadratically, so a fit takes a
    handful of softmaxes where bisection alone took 60 (the study fits 33 temperatures per set
    of weights); it stops once a step is under ``rtol`` of beta. A model whose KL keeps falling as
    it sharpens until float64 stops seeing a slope has g exactly 0 from some beta on; then the
    bisection finds where that starts, as bisection alone did. ``z`` and ``p_star`` are float64;
    padding positions must already be left out."""
    target = (p_star * z).sum(-1).mean()  # E_p*[z], averaged over positions

    def slope_and_curvature(beta: float) -> tuple[float, float]:
        q = torch.softmax(beta * z, -1)
        mean = (q * z).sum(-1)
        var = (q * z * z).sum(-1) - mean * mean
        return float(mean.mean() - target), float(var.mean())

    lo, hi = 0.0, max_scale
    if slope_and_curvature(hi)[0] < 0:
        return max_scale
    resolution = max_scale * 2.0**-60  # what 60 bisections of [0, max_scale] resolve
    beta = 1.0  # the model's own temperature: a trained model's optimum is usually near it
    for _ in range(iters):
        g, h = slope_and_curvature(beta)
        lo, hi = (beta, hi) if g < 0 else (lo, beta)
        if hi - lo <= rtol * hi + resolution:
            break
        if g != 0 and h > 0:  # g exactly 0 may be the start of a flat stretch: bisect towards it
            step = g / h
            if abs(step) <= rtol * beta:
                return beta - step
            if lo < beta - step < hi:
                beta -= step
                continue
        beta = 0.5 * (lo + hi)
    return 0.5 * (lo + hi)


def bisection_scale(
    z: Float[Tensor, "*positions vocab"],
    p_star: Float[Tensor, "*positions vocab"],
    max_scale: float = 1e3,
    iters: int = 60,
) -> float:
    """The same fit by bisection alone on the sign of the slope, ``iters`` halvings of
    [0, ``max_scale``]: how the committed studies up to issue 26 were fit. Slow (a softmax over
    every position per halving) and obviously right; the tests and ``benchmarks/measure_cost.py``
    compare ``fit_scale`` against it."""
    target = (p_star * z).sum(-1).mean()

    def slope(beta: float) -> float:
        return float((torch.softmax(beta * z, -1) * z).sum(-1).mean() - target)

    lo, hi = 0.0, max_scale
    if slope(hi) < 0:
        return max_scale
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)

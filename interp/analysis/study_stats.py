"""Statistics of the paired study: cluster bootstrap over configs, Holm's correction, verdicts
with a smallest effect of interest, and the number of configs a claim needs.

The unit of replication is the base config: arms of one config share its hyperparameters, so
their differences are correlated. Each config contributes one number per effect (its mean paired
difference over seeds, and over dropout rates where they are pooled). The effect is the mean of
those numbers; its interval comes from resampling configs with replacement (a one-stage cluster
bootstrap, percentile interval).

A study whose configs are balanced over ``strata`` (permuted blocks over, say, the number of
heads) is resampled within each stratum, keeping every stratum's count: the stratified bootstrap
of a stratified design. The estimate is still the plain mean over configs; only the part of the
spread that the design fixed (how many configs each stratum has) leaves the interval. The spread
that sets the number of configs needed is then the pooled within-stratum SD.

Verdicts compare an interval with 0 and with the smallest effect of interest ``delta``:

- *supported*: the interval lies below 0 (every claim is phrased so that lower is the study's
  predicted direction);
- *no practical effect*: the interval lies inside (-delta, +delta);
- *harmful*: the interval lies above 0;
- *inconclusive*: otherwise.

Holm's step-down correction across the claims tested sets each claim's interval level: sort the
bootstrap p-values; the claim of rank i (from 1) gets alpha / (m - i + 1), until the first claim
that is not rejected, whose level every later claim keeps. An interval that excludes 0 at its
level is then a Holm rejection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass
class Bootstrap:
    """The effect (mean of per-config values) and its bootstrap distribution."""

    estimate: float
    samples: np.ndarray
    per_config: np.ndarray
    strata: np.ndarray | None = None

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        lo, hi = np.quantile(self.samples, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)

    def p_value(self) -> float:
        """Two-sided bootstrap p-value of 'the effect is 0': twice the smaller tail mass at 0,
        never below one resample's worth."""
        n = len(self.samples)
        tail = min(np.mean(self.samples <= 0), np.mean(self.samples >= 0))
        return float(min(1.0, max(2 * tail, 1.0 / n)))

    @property
    def sd(self) -> float:
        """Spread of the per-config values (what the number of configs must beat): their SD, or
        with strata the pooled within-stratum SD."""
        x = self.per_config
        if self.strata is None:
            return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
        levels = np.unique(self.strata)
        dof = len(x) - len(levels)
        if dof < 1:
            return float("nan")
        ss = sum(((x[self.strata == g] - x[self.strata == g].mean()) ** 2).sum() for g in levels)
        return float(np.sqrt(ss / dof))


def cluster_bootstrap(per_config, n_boot: int = 4000, seed: int = 0, strata=None) -> Bootstrap:
    """Resample configs with replacement; the mean of their values, ``n_boot`` times (one
    vectorised draw of indices per stratum, no loop over resamples).

    ``strata`` (one label per config) resamples within each label, keeping its count. A stratum
    left with a single config would add no spread at all, so then the resampling ignores the
    strata. Configs whose value is not finite (a failed side) are left out before resampling."""
    x = np.asarray(per_config, dtype=float)
    ok = np.isfinite(x)
    labels = None if strata is None else np.asarray([str(s) for s in strata])[ok]
    x = x[ok]
    if labels is not None and np.unique(labels, return_counts=True)[1].min(initial=2) < 2:
        labels = None
    if len(x) == 0:
        return Bootstrap(float("nan"), np.array([np.nan]), x, labels)
    rng = np.random.default_rng(seed)
    if labels is None:
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        return Bootstrap(float(x.mean()), x[idx].mean(axis=1), x)
    total = np.zeros(n_boot)
    for g in np.unique(labels):
        xs = x[labels == g]
        total += xs[rng.integers(0, len(xs), size=(n_boot, len(xs)))].sum(axis=1)
    return Bootstrap(float(x.mean()), total / len(x), x, labels)


def holm_adjusted(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values: max over j <= i of (m - j + 1) p_(j), capped at 1, in input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def holm_levels(pvalues: list[float], alpha: float = 0.05) -> list[float]:
    """Each claim's alpha under Holm's step-down procedure (see the module docstring)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    level = None
    for rank, i in enumerate(order):
        if level is None:
            this = alpha / (m - rank)
            if pvalues[i] > this:
                level = this  # the first claim kept: it and every later claim use this level
            out[i] = this
        else:
            out[i] = level
    return out


def verdict(lo: float, hi: float, delta: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if hi < 0:
        return "supported"
    if lo > 0:
        return "harmful"
    if -delta < lo and hi < delta:
        return "no practical effect"
    return "inconclusive"


def configs_needed(sd: float, half_width: float, z: float = Z95) -> int | None:
    """Configs for a normal-approximation interval of ``half_width`` given the per-config spread."""
    if not (math.isfinite(sd) and half_width > 0):
        return None
    return max(2, math.ceil((z * sd / half_width) ** 2))


def z_of(alpha: float) -> float:
    """The two-sided normal quantile for level 1 - alpha."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha / 2)

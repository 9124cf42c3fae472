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


def _finite_with_strata(per_config, strata) -> tuple[np.ndarray, np.ndarray | None]:
    """The finite per-config values and their stratum labels; no labels when there are none, or
    when a stratum is left with a single config (it would add no spread at all)."""
    x = np.asarray(per_config, dtype=float)
    ok = np.isfinite(x)
    labels = None if strata is None else np.asarray([str(s) for s in strata])[ok]
    x = x[ok]
    if labels is not None and np.unique(labels, return_counts=True)[1].min(initial=2) < 2:
        labels = None
    return x, labels


def cluster_bootstrap(per_config, n_boot: int = 4000, seed: int = 0, strata=None) -> Bootstrap:
    """Resample configs with replacement; the mean of their values, ``n_boot`` times (one
    vectorised draw of indices per stratum, no loop over resamples).

    ``strata`` (one label per config) resamples within each label, keeping its count. A stratum
    left with a single config would add no spread at all, so then the resampling ignores the
    strata. Configs whose value is not finite (a failed side) are left out before resampling."""
    x, labels = _finite_with_strata(per_config, strata)
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


def _sort_key(p: float) -> float:
    """A p-value's place in Holm's order: a NaN (an effect with no spread) goes last."""
    return p if p == p else math.inf


def holm_adjusted(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values: max over j <= i of (m - j + 1) p_(j), capped at 1, in input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: _sort_key(pvalues[i]))
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def holm_levels(pvalues: list[float], alpha: float = 0.05) -> list[float]:
    """Each claim's alpha under Holm's step-down procedure (see the module docstring).

    Tied p-values (a bootstrap's floor of 1 / n_boot ties most strong claims) all get the level
    of the first rank they share, the strictest: the order of the claim list never decides
    whose interval is the wider, and no claim gets a wider interval than Holm allows it."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: _sort_key(pvalues[i]))
    out = [0.0] * m
    level = None
    rank = 0
    while rank < m:
        end = rank + 1  # the run of p-values equal to this one (a NaN ties with nothing)
        while end < m and pvalues[order[end]] == pvalues[order[rank]]:
            end += 1
        tied = order[rank:end]
        if level is None:
            this = alpha / (m - rank)
            if pvalues[tied[0]] > this:
                level = this  # the first claims kept: they and every later claim use this level
        for i in tied:
            out[i] = this if level is None else level
        rank += len(tied)
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


# -- the cluster t-interval ------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
            if aa == 0.0:
                break
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail of Student's t: P(|T| >= |t|) with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return _betai(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(alpha: float, df: float) -> float:
    """The two-sided critical value: ``t`` with P(|T| >= t) = ``alpha`` (bisection on ``t_sf2``)."""
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > alpha:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_sf2(mid, df) > alpha else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


@dataclass
class ClusterT:
    """The effect (mean of per-config values) with a t-interval over configs: the interface of
    ``Bootstrap`` (estimate, interval, p-value, sd), read off the t distribution.

    Why not the bootstrap: a percentile bootstrap over n clusters is the plug-in distribution of
    the mean, whose spread is sd_pop / sqrt(n), narrower than the standard error by
    sqrt((n - 1) / n), and whose tails use normal, not t, quantiles; at Holm levels it cannot
    reach past the most extreme configs. With 6 to 20 configs both matter (measured by
    ``scripts/interval_coverage.py``, docs/study.md). The t-interval is exact for normal
    per-config values, its p-values do not floor at 1 / n_boot (no Holm ties), and with strata
    it uses the stratified standard error with n - (number of strata) degrees of freedom."""

    estimate: float
    se: float
    df: float
    per_config: np.ndarray
    strata: np.ndarray | None = None

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        if not (math.isfinite(self.se) and self.df >= 1):
            return float("nan"), float("nan")
        half = t_quantile(alpha, self.df) * self.se
        return self.estimate - half, self.estimate + half

    def p_value(self) -> float:
        """Two-sided p-value of 'the effect is 0'."""
        if not (math.isfinite(self.se) and self.df >= 1):
            return float("nan")
        if self.se == 0.0:
            return 1.0 if self.estimate == 0.0 else 0.0
        return t_sf2(self.estimate / self.se, self.df)

    sd = Bootstrap.sd


def cluster_t(per_config, strata=None) -> ClusterT:
    """The t-interval of the mean over configs (non-finite values left out). With ``strata``
    (labels of a balanced design), the stratified standard error sqrt(sum_s (n_s/n)^2 s_s^2 / n_s)
    with n - k degrees of freedom; a stratum of one config drops the strata, as in
    ``cluster_bootstrap``."""
    x, labels = _finite_with_strata(per_config, strata)
    n = len(x)
    if n < 2:
        return ClusterT(float(x.mean()) if n else float("nan"), float("nan"), 0.0, x, labels)
    if labels is None:
        return ClusterT(float(x.mean()), float(np.std(x, ddof=1) / math.sqrt(n)), n - 1.0, x)
    groups = [x[labels == g] for g in np.unique(labels)]
    var = sum((len(g) / n) ** 2 * np.var(g, ddof=1) / len(g) for g in groups)
    return ClusterT(float(x.mean()), float(math.sqrt(var)), float(n - len(groups)), x, labels)

"""How often does each study interval cover a planted effect, with the study's own number of configs?

    python scripts/interval_coverage.py [--datasets 2000] [--boot 10000] [--configs 6,9,20]
                                        [--reports 'study_*/study_report.json'] [--claims 36]
                                        [--json docs/results/interval_coverage.json]

A study's effect is the mean of one paired difference per config; its interval comes either from a
percentile cluster bootstrap (10,000 resamples of configs, the committed studies) or from a cluster
t-interval (``study_stats.cluster_t``); Hall's skew-corrected t-interval (``hall_interval``) is
measured beside them as a candidate for skewed differences. This draws ``--datasets`` synthetic
studies of n configs each with a planted effect and counts how often each interval contains it,
at 95% and at the Holm level of the strictest claim of a ``--claims``-claim study (0.05 / 36 for the default
study; 0.05 / 28 for a formal-language study). ``--boot 0`` leaves the bootstrap out.

The per-config values come from these shapes:

- ``normal``: the t-interval's own assumption;
- ``real``: the committed studies' per-config differences (every claim of the reports that
  ``--reports`` matches under ``docs/results``, by default the set-complement and Othello
  studies' ``study_*/study_report.json``; ``'study_formal/*/study_report.json'`` for the
  languages), each claim centred and scaled to SD 1, pooled, and drawn with replacement: the
  skew and tails the studies actually had. Two things blunt it: scaling by each claim's own
  sample SD bounds a value at (k - 1) / sqrt(k) for a claim of k configs and pulls the kurtosis
  far below the population's, and claims skewed in opposite directions cancel in the pool, so it
  is nearly symmetric and cannot show what skew costs;
- the **matched** shapes, which can: ``tail_check`` compares the claims' pooled kurtosis and their
  mean |skew| with normal claims of the same sizes standardized the same way, and picks the
  Student t whose claims have the same pooled kurtosis and the lognormal (shifted to mean 0)
  whose claims have the same mean |skew|; each gets its own coverage row.

All three intervals are location-scale equivariant, so the planted effect (0) and the spread (1) lose
no generality. The output feeds docs/study.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commands.tools import Parser, check_outputs, run_script  # noqa: E402
from interp.analysis.study_stats import t_quantile  # noqa: E402
from training import atomic  # noqa: E402
from training.errors import WorkbenchError  # noqa: E402
from training.experiments.runner import read_json  # noqa: E402


def levels(claims: int) -> dict[str, float]:
    """Two-sided error rates: 95%, and the Holm level of the strictest of ``claims`` claims."""
    return {"95%": 0.05, f"Holm, 1 of {claims}": 0.05 / claims}


def _standardized(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / x.std(-1, ddof=1, keepdims=True)


def report_paths(pattern: str) -> list[Path]:
    """The study reports under docs/results that ``pattern`` (a relative glob) matches, in order."""
    if not pattern or Path(pattern).is_absolute():
        raise WorkbenchError(f"--reports takes a glob relative to docs/results, got {pattern!r}")
    return sorted((ROOT / "docs" / "results").glob(pattern))


def claim_values(pattern: str = "study_*/study_report.json") -> list[np.ndarray]:
    """Every claim's finite per-config values in the matching reports (claims of 3+ configs that vary)."""
    out = []
    for f in report_paths(pattern):
        for e in read_json(f, "study report")["effects"]:
            x = np.asarray(e["per_config"], dtype=float)
            x = x[np.isfinite(x)]
            if e.get("claim") and len(x) > 2 and x.std(ddof=1) > 0:
                out.append(x)
    return out


def real_shape(claims: list[np.ndarray]) -> np.ndarray:
    """The claims' per-config values (``claim_values``), each claim centred and scaled to SD 1, pooled."""
    return np.concatenate([_standardized(x) for x in claims]) if claims else np.zeros(0)


def pooled_kurtosis(claims: list[np.ndarray]) -> float:
    """Mean z^4 of the claims' values, each claim centred and scaled by its own sample SD."""
    return float(np.mean(real_shape(claims) ** 4))


def pooled_abs_skew(claims: list[np.ndarray]) -> float:
    """Mean over claims of |mean z^3|: how skewed a claim is, whichever way."""
    return float(np.mean([abs(np.mean(_standardized(x) ** 3)) for x in claims]))


def reference_kurtosis(sizes: list[int], draw, reps: int) -> np.ndarray:
    """``pooled_kurtosis`` of ``reps`` sets of claims of ``sizes`` drawn by ``draw(shape)``."""
    ref = np.zeros(reps)
    for k in set(sizes):  # every claim of k configs at once: [reps, claims of size k, k]
        ref += (_standardized(draw((reps, sizes.count(k), k))) ** 4).sum((1, 2))
    return ref / sum(sizes)


def reference_abs_skew(sizes: list[int], draw, reps: int) -> np.ndarray:
    """``pooled_abs_skew`` of ``reps`` sets of claims of ``sizes`` drawn by ``draw(shape)``."""
    ref = np.zeros(reps)
    for k in set(sizes):
        ref += np.abs((_standardized(draw((reps, sizes.count(k), k))) ** 3).mean(2)).sum(1)
    return ref / len(sizes)


LOGNORMAL_SIGMAS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def lognormal(sigma: float, rng: np.random.Generator):
    """Draws from a lognormal of log-SD ``sigma`` shifted to mean 0: skewed, and heavier-tailed as
    ``sigma`` grows."""
    return lambda size: rng.lognormal(0.0, sigma, size=size) - np.exp(sigma**2 / 2)


T_DFS = (2.5, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)


def tail_check(claims: list[np.ndarray], rng: np.random.Generator, reps: int = 1000) -> dict:
    """How heavy the claims' tails are. Standardizing by the sample SD pulls a claim's kurtosis
    far below 3 (to 3(k - 1)^3 / (k^2 (k + 1)) for k normal configs: 1.99 at k = 10), so the
    pooled shape is compared with normal claims of the same sizes standardized the same way, not
    with 3, and matched to the Student t whose claims would give the same pooled kurtosis
    (``matched_df``; None when no t in ``T_DFS`` is heavier than normal enough, inf when the tails
    are no heavier than normal)."""
    observed = pooled_kurtosis(claims)
    sizes = [len(x) for x in claims]
    ref = reference_kurtosis(sizes, lambda size: rng.normal(size=size), reps)
    lo, hi = np.quantile(ref, [0.025, 0.975])
    skew_ref = reference_abs_skew(sizes, lambda size: rng.normal(size=size), reps)
    abs_skew = pooled_abs_skew(claims)
    skewed = None  # the lognormal whose claims are as skewed as the real ones
    if abs_skew > np.quantile(skew_ref, 0.975):
        by_sigma = {sg: reference_abs_skew(sizes, lognormal(sg, rng), reps // 4).mean() for sg in LOGNORMAL_SIGMAS}
        skewed = min(by_sigma, key=lambda sg: abs(by_sigma[sg] - abs_skew))
    matched = float("inf")
    if observed > hi:
        by_df = {df: reference_kurtosis(sizes, lambda size, df=df: rng.standard_t(df, size=size), reps // 4).mean()
                 for df in T_DFS}  # fmt: skip
        heavier = [df for df, k in by_df.items() if k >= observed]
        matched = max(heavier) if heavier else None
    return {"kurtosis": observed, "normal_reference": float(ref.mean()), "normal_95": [float(lo), float(hi)],
            "matched_df": matched, "abs_skew": abs_skew,
            "abs_skew_normal_95": [float(q) for q in np.quantile(skew_ref, [0.025, 0.975])],
            "matched_lognormal_sigma": skewed}  # fmt: skip


def hall_interval(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Hall's (1992) skew-corrected t-interval for the mean of each row of ``x`` [studies, n].

    With T = sqrt(n)(mean - mu)/s and g the sample skewness, g(T) = T + a T^2 + a^2 T^3 / 3 +
    g/(6 sqrt(n)), a = g/(3 sqrt(n)), is nearly free of skew to second order; it is monotone, so
    inverting it at the t quantiles gives the interval."""
    n = x.shape[1]
    mean, s = x.mean(1), x.std(1, ddof=1)
    se = s / np.sqrt(n)
    a = ((x - mean[:, None]) ** 3).mean(1) / s**3 / (3 * np.sqrt(n))
    a = np.where(np.abs(a) < 1e-12, 1e-12, a)  # a -> 0 is the plain t-interval
    q = t_quantile(alpha, n - 1)

    def inverse(u):  # T from g(T) = u: ((1 + a T)^3 - 1)/(3 a) = u - a/2
        return (np.cbrt(1 + 3 * a * (u - a / 2)) - 1) / a

    return mean - se * inverse(q), mean - se * inverse(-q)


def coverage(draw, n: int, datasets: int, n_boot: int, rng: np.random.Generator, claims: int = 36) -> dict:
    """Fraction of ``datasets`` studies of ``n`` configs whose interval contains 0, per method and
    level (the bootstrap only when ``n_boot`` > 0)."""
    lvls = levels(claims)
    methods = ("bootstrap", "t", "hall") if n_boot > 0 else ("t", "hall")
    hits = {m: {lv: 0 for lv in lvls} for m in methods}
    crit = {lv: t_quantile(a, n - 1) for lv, a in lvls.items()}
    chunk = max(1, 2_000_000 // (max(n_boot, 1) * n))
    for start in range(0, datasets, chunk):
        k = min(chunk, datasets - start)
        x = draw((k, n))  # [k, n]: k studies
        mean, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(n)
        if n_boot > 0:
            idx = rng.integers(0, n, size=(k, n_boot, n))
            boots = np.take_along_axis(x[:, None, :].repeat(n_boot, 1), idx, 2).mean(2)  # [k, n_boot]
        for lv, a in lvls.items():
            if n_boot > 0:
                lo, hi = np.quantile(boots, [a / 2, 1 - a / 2], axis=1)
                hits["bootstrap"][lv] += int(((lo <= 0) & (0 <= hi)).sum())
            hits["t"][lv] += int((np.abs(mean) <= crit[lv] * se).sum())
            lo, hi = hall_interval(x, a)
            hits["hall"][lv] += int(((lo <= 0) & (0 <= hi)).sum())
    return {m: {lv: h / datasets for lv, h in d.items()} for m, d in hits.items()}


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=10000)
    ap.add_argument("--configs", default="6,9,20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reports", default="study_*/study_report.json", help="glob under docs/results")
    ap.add_argument("--claims", type=int, default=36, help="claims in the Holm family")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    check_outputs(args)
    if args.datasets < 1 or args.boot < 0 or args.claims < 1:
        print("error: --datasets and --claims must be positive, --boot at least 0", file=sys.stderr)
        return 2
    try:
        configs = [int(c) for c in args.configs.split(",")]
    except ValueError:
        configs = []
    if not configs or min(configs) < 2:
        print(f"error: --configs takes integers of at least 2, got {args.configs!r}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    claims = claim_values(args.reports)
    if not claims:
        print(f"error: no study report under docs/results matches {args.reports!r}", file=sys.stderr)
        return 2
    shape = real_shape(claims)
    # its own random stream, so the coverage draws stay as they were before the tail check existed
    tails = tail_check(claims, np.random.default_rng([args.seed, 1]))
    lo, hi = tails["normal_95"]
    s_lo, s_hi = tails["abs_skew_normal_95"]
    print(f"real shape: {len(shape)} values from {len(claims)} claims")
    print(
        f"  kurtosis {tails['kurtosis']:.2f};"
        f" normal claims of the same sizes {tails['normal_reference']:.2f} [{lo:.2f}, {hi:.2f}]"
    )
    print(f"  |skew| per claim {tails['abs_skew']:.3f}; normal claims [{s_lo:.3f}, {s_hi:.3f}]")
    print(f"  the Student t with these tails: {tails['matched_df']} degrees of freedom")
    lvls = levels(args.claims)
    methods = ("bootstrap", "t", "hall") if args.boot > 0 else ("t", "hall")
    shapes = {
        "normal": lambda size: rng.normal(size=size),
        "real": lambda size: rng.choice(shape, size=size),
    }
    if tails["matched_df"] not in (None, float("inf")):
        df = tails["matched_df"]
        shapes[f"t{df:g}"] = lambda size: rng.standard_t(df, size=size)
    if tails["matched_lognormal_sigma"] is not None:
        shapes[f"lognormal {tails['matched_lognormal_sigma']:g}"] = lognormal(tails["matched_lognormal_sigma"], rng)
    rows = []
    print(f"coverage of 0 over {args.datasets} studies per row ({args.boot} bootstrap resamples each)")
    print(f"{'shape':<14}{'configs':>8}  " + "".join(f"{m + ' ' + lv:>24}" for m in methods for lv in lvls))
    for name, draw in shapes.items():
        for n in configs:
            cov = coverage(draw, n, args.datasets, args.boot, rng, args.claims)
            rows.append({"shape": name, "configs": n, "coverage": cov})
            print(f"{name:<14}{n:>8}  " + "".join(f"{cov[m][lv]:>24.3f}" for m in methods for lv in lvls))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        nominal = {lv: 1 - a for lv, a in lvls.items()}
        atomic.write_text(
            args.json,
            json.dumps(
                {
                    "datasets": args.datasets,
                    "boot": args.boot,
                    "nominal": nominal,
                    "reports": args.reports,
                    "real_values": len(shape),
                    # strict JSON has no Infinity: "normal" is a matched t of infinite degrees of freedom
                    "real_tails": {
                        **tails,
                        "matched_df": "normal" if tails["matched_df"] == float("inf") else tails["matched_df"],
                    },
                    "rows": rows,
                },
                indent=1,
            )
            + "\n",
        )
    return 0


if __name__ == "__main__":
    run_script(main)

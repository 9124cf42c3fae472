"""How often does each study interval cover a planted effect, with the study's own number of configs?

    python scripts/interval_coverage.py [--datasets 2000] [--boot 10000] [--configs 6,9,20]
                                        [--json docs/results/interval_coverage.json]

A study's effect is the mean of one paired difference per config; its interval comes either from a
percentile cluster bootstrap (10,000 resamples of configs, the committed studies) or from a cluster
t-interval (``study_stats.cluster_t``). This draws ``--datasets`` synthetic studies of n configs
each with a planted effect and counts how often each interval contains it, at 95% and at the
Holm level of the strictest claim of a 36-claim study (0.05 / 36).

The per-config values come from two shapes:

- ``normal``: the t-interval's own assumption;
- ``real``: the committed studies' per-config differences (every claim of
  ``docs/results/study_*/study_report.json``), each claim centred and scaled to SD 1, pooled,
  and drawn with replacement: the skew and tails the studies actually had.

Both intervals are location-scale equivariant, so the planted effect (0) and the spread (1) lose
no generality. The output feeds docs/study.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.analysis.study_stats import t_quantile  # noqa: E402

LEVELS = {"95%": 0.05, "Holm, 1 of 36": 0.05 / 36}


def real_shape() -> np.ndarray:
    """Every claim's per-config values of the committed studies, centred and scaled to SD 1."""
    out = []
    for f in sorted((ROOT / "docs" / "results").glob("study_*/study_report.json")):
        for e in json.loads(f.read_text())["effects"]:
            x = np.asarray(e["per_config"], dtype=float)
            x = x[np.isfinite(x)]
            if e.get("claim") and len(x) > 2 and x.std(ddof=1) > 0:
                out.append((x - x.mean()) / x.std(ddof=1))
    return np.concatenate(out)


def coverage(draw, n: int, datasets: int, n_boot: int, rng: np.random.Generator) -> dict:
    """Fraction of ``datasets`` studies of ``n`` configs whose interval contains 0, per method and level."""
    hits = {m: {lv: 0 for lv in LEVELS} for m in ("bootstrap", "t")}
    crit = {lv: t_quantile(a, n - 1) for lv, a in LEVELS.items()}
    chunk = max(1, 2_000_000 // (n_boot * n))
    for start in range(0, datasets, chunk):
        k = min(chunk, datasets - start)
        x = draw((k, n))  # [k, n]: k studies
        mean, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(n)
        idx = rng.integers(0, n, size=(k, n_boot, n))
        boots = np.take_along_axis(x[:, None, :].repeat(n_boot, 1), idx, 2).mean(2)  # [k, n_boot]
        for lv, a in LEVELS.items():
            lo, hi = np.quantile(boots, [a / 2, 1 - a / 2], axis=1)
            hits["bootstrap"][lv] += int(((lo <= 0) & (0 <= hi)).sum())
            hits["t"][lv] += int((np.abs(mean) <= crit[lv] * se).sum())
    return {m: {lv: h / datasets for lv, h in d.items()} for m, d in hits.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=10000)
    ap.add_argument("--configs", default="6,9,20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    shape = real_shape()
    shapes = {
        "normal": lambda size: rng.normal(size=size),
        "real": lambda size: rng.choice(shape, size=size),
    }
    rows = []
    print(f"coverage of 0 over {args.datasets} studies per row ({args.boot} bootstrap resamples each)")
    print(f"{'shape':<8}{'configs':>8}  " + "".join(f"{m + ' ' + lv:>24}" for m in ("bootstrap", "t") for lv in LEVELS))
    for name, draw in shapes.items():
        for n in (int(c) for c in args.configs.split(",")):
            cov = coverage(draw, n, args.datasets, args.boot, rng)
            rows.append({"shape": name, "configs": n, "coverage": cov})
            print(f"{name:<8}{n:>8}  " + "".join(f"{cov[m][lv]:>24.3f}" for m in ("bootstrap", "t") for lv in LEVELS))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        nominal = {lv: 1 - a for lv, a in LEVELS.items()}
        args.json.write_text(
            json.dumps(
                {
                    "datasets": args.datasets,
                    "boot": args.boot,
                    "nominal": nominal,
                    "real_values": len(shape),
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

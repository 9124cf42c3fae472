"""Which verdicts would change if the per-config differences are as skewed as they look?

    python scripts/verdict_sensitivity.py [--reports 'study_formal/*/study_report.json'] [--sigma 0.5]
                                          [--sims 200000] [--json FILE]

A study's claim is decided on a cluster t-interval at the claim's Holm level. The t quantile is
exact when the per-config differences are normal; ``scripts/interval_coverage.py`` measures how
skewed and heavy-tailed they really are and which lognormal matches their skew. Under a skewed
shape the studentized mean |mean| / se has longer tails than Student's t, so the interval needs a
larger critical value to keep its coverage. This widens every claim's Holm interval about its
estimate by

    factor(alpha, n) = q_{1 - alpha}(|mean| / se under the lognormal, n configs) / t_{1 - alpha/2, n - 1}

(simulated with ``--sims`` studies per number of configs) and recomputes the verdict with the
claim's own smallest effect of interest (turned, as the study turns it, for a measure where
higher is better). It lists the claims whose verdict changes. Each claim
keeps the Holm level the study gave it, and a stratified study's interval is widened as if it had
n - 1 degrees of freedom: a sensitivity check, not a new analysis.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from interval_coverage import lognormal, report_paths  # noqa: E402

from commands.tools import Parser, check_outputs, run_script  # noqa: E402
from interp.analysis.study_report import oriented  # noqa: E402
from interp.analysis.study_stats import t_quantile, verdict  # noqa: E402
from training import atomic  # noqa: E402
from training.experiments.runner import read_json  # noqa: E402


def studentized(draw, n: int, sims: int) -> np.ndarray:
    """|mean| / se of ``sims`` studies of ``n`` configs drawn by ``draw(shape)`` (mean 0)."""
    x = draw((sims, n))
    return np.abs(x.mean(1)) / (x.std(1, ddof=1) / np.sqrt(n))


def widen_factor(stat: np.ndarray, alpha: float, n: int) -> float:
    """How much wider than the t-interval an interval must be to cover 1 - ``alpha`` of ``stat``."""
    return float(np.quantile(stat, 1 - alpha) / t_quantile(alpha, n - 1))


def sensitivity(reports: dict[str, dict], draw, sims: int) -> list[dict]:
    """Every claim with a Holm interval, its interval widened by the shape's factor, and both verdicts."""
    stats: dict[int, np.ndarray] = {}
    out = []
    for name, report in reports.items():
        for e in report["effects"]:
            if not e.get("claim") or "ci_holm" not in e:
                continue
            n = int(e["n_configs"])
            if n not in stats:
                stats[n] = studentized(draw, n, sims)
            f = widen_factor(stats[n], e["holm_alpha"], n)
            lo, hi = e["ci_holm"]
            est = e["estimate"]
            wide = [est - (est - lo) * f, est + (hi - est) * f]
            out.append({
                "report": name, "contrast": e["contrast"], "target": e["target"], "measure": e["measure"],
                "part": e["part"], "estimate": est, "ci_holm": [lo, hi], "factor": f, "ci_wide": wide,
                "verdict": e["verdict"], "verdict_wide": verdict(*oriented(e, *wide), e["delta"]),
            })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", default="study_formal/*/study_report.json", help="glob under docs/results")
    ap.add_argument("--sigma", type=float, default=0.5, help="log-SD of the skewed shape (interval_coverage.py)")
    ap.add_argument("--sims", type=int, default=200_000, help="simulated studies per number of configs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every claim's widened interval here")
    args = ap.parse_args(argv)
    check_outputs(args)
    if not args.sigma > 0 or args.sims < 1000:
        print("error: --sigma must be positive and --sims at least 1000", file=sys.stderr)
        return 2
    results = ROOT / "docs" / "results"
    reports = {str(p.parent.relative_to(results)): read_json(p, "study report") for p in report_paths(args.reports)}
    if not reports:
        print(f"error: no study report under docs/results matches {args.reports!r}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    rows = sensitivity(reports, lognormal(args.sigma, rng), args.sims)
    changed = [r for r in rows if r["verdict"] != r["verdict_wide"]]
    factors = [r["factor"] for r in rows]
    print(f"lognormal sigma {args.sigma}: intervals widened {min(factors):.2f}-{max(factors):.2f}x")
    print(f"{len(changed)} of {len(rows)} verdicts change in {len(reports)} reports")
    for r in changed:
        lo, hi = r["ci_holm"]
        wlo, whi = r["ci_wide"]
        target = "" if r["target"] == "both" else f" [{r['target']}]"
        print(
            f"  {r['report']:<28} {r['contrast'] + target + ': ' + r['measure']:<44} "
            f"[{lo:+.4f}, {hi:+.4f}] {r['verdict']} -> [{wlo:+.4f}, {whi:+.4f}] {r['verdict_wide']}"
        )
    by_report: dict[str, list[int]] = {}
    for r in rows:
        c = by_report.setdefault(r["report"], [0, 0])
        c[0] += r["verdict"] != r["verdict_wide"]
        c[1] += 1
    print("per report: " + ", ".join(f"{k} {c}/{n}" for k, (c, n) in by_report.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(
            args.json, json.dumps({"sigma": args.sigma, "sims": args.sims, "claims": rows}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    run_script(main)

"""Two runs of one study design side by side: did a change of how it runs move its results?

    python scripts/compare_studies.py docs/results/study_default runs/study_compiled [--json FILE]

Each argument is a study report folder (the ``study_report.json`` of ``python -m interp
study-report``) or that file itself. Effects are matched by family, contrast, target, part and
measure. For the claims it prints each pair of estimates, their difference and both verdicts,
marking every verdict that changed; then a summary: how many claims and effects were matched,
how many verdicts changed, the largest change of a claim's estimate and of any effect's
(claims, mechanism measures, in-range effects), and whether every number is equal to the last
digit (the check that an eager rerun reproduces the committed results). Effects present in only
one report are listed. It answers the question issue 26 asks of every speed-up that changes
the numerics (a compiled step's dropout masks, bf16): are the verdicts the same, and by how
much did the figures move?
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from commands.tools import Parser, check_outputs, run_script
from training import atomic

KEY = ("family", "contrast", "target", "part", "measure")
NUMBERS = ("estimate", "ci95", "ci_holm", "p", "p_holm", "sd")
"""The figures compared to the last digit (``per_config`` included, below)."""


def read_report(path: str | Path) -> dict:
    """A study_report.json, given it or its folder; ValueError with one line when unreadable."""
    p = Path(path)
    if p.is_dir():
        p = p / "study_report.json"
    try:
        report = json.loads(p.read_text())
        effects = report["effects"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        why = getattr(e, "strerror", None) or (f"no {e}" if isinstance(e, KeyError) else e)
        raise ValueError(f"cannot read a study report from {p}: {why}") from None
    return {tuple(e.get(k) for k in KEY): e for e in effects}


def _change(a, b) -> float:
    """|b - a| of two estimates; NaN on both sides (no config kept) is no change."""
    if a is None or b is None:
        return math.nan
    if math.isnan(a) and math.isnan(b):
        return 0.0
    return abs(b - a)


def _same(a: dict, b: dict) -> bool:
    """Every figure of one effect equal to the last digit (NaN equal to NaN)."""
    for k in (*NUMBERS, "per_config", "verdict"):
        x, y = a.get(k), b.get(k)
        if json.dumps(x) != json.dumps(y):  # JSON text: NaN == NaN, lists elementwise, exact floats
            return False
    return True


def compare(a: dict, b: dict) -> dict:
    """The comparison of two reports' effects (``read_report``'s dicts), as a JSON-able dict."""
    moved = {k: _change(a[k].get("estimate"), b[k].get("estimate")) for k in a if k in b}
    claims = [k for k in moved if a[k].get("claim")]
    rows = [
        {
            **dict(zip(KEY, k)),
            "estimate_a": a[k].get("estimate"),
            "estimate_b": b[k].get("estimate"),
            "change": moved[k],
            "verdict_a": a[k].get("verdict"),
            "verdict_b": b[k].get("verdict"),
        }
        for k in claims
    ]
    largest = max(moved, key=moved.get, default=None)
    if largest is not None and not moved[largest] > 0:  # nothing moved: no effect to name
        largest = None
    return {
        "claims": rows,
        "n_claims": len(claims),
        "n_effects": len(moved),
        "verdicts_changed": sum(r["verdict_a"] != r["verdict_b"] for r in rows),
        "largest_claim_change": max((r["change"] for r in rows), default=math.nan),
        "largest_effect_change": max(moved.values(), default=math.nan),
        "largest_effect": None if largest is None else " ".join(str(x) for x in largest),
        "identical": len(a) == len(b) == len(moved) and all(_same(a[k], b[k]) for k in moved),
        "only_a": [" ".join(map(str, k)) for k in a if k not in b],
        "only_b": [" ".join(map(str, k)) for k in b if k not in a],
    }


def render(c: dict, name_a: str, name_b: str) -> str:
    lines = [f"A = {name_a}", f"B = {name_b}", ""]
    lines.append(f"{'claim (beyond unless marked)':58} {'A':>9} {'B':>9} {'|B-A|':>8}  verdicts")
    for r in c["claims"]:
        where = "" if r["part"] == "beyond" else f" ({r['part']})"
        name = f"{r['contrast']} [{r['target']}]: {r['measure']}{where}"
        mark = "  <- changed" if r["verdict_a"] != r["verdict_b"] else ""
        verdicts = r["verdict_a"] if not mark else f"{r['verdict_a']} -> {r['verdict_b']}"
        lines.append(f"{name:58} {r['estimate_a']:+9.4f} {r['estimate_b']:+9.4f} {r['change']:8.4f}  {verdicts}{mark}")
    lines += [
        "",
        f"{c['n_claims']} claims and {c['n_effects']} effects in both; verdicts changed: {c['verdicts_changed']}",
        f"largest change of a claim's estimate: {c['largest_claim_change']:.4f}",
        f"largest change of any effect's estimate: {c['largest_effect_change']:.4f} ({c['largest_effect'] or '-'})",
        "identical to the last digit: " + ("yes" if c["identical"] else "no"),
    ]
    for side in ("only_a", "only_b"):  # a newer study-report adds effects: a count and the first few
        if c[side]:
            more = f"; ... ({len(c[side]) - 3} more)" if len(c[side]) > 3 else ""
            lines.append(f"only in {side[-1].upper()} ({len(c[side])}): " + "; ".join(c[side][:3]) + more)
    return "\n".join(lines) + "\n"


def _finite(x):
    """NaN (a claim no config was kept for) as JSON null: strict JSON for every reader."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="the reference study report (folder or study_report.json)")
    p.add_argument("b", help="the study report to compare with it")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the comparison as JSON")
    args = p.parse_args(argv)
    check_outputs(args)
    try:
        a, b = read_report(args.a), read_report(args.b)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = compare(a, b)
    print(render(c, args.a, args.b), end="")
    if args.json:
        atomic.write_text(args.json, json.dumps(_finite(c), indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)

"""The study's claims side by side across tasks: one row per task, one column per claim.

    python scripts/cross_task_table.py --row "set complement=docs/results/study_default,docs/results/study_remedies" \
        --row "Othello=docs/results/study_othello" --row "dyck-1=docs/results/study_formal/dyck-1" [--out FILE.md]

Each ``--row`` names a task and one or more study report folders (each holding the
``study_report.json`` of ``python -m interp study-report``); a column is read from the first
folder of the row that has its contrast. A cell is the effect beyond the training lengths on
TV, sampled target, with its Holm-corrected interval (its 95% interval, marked ``95%``, for a
mechanism measure that is not a claim) and the verdict (helps, hurts, none: no practical effect,
?: inconclusive; a star: a real effect whose whole interval lies within the smallest effect of
interest). The last columns are the baseline's own
levels beyond the training lengths (dropout 0, sampled target): its accuracy measure (the
language's ``pos_acc``, Othello's ``legal_top1``) and its normalised attention entropy, for the
question whether the tasks that fail to generalize are those whose attention disperses most.

With ``--tally`` a second table follows: per claim, how many rows it helps, hurts, has no
practical effect on, leaves inconclusive, or gives no verdict on (no config kept), and on how
many it was not run; a helps or hurts count says in brackets how many of those effects lie
wholly within the smallest effect of interest. It answers which conclusions are general. With
``--remedies`` a third table gives each v2 remedy (Post-Norm, output rescaling) against its
baseline on both targets, for the rows whose reports have them.

``--embed PAGE.md`` also puts each table made into the page, between the marker lines
``<!-- cross_task_table: table -->`` (``tally``, ``remedies``) and ``<!-- /cross_task_table -->``,
so the page and the ``--out`` file say the same thing; nothing is written unless every marker
is found.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from commands.tools import Parser, check_outputs, run_script
from training import atomic

COLUMNS = [
    ("EMA", "averaging", ("ema - raw",), "tv"),
    ("BEMA", "averaging", ("bema - raw",), "tv"),
    ("extrapolation", "averaging", ("extrap - raw",), "tv"),
    ("anneal", "remedy", ("anneal - baseline",), "tv"),
    ("dropout 0.1", "dropout", ("dropout 0.1 - 0",), "tv"),
    ("Post-Norm", "remedy", ("postnorm - baseline",), "tv"),
    ("output rescale", "remedy", ("rescale - baseline", "out_rescale - baseline"), "tv"),
    ("noise x EMA", "noise", ("(ema - raw) sampled - exact",), "tv"),
    ("dropout on entropy", "dropout", ("dropout 0.1 - 0",), "norm_entropy"),
]
ACCURACY = ("pos_acc", "legal_top1", "acc")
SHORT = {"supported": "helps", "harmful": "hurts", "no practical effect": "none", "inconclusive": "?"}


def _effect(
    report: dict, family: str, contrasts: tuple[str, ...], measure: str, target: str | None = None
) -> dict | None:
    target = target or ("both" if family == "noise" else "sampled")
    for e in report["effects"]:
        if (
            e["family"] == family
            and e["contrast"] in contrasts
            and e["measure"] == measure
            and e["part"] == "beyond"
            and e["target"] == target
        ):
            return e
    return None


def verdict(reports: list[dict], family: str, contrasts: tuple[str, ...], measure: str) -> str | None:
    """The row's short verdict on one claim (``helps*`` for an effect within delta, ``no verdict``
    when no config was kept), or None where the row has no such claim."""
    for report in reports:
        e = _effect(report, family, contrasts, measure)
        if e is None:
            continue
        if not e.get("claim"):
            return None
        if "ci_holm" not in e:
            return "no verdict"
        small = "*" if e.get("within_delta") and e["verdict"] in ("supported", "harmful") else ""
        return SHORT.get(e["verdict"], e["verdict"]) + small
    return None


def cell(
    reports: list[dict],
    family: str,
    contrasts: tuple[str, ...],
    measure: str,
    target: str | None = None,
    words: bool = False,
) -> str:
    """One claim's cell: estimate, interval and verdict, in the short form (``helps*``) or, with
    ``words``, the report's own (``supported``); ``-`` where no report of the row has it."""
    for report in reports:
        e = _effect(report, family, contrasts, measure, target)
        if e is None:
            continue
        if e.get("claim") and "ci_holm" not in e:  # no config met the study's region
            return "no verdict (no config kept)"
        if e.get("claim"):
            lo, hi = e["ci_holm"]
            small = "*" if e.get("within_delta") and e["verdict"] in ("supported", "harmful") else ""
            said = e["verdict"] if words else SHORT.get(e["verdict"], e["verdict"])
            return f"{e['estimate']:+.4f} [{lo:+.4f}, {hi:+.4f}] {said}{small}"
        lo, hi = e["ci95"]
        return f"{e['estimate']:+.4f} [{lo:+.4f}, {hi:+.4f}] 95%"
    return "-"


def levels(reports: list[dict]) -> tuple[str, str]:
    for report in reports:
        for row in report.get("levels", []):
            if row.get("variant") == "baseline" and row.get("target") == "sampled":
                acc = next((row[f"beyond {m}"] for m in ACCURACY if f"beyond {m}" in row), None)
                ent = row.get("beyond norm_entropy")
                # a baseline with no config kept has NaN levels: say nothing rather than "nan"
                return tuple("-" if v is None or v != v else f"{v:.3f}" for v in (acc, ent))
    return ("-", "-")


def table(rows: list[tuple[str, list[dict]]]) -> str:
    head = ["task", *(c[0] for c in COLUMNS), "accuracy beyond", "entropy beyond"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, reports in rows:
        cells = [cell(reports, *c[1:]) for c in COLUMNS]
        lines.append("| " + " | ".join([name, *cells, *levels(reports)]) + " |")
    return "\n".join(lines) + "\n"


REMEDIES = [c for c in COLUMNS if c[1] == "remedy" and c[0] != "anneal"]


def remedies(rows: list[tuple[str, list[dict]]]) -> str:
    """Each v2 remedy against its baseline on both targets, for the rows that ran the remedies:
    beyond, TV, Holm-corrected, with the report's own verdict words."""
    lines = ["| task | contrast | sampled | exact |", "|---|---|---|---|"]
    for name, reports in rows:
        for label, family, contrasts, measure in REMEDIES:
            if not any(_effect(r, family, contrasts, measure) for r in reports):
                continue
            pair = [cell(reports, family, contrasts, measure, t, words=True) for t in ("sampled", "exact")]
            lines.append("| " + " | ".join([name, f"{label} - baseline", *pair]) + " |")
    return "\n".join(lines) + "\n"


MARK = "<!-- cross_task_table: {} -->"
END = "<!-- /cross_task_table -->"


def embed(doc: str, blocks: dict[str, str]) -> str:
    """``doc`` with the text between each ``<!-- cross_task_table: NAME -->`` line and the next
    ``<!-- /cross_task_table -->`` line replaced by ``blocks[NAME]``, so a page that quotes the
    tables cannot drift from what the reports say. A missing marker is a ValueError."""
    lines = doc.splitlines(keepends=True)
    for name, text in blocks.items():
        starts = [i for i, line in enumerate(lines) if line.strip() == MARK.format(name)]
        if len(starts) != 1:
            raise ValueError(f"{MARK.format(name)} appears {len(starts)} times, not once")
        end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].strip() == END), None)
        if end is None:
            raise ValueError(f"{MARK.format(name)} has no {END} after it")
        lines[starts[0] + 1 : end] = [text]
    return "".join(lines)


TALLY = ("helps", "hurts", "none", "?", "no verdict")


def tally(rows: list[tuple[str, list[dict]]]) -> str:
    """Per claim (a column of ``table``), the number of rows with each verdict."""
    head = ["claim", *TALLY, "not run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, *spec in COLUMNS:
        found = [verdict(reports, *spec) for _, reports in rows]
        counts = []
        for v in TALLY:
            n = sum(f is not None and f.rstrip("*") == v for f in found)
            stars = sum(f == v + "*" for f in found)
            counts.append(f"{n} ({stars}*)" if stars else str(n))
        lines.append("| " + " | ".join([name, *counts, str(found.count(None))]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--row", action="append", required=True, metavar="NAME=DIR[,DIR...]", help="a task and its reports")
    p.add_argument("--tally", action="store_true", help="add the verdict counts per claim below the table")
    p.add_argument(
        "--remedies", action="store_true", help="add each v2 remedy on both targets, for the rows that ran them"
    )
    p.add_argument("--out", type=Path, help="write the tables here as well as to stdout")
    p.add_argument(
        "--embed",
        type=Path,
        metavar="FILE.md",
        help="also rewrite, in place, the block of FILE.md between '<!-- cross_task_table: table -->' "
        "(or ': tally', ': remedies') and '<!-- /cross_task_table -->' for each table made",
    )
    args = p.parse_args(argv)
    check_outputs(args, files=("out", "embed"), folders=())
    rows = []
    for spec in args.row:
        name, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            print(f"error: --row takes NAME=DIR[,DIR...], got {spec!r}", file=sys.stderr)
            return 2
        reports = []
        for d in dirs.split(","):
            path = Path(d) / "study_report.json"
            try:
                reports.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError) as e:
                print(f"error: cannot read {path}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
                return 2
        rows.append((name, reports))
    blocks = {"table": table(rows)}
    if args.tally:
        blocks["tally"] = tally(rows)
    if args.remedies:
        blocks["remedies"] = remedies(rows)
    if args.embed:
        try:
            page = embed(args.embed.read_text(), blocks)
        except (OSError, ValueError) as e:
            print(f"error: cannot embed in {args.embed}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
            return 2
    text = "\n".join(blocks.values())
    print(text, end="")
    if args.out:
        atomic.write_text(args.out, text)
    if args.embed:
        atomic.write_text(args.embed, page)
    return 0


if __name__ == "__main__":
    run_script(main)

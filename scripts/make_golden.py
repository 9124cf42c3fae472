"""Regenerate the golden figures of tests/test_golden.py, for a deliberate change of results.

    python scripts/make_golden.py [--out tests/golden/tiny_bema_dropout.json] [--note "why"]

The golden test checks that a refactor changes no result: a tiny dropout + BEMA run and its probe
report must reproduce these figures. Run this only when a result is meant to change, say why in
``--note`` (it is stored in the file), and commit the new file with the change that moved it. The
run's config is read from the existing file, so only the figures are remade.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commands.tools import Parser, check_outputs, run_script  # noqa: E402
from interp.set_complement.report import build_report  # noqa: E402
from training import atomic, runs  # noqa: E402
from training.config import load_config  # noqa: E402
from training.experiments.runner import read_json  # noqa: E402
from training.trainer import train  # noqa: E402


def golden_figures(overrides: list[str], report_sets: int) -> dict:
    """The final metrics of the run and the per-length figures of its report."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, overrides)
        run = runs.create_run_dir(Path(tmp) / "run", cfg)
        final = train(cfg, run, progress=False).final
        build_report(run, Path(tmp) / "rep", sets=report_sets, progress=False)
        per_length = json.loads((Path(tmp) / "rep" / "per_length.json").read_text())
    return {"final": {k: m.to_dict() for k, m in final.items()}, "report_per_length": per_length}


def main() -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "golden" / "tiny_bema_dropout.json")
    p.add_argument("--note", required=True, help="why the golden figures change (stored in the file)")
    args = p.parse_args()
    check_outputs(args, files=("out",), folders=())
    old = read_json(args.out, "golden file")
    new = {
        "overrides": old["overrides"],
        "report_sets": old["report_sets"],
        "note": args.note,
        **golden_figures(old["overrides"], old["report_sets"]),
    }
    atomic.write_text(args.out, json.dumps(new, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)

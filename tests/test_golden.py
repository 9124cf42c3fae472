"""Before/after check for refactors: a tiny dropout + BEMA run and its probe report must reproduce the
figures the pre-refactor code produced (tests/golden/, made at commit c3d9077 on the 2-core CPU
machine). Training is deterministic on the CPU, so on that machine the match is exact; the
tolerance only allows for another CPU's kernels. ``scripts/make_golden.py`` remakes the file, for a
change meant to move results (with a note saying why)."""

import json
from pathlib import Path

import pytest

from scripts.make_golden import golden_figures

GOLDEN = json.loads((Path(__file__).parent / "golden" / "tiny_bema_dropout.json").read_text())


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), path
    else:
        assert a == b, path


def test_training_and_report_reproduce_the_golden_figures():
    figures = golden_figures(GOLDEN["overrides"], GOLDEN["report_sets"])
    _close(figures["final"], GOLDEN["final"], "final")
    _close(figures["report_per_length"], GOLDEN["report_per_length"], "report")

"""benchmarks/study_bound.py: bad input is one line and exit 2, before any measuring (run as a
process: tests never import the benchmarks)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bad_input_is_one_line_before_measuring():
    for args in (["--seconds", "-1"], ["--spec", "no_such_study"]):  # the arguments; the study file
        r = subprocess.run([sys.executable, "benchmarks/study_bound.py", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "GFLOP/s" not in r.stdout  # failed before the matmul rates were measured

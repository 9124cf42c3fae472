"""Every script and benchmark, run as a process the way a user runs it: ``--help`` prints a usage
and exits 0, and bad input (a zero count, a path that cannot be written or read) is one line on
stderr and exit status 2 before any work, never a traceback. Each file is named below, so a new
one without a bad-input case fails the listing check rather than going untested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = "docs/results/study_formal/dyck-1"

BAD = {
    "benchmarks/averager_cost.py": ["--rounds", "0"],
    "benchmarks/ensemble_bf16.py": ["--steps", "-3"],
    "benchmarks/ensemble_compile.py": ["--spec", "no_such_study"],
    "benchmarks/ensemble_members.py": ["--threads", "0"],
    "benchmarks/ensemble_throughput.py": ["--seeds", "0"],
    "benchmarks/eval_speed.py": ["--sets", "many"],
    "benchmarks/measure_cost.py": ["--run", "{tmp}/no_such_run"],
    "benchmarks/othello_datagen.py": ["--games", "0"],
    "benchmarks/othello_ensemble.py": ["--rounds", "0"],
    "benchmarks/probe_speed.py": ["--repeats", "0"],
    "benchmarks/study_bound.py": ["--seconds", "-1"],
    "benchmarks/study_commits.py": ["HEAD", "--configs", "0"],
    "benchmarks/study_workers.py": ["--spec", "no_such_study"],
    "benchmarks/sweep_throughput.py": ["--trials", "0"],
    "benchmarks/threads.py": ["--steps", "0"],
    "benchmarks/train_throughput.py": ["--rounds", "0"],
    "scripts/compare_studies.py": [REPORT, REPORT, "--json", "{tmp}"],  # a folder where a file goes
    "scripts/cross_task_table.py": ["--row", f"a={REPORT}", "--out", "{tmp}/a_file/table.md"],
    "scripts/formal_dispersion.py": ["{tmp}", "--json", "{tmp}/a_file/x.json"],
    "scripts/interval_coverage.py": ["--reports", "/abs/*.json"],
    "scripts/make_golden.py": ["--note", "x", "--out", "{tmp}/a_file"],  # not JSON
    "scripts/othello_capability.py": ["--out", "{tmp}/a_file"],  # a file where a folder goes
    "scripts/rereport_studies.py": ["--force"],  # it takes no options
    "scripts/verdict_sensitivity.py": ["--sims", "10"],
}
HELPERS = {"benchmarks/timing.py"}  # imported by the benchmarks, not run


DRIVER = r"""
import contextlib, io, json, runpy, sys
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    sys.argv, sys.path[0] = argv, argv[0].rsplit("/", 1)[0]
    with contextlib.redirect_stdout(io.StringIO()) as std, contextlib.redirect_stderr(err):
        try:
            runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # what a user would see as a traceback
            code, _ = "traceback", err.write(f"Traceback: {type(e).__name__}: {e}")
    out.append({"code": code, "stdout": std.getvalue(), "stderr": err.getvalue()})
print(json.dumps(out))
"""
"""Runs each file as ``__main__`` in turn in one process (runpy), so that torch and TransformerLens
are imported once, not 24 times at up to 10 s each on a busy machine; exit codes, stdout and
stderr are each file's own."""


def _run_all(cases: list[list[str]]) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_every_script_and_benchmark_has_a_bad_input_case():
    files = {str(p.relative_to(ROOT)) for d in ("benchmarks", "scripts") for p in (ROOT / d).glob("*.py")}
    assert files - HELPERS == set(BAD)


def test_help_exits_0_and_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "a_file").write_text("not json, not a folder")
    cases = [[f, *(a.replace("{tmp}", str(tmp_path)) for a in args)] for f, args in BAD.items()]
    results = _run_all([[f, "--help"] for f in BAD] + cases)
    for f, r in zip(BAD, results[: len(BAD)]):
        assert r["code"] == 0 and r["stdout"].startswith("usage:"), (f, r)
    for case, r in zip(cases, results[len(BAD) :]):
        assert r["code"] == 2, (case, r)
        assert r["stderr"].count("\n") == 1 and "error" in r["stderr"], (case, r["stderr"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written


@pytest.mark.parametrize("pattern", ["", "/abs/*.json"])
def test_report_globs_must_be_relative(pattern):
    from tests.scriptload import load_script
    from training.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="relative to docs/results"):
        load_script("interval_coverage").report_paths(pattern)


def test_alternating_rounds_reverse_the_order_every_other_round():
    """A machine that slows down steadily (each call 1% slower than the last) favours whoever runs
    first in a round; with the order reversed every other round, two equal candidates come out
    equal over an even number of rounds (the median of the per-round ratios is 1 to 1e-4), where a fixed
    order would give every round the same bias."""
    code = """
import sys; sys.path.insert(0, "benchmarks")
from timing import alternating_rounds, paired_ratio
calls = []
def candidate(name):
    def run(steps):
        calls.append(name)
        return 100.0 * 0.99 ** len(calls)  # steps/s falls with every call
    return run
out = alternating_rounds({"a": candidate("a"), "b": candidate("b")}, rounds=4, steps=10)
print("".join(calls), round(paired_ratio(out["a"], out["b"]), 6))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    order, ratio = r.stdout.split("\n")[-2].split()
    assert order == "ab" + "ab" + "ba" + "ab" + "ba"  # the warm-up, then A B, B A, A B, B A
    # rounds alternate 1/0.99 and 0.99, whose median is 1.00005; a fixed order gives 1/0.99 = 1.0101
    assert float(ratio) == pytest.approx(1.0, abs=1e-4)

"""The OthelloGPT arms script end to end at a tiny size on the CPU, and its comparison table."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "gpu" / "othello_arms.py")
WEIGHTS = {"raw", "ema", "ema9999", "bema", "extrap"}


@pytest.fixture(scope="module")
def tiny_arms(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arms")
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--tiny",
            "--device",
            "cpu",
            "--arms",
            "full,tied",
            "--probe-games",
            "200",
            "--json",
            str(tmp / "othello_arms_cpu_seed0.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp, json.loads((tmp / "othello_arms_cpu_seed0.json").read_text()), proc.stdout


def test_every_arm_carries_every_averager(tiny_arms):
    _, res, out = tiny_arms
    assert set(res["arms"]) == {"full", "tied"} and res["steps_per_arm"] == 20
    for arm in res["arms"].values():
        assert set(arm["weights"]) == WEIGHTS
        for w in arm["weights"].values():
            assert {len(v) for v in w["by_move"].values()} == {59}
            # the summaries are the means of the per-move values over moves 1..30 and 31..59
            by_move = w["by_move"]["legal_top1"]
            assert w["in_range"]["legal_top1"] == pytest.approx(sum(by_move[:30]) / 30, abs=1e-5)  # by_move: 5 decimals
            assert w["beyond"]["legal_top1"] == pytest.approx(sum(by_move[30:]) / 29, abs=1e-5)
        probes = arm["probes"]
        assert set(probes) == {"raw", "ema"} and set(probes["raw"]) == {"relative", "side"}
        assert all(len(h["by_move"]) == 59 for h in probes["raw"]["side"].values())
    # the tie acts only on positions past move 30, which training never sees: the two arms train
    # the same weights, so everything in range agrees exactly and only the beyond-range part moves
    full, tied = res["arms"]["full"]["weights"], res["arms"]["tied"]["weights"]
    for w in WEIGHTS:
        assert full[w]["in_range"] == tied[w]["in_range"]
        assert full[w]["by_move"]["legal_top1"][:30] == tied[w]["by_move"]["legal_top1"][:30]
    assert full["raw"]["by_move"]["legal_top1"][30:] != tied["raw"]["by_move"]["legal_top1"][30:]
    assert "all arms in" in out


def test_transplant_patching_on_the_full_arm(tiny_arms):
    """Patching the same-parity transplant into the full arm at moves 31 and 32: positions before
    move 31 are the same in both models, and causal attention keeps them so at every layer, so
    patching them recovers exactly nothing."""
    _, res, out = tiny_arms
    assert set(res["patching"]) == {"31", "32"}
    for m, e in res["patching"].items():
        assert e["games"] > 0 and "patching at move" in out
        if "resid_pre_recovery" in e:
            rec = e["resid_pre_recovery"]
            assert len(rec) == 2 and {len(row) for row in rec} == {int(m)}
            assert all(abs(x) < 1e-3 for row in rec for x in row[:30])
    assert any("resid_pre_recovery" in e for e in res["patching"].values())


def test_table_means_and_spreads_over_runs(tiny_arms, tmp_path):
    import numpy as np

    _, res, _ = tiny_arms
    (tmp_path / "othello_arms_cpu_seed0.json").write_text(json.dumps(res))
    other = copy.deepcopy(res)
    other["seed"] = 1
    for arm in other["arms"].values():
        for w in arm["weights"].values():
            w["beyond"]["legal_top1"] += 0.1  # a planted second seed, 0.1 higher beyond
    (tmp_path / "othello_arms_cpu_seed1.json").write_text(json.dumps(other))
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--table", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (tmp_path / "othello_arms_table.md").read_text()
    x = res["arms"]["tied"]["weights"]["bema"]["beyond"]["legal_top1"]
    # mean x + 0.05, sample SD of (x, x + 0.1) = 0.1 / sqrt(2)
    assert "| tied | bema | 2 | " in table and f"{x + 0.05:.4f} +- {0.1 / np.sqrt(2):.4f}" in table
    assert (tmp_path / "othello_arms.png").stat().st_size > 1000


def test_bad_arms_and_an_empty_results_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--arms", "full,bogus"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "unknown arm 'bogus'" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--table", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "no othello_arms_*.json" in proc.stderr and "Traceback" not in proc.stderr

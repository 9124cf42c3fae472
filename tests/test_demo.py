"""The demo job at a tiny size: every variant trains, tables, results and plot are written."""

import json

import pytest

from commands.train import main as train_main
from training import runs
from training.errors import WorkbenchError
from training.experiments.demo import VARIANTS, dedupe, run_demo

from .conftest import TINY

SMALL = [o for o in TINY if not o.startswith("model.")] + ["train.steps=20"]


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    assert train_main(["demo", "--out", str(out), "--quiet"] + _sets(SMALL)) == 0
    printed = capsys.readouterr().out
    for name in VARIANTS:
        assert (out / name / "final_metrics.json").exists()
    data = json.loads((out / "demo_results.json").read_text())
    assert {"baseline", "bema (avg)", "dropout_bema (avg)"} <= set(data["results"])
    assert (out / "demo.png").stat().st_size > 10_000
    table = (out / "demo_table.txt").read_text()
    assert "in-range" in table and "beyond" in table and "len   3*" in table
    # Averaging never changes training: raw weights of 'bema' equal the baseline's.
    assert "bema = baseline" in printed
    # Running again reuses the finished runs (same numbers); a different config is refused without --overwrite.
    again = run_demo(out, overrides=SMALL, progress=False)
    assert {k: v.to_dict() for k, v in again.results.items()} == data["results"]
    # and keeps each run's training seconds (those its checkpoint carries), not the rerun's
    for name in VARIANTS:
        stored = runs.load_trainer_state(out / name / runs.STATE)["train_seconds"]
        assert stored > 0 and again.seconds[name] >= round(stored, 1)
    with pytest.raises(WorkbenchError, match="different run"):
        run_demo(out, overrides=SMALL + ["train.lr=0.01"], progress=False)


def test_run_demo_returns_results_and_writes_only_runs(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, overrides=SMALL, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(VARIANTS)  # rendering is the caller's step
    assert set(result.results) >= {"baseline", "ema (avg)", "bema (avg)"}
    assert "TV" in result.tables() and "bema = baseline" in result.tables()


def test_dedupe_keeps_first_of_identical_results():
    class R:
        def __init__(self, v):
            self.values = {"tv": v}

    shown, same = dedupe({"a": R([1.0]), "b": R([2.0]), "c": R([1.0])})
    assert list(shown) == ["a", "b"] and same == {"c": "a"}

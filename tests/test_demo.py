"""The demo job at a tiny size: every variant trains, tables, results and plot are written."""

import json

import pytest

from training.demo import VARIANTS, dedupe, run_demo
from training.errors import WorkbenchError

from .conftest import TINY


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = [o for o in TINY if not o.startswith("model.")] + ["train.steps=20"]
    results = run_demo(out, overrides=overrides, progress=False)
    printed = capsys.readouterr().out
    for name in VARIANTS:
        assert (out / name / "final_metrics.json").exists()
    assert {"baseline", "bema (avg)", "dropout_bema (avg)"} <= set(results)
    data = json.loads((out / "demo_results.json").read_text())
    assert set(data["results"]) == set(results)
    assert (out / "demo.png").stat().st_size > 10_000
    table = (out / "demo_table.txt").read_text()
    assert "in-range" in table and "beyond" in table and "len   3*" in table
    # Averaging never changes training: raw weights of 'bema' equal the baseline's.
    assert "bema = baseline" in printed
    # Running again reuses the finished runs; a different config is refused without --overwrite.
    run_demo(out, overrides=overrides, progress=False)
    with pytest.raises(WorkbenchError, match="different run"):
        run_demo(out, overrides=overrides + ["train.lr=0.01"], progress=False)


def test_dedupe_keeps_first_of_identical_results():
    class R:
        def __init__(self, v):
            self.values = {"tv": v}

    shown, same = dedupe({"a": R([1.0]), "b": R([2.0]), "c": R([1.0])})
    assert list(shown) == ["a", "b"] and same == {"c": "a"}

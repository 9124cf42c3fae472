"""``python -m interp report`` and ``dim-scan`` end to end on tiny runs."""

import json
import math

import pytest

from commands.interp import main as interp_main
from training import runs
from training.trainer import train

from .conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = tiny_config("averaging.mode=bema", "train.steps=40")
    d = runs.create_run_dir(tmp_path_factory.mktemp("rep") / "run", cfg)
    train(cfg, d, progress=False)
    return d


def test_report_writes_summary_figures_and_html(tiny_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert interp_main(["report", str(tiny_run), "--out", str(out), "--sets", "32", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["metrics"]) == {"raw", "averaged"}
    assert {"none", "log_scale", "out_rescale"} <= set(summary["interventions"])
    assert summary["displacement"]["raw"]["max_decomposition_error"] < 1e-4
    for name in summary["files"]:
        assert (out / name).stat().st_size > 1000, name
    assert any(n.endswith(".html") for n in summary["files"]) and any(n.endswith(".svg") for n in summary["files"])
    readme = (out / "README.md").read_text()
    assert "metrics_vs_length.png" in readme and "attention_len" in readme
    per_length = json.loads((out / "per_length.json").read_text())
    assert len(per_length["metrics"]["raw"]["lengths"]) == 7


def test_report_bad_arguments(tmp_path, capsys):
    assert interp_main(["report", str(tmp_path / "missing")]) == 2
    assert interp_main(["dim-scan", "--out", str(tmp_path / "d"), "--d-models", "4,x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)
    assert not (tmp_path / "d").exists()


def test_dimension_scan_tiny(tmp_path, capsys):
    over = [
        "task.v=8",
        "task.train_max_len=3",
        "train.steps=20",
        "train.eval_every=20",
        "train.checkpoint_every=20",
        "train.final_eval_sets=32",
        "train.eval_sets=16",
        "train.device=cpu",
    ]
    args = [
        "dim-scan",
        "--out",
        str(tmp_path / "scan"),
        "--d-models",
        "4,8",
        "--d-heads",
        "2",
        "--target-tv",
        "1.0",
        "--quiet",
    ]
    for o in over:
        args += ["--set", o]
    assert interp_main(args) == 0
    result = json.loads((tmp_path / "scan" / "dimension_scan.json").read_text())
    assert [(c["d_model"], c["d_head"]) for c in result["cells"]] == [(4, 2), (8, 2)]
    assert result["smallest"]["d_model"] == 4  # target 1.0 is always reached: the smallest wins
    assert (tmp_path / "scan" / "dimension_scan.png").exists()
    assert "smallest reaching" in capsys.readouterr().out


def test_report_on_a_run_with_two_items(tmp_path, capsys):
    # v = 2: the only length is 1, so there is no gap(2) to print (this used to be a TypeError).
    cfg = tiny_config(
        "task.v=2", "task.train_max_len=1", "train.steps=10", "train.eval_every=10", "train.checkpoint_every=10"
    )
    run = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run, progress=False)
    assert interp_main(["report", str(run), "--sets", "16", "--quiet"]) == 0
    readme = (run / "report" / "README.md").read_text()
    assert "only length 1 exists (v = 2)" in readme
    assert json.loads((run / "report" / "summary.json").read_text())["displacement"]["raw"]["gap_at_2"] is None


def test_dimension_scan_refuses_a_stale_cell(tmp_path, capsys):
    # A second scan with other settings into the same folder used to reuse the finished runs of the first.
    over = [
        "task.v=8",
        "task.train_max_len=3",
        "train.steps=10",
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "train.final_eval_sets=16",
        "train.eval_sets=16",
        "train.device=cpu",
    ]
    args = ["dim-scan", "--out", str(tmp_path / "scan"), "--d-models", "4", "--d-heads", "2", "--quiet"]
    sets = [a for o in over for a in ("--set", o)]
    assert interp_main(args + sets) == 0
    first = json.loads((tmp_path / "scan" / "dimension_scan.json").read_text())
    capsys.readouterr()
    assert interp_main(args + sets + ["--set", "train.lr=0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a different run" in err[0]
    assert json.loads((tmp_path / "scan" / "dimension_scan.json").read_text()) == first  # nothing overwritten
    assert interp_main(args + sets + ["--set", "train.lr=0.01", "--overwrite"]) == 0
    second = json.loads((tmp_path / "scan" / "dimension_scan.json").read_text())
    assert second["cells"][0]["tv_in_range"] != first["cells"][0]["tv_in_range"]
    assert runs.read_run_config(tmp_path / "scan" / "dm4_dh2").train.lr == 0.01
    assert interp_main(args + sets + ["--set", "train.lr=0.01"]) == 0  # same config: reused


def test_report_on_a_post_norm_run_measures_every_average_and_the_mechanism(tmp_path):
    """A remedy run (Post-Norm, two named averagers) gets the whole report: every set of weights,
    an exact decomposition through the post-norm LayerNorms, and the mechanism table."""
    cfg = tiny_config(
        "model.normalization=LN",
        "model.norm_position=post",
        "train.steps=30",
        'averagers=[{"name": "ema", "mode": "ema", "decay": 0.9, "warmup": true}, '
        '{"name": "extrap", "mode": "extrapolation"}]',
    )
    run = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run, progress=False)
    assert interp_main(["report", str(run), "--sets", "16", "--quiet"]) == 0
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["weights"] == ["raw", "ema", "extrap"] and summary["patched_weights"] == "raw"
    assert summary["model_options"]["norm_position"] == "post"
    for k in ("raw", "ema", "extrap"):
        assert summary["displacement"][k]["max_decomposition_error"] < 1e-4
        mech = summary["mechanism"][k]
        assert 0 < mech["beyond"]["norm_entropy"] <= 1 and math.isfinite(mech["beyond"]["margin_law"])
        assert all(math.isfinite(c) for layer in mech["self_displacement_cv"] for c in layer)
    readme = (run / "report" / "README.md").read_text()
    assert "norm_position = post" in readme and "| extrap |" in readme

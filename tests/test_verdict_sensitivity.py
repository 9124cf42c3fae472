"""scripts/verdict_sensitivity.py: no widening for normal data (the t-interval is exact there), a
planted borderline claim changes verdict under skew and a clear one does not."""

import json

import numpy as np

from tests.scriptload import load_script

vs = load_script("verdict_sensitivity")


def test_normal_data_need_no_widening():
    rng = np.random.default_rng(0)
    stat = vs.studentized(lambda size: rng.normal(size=size), 10, 200_000)
    assert abs(vs.widen_factor(stat, 0.05, 10) - 1) < 0.02
    assert abs(vs.widen_factor(stat, 0.01, 10) - 1) < 0.04


def test_skew_widens_and_moves_only_the_borderline_claim():
    def claim(lo, hi, **kw):
        return {"claim": True, "contrast": "ema - raw", "target": "sampled", "measure": "tv", "part": "beyond",
                "estimate": (lo + hi) / 2, "ci_holm": [lo, hi], "n_configs": 10, "holm_alpha": 0.05 / 28,
                "delta": 0.02, **kw}  # fmt: skip

    report = {"effects": [
        claim(0.001, 0.041, verdict="harmful"),  # excludes 0 by 0.001: a wider interval reaches it
        claim(0.200, 0.240, verdict="harmful"),  # far from 0 and from delta
        claim(-0.005, 0.005, verdict="no practical effect"),  # 0.015 inside delta on each side
        claim(0.200, 0.240, verdict="supported", measure="legal_top1"),  # higher is better: turned
        {"claim": False, "contrast": "x", "estimate": 1.0, "ci95": [0.9, 1.1]},  # not a claim: skipped
    ]}  # fmt: skip
    rng = np.random.default_rng(1)
    rows = vs.sensitivity({"r": report}, vs.lognormal(0.5, rng), 100_000)
    assert len(rows) == 4
    assert all(r["factor"] > 1.2 for r in rows)  # lognormal(0.5) at n = 10 needs about 1.45
    assert [r["verdict_wide"] for r in rows] == ["inconclusive", "harmful", "no practical effect", "supported"]


def test_main_reads_reports_and_rejects_bad_input(tmp_path, capsys):
    assert vs.main(["--reports", "study_formal/dyck-1/study_report.json", "--sims", "2000",
                    "--json", str(tmp_path / "s.json")]) == 0  # fmt: skip
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["claims"] and all(c["factor"] > 1 for c in out["claims"])
    capsys.readouterr()
    for argv in (["--sigma", "0"], ["--reports", "nothing/*.json"]):
        assert vs.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1

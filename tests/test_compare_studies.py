"""scripts/compare_studies.py: planted pairs of study reports with known differences."""

import json
import math

from tests.scriptload import load_script

cs = load_script("compare_studies")


def _effect(contrast, estimate, verdict=None, claim=True, part="beyond", **kw):
    e = {"family": "averaging", "contrast": contrast, "target": "sampled", "part": part, "measure": "tv"}
    return {**e, "claim": claim, "estimate": estimate, "verdict": verdict, "per_config": [estimate], **kw}


def _write(tmp_path, name, effects):
    d = tmp_path / name
    d.mkdir()
    (d / "study_report.json").write_text(json.dumps({"effects": effects}))
    return d


def test_planted_changes_are_found(tmp_path, capsys):
    a = _write(tmp_path, "a", [
        _effect("ema - raw", -0.010, "supported"),
        _effect("bema - raw", 0.050, "harmful"),
        _effect("ema - raw", 0.300, claim=False, part="in_range"),
        _effect("extrap - raw", 0.0, "inconclusive"),
    ])  # fmt: skip
    b = _write(tmp_path, "b", [
        _effect("ema - raw", -0.0125, "supported"),  # moved by 0.0025, same verdict
        _effect("bema - raw", 0.010, "inconclusive"),  # moved by 0.04, verdict changed
        _effect("ema - raw", 0.250, claim=False, part="in_range"),  # a non-claim moved by 0.05
        _effect("anneal - baseline", 0.0, "inconclusive"),
    ])  # fmt: skip
    out = tmp_path / "c.json"
    assert cs.main([str(a), str(b / "study_report.json"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    c = json.loads(out.read_text())
    assert (c["n_claims"], c["n_effects"], c["verdicts_changed"]) == (2, 3, 1)
    assert math.isclose(c["largest_claim_change"], 0.04) and math.isclose(c["largest_effect_change"], 0.05)
    assert "in_range" in c["largest_effect"] and c["identical"] is False
    assert c["only_a"] == ["averaging extrap - raw sampled beyond tv"]
    assert c["only_b"] == ["averaging anneal - baseline sampled beyond tv"]
    assert "harmful -> inconclusive  <- changed" in text
    assert text.count("<- changed") == 1


def test_identical_reports_and_nan_claims(tmp_path, capsys):
    effects = [_effect("ema - raw", float("nan"), "inconclusive"), _effect("bema - raw", 0.1, "harmful")]
    a, b = _write(tmp_path, "a", effects), _write(tmp_path, "b", effects)
    out = tmp_path / "c.json"
    assert cs.main([str(a), str(b), "--json", str(out)]) == 0
    c = json.loads(out.read_text())  # strict JSON: the NaN estimate is null
    assert c["identical"] is True and c["largest_claim_change"] == 0.0
    assert c["claims"][0]["estimate_a"] is None
    # one digit in one config's value is enough to say "not identical"
    moved = [effects[0], {**effects[1], "per_config": [0.1000000001]}]
    assert cs.main([str(a), str(_write(tmp_path, "m", moved))]) == 0
    assert "identical to the last digit: no" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "study_report.json").write_text("{}")
    for arg in (str(tmp_path / "missing"), str(tmp_path / "bad")):
        assert cs.main([arg, arg]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot read a study report") and err.count("\n") == 1

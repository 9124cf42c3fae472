"""scripts/cross_task_table.py: the cells read from planted study reports."""

import json

from tests.scriptload import load_script

ctt = load_script("cross_task_table")


def _effect(family, contrast, measure="tv", target="sampled", claim=True, **kw):
    e = {"family": family, "contrast": contrast, "measure": measure, "part": "beyond", "target": target}
    return {**e, "claim": claim, **kw}


def test_cells_come_from_the_first_report_with_the_contrast(tmp_path, capsys):
    a = {
        "effects": [
            _effect("averaging", "ema - raw", estimate=-0.01, ci_holm=[-0.015, -0.005], verdict="supported"),
            _effect("averaging", "ema - raw", part="in_range", estimate=9, ci_holm=[9, 9], verdict="harmful"),
            _effect("dropout", "dropout 0.1 - 0", "norm_entropy", claim=False, estimate=0.1, ci95=[0.05, 0.15]),
        ],
        "levels": [{"variant": "baseline", "target": "sampled", "beyond pos_acc": 0.5, "beyond norm_entropy": 0.75}],
    }
    b = {"effects": [_effect("remedy", "out_rescale - baseline", estimate=0.001, ci_holm=[-0.002, 0.004],
                             verdict="no practical effect", within_delta=True)]}  # fmt: skip
    for name, report in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study_report.json").write_text(json.dumps(report))
    assert ctt.main(["--row", f"task={tmp_path / 'a'},{tmp_path / 'b'}"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    head = ["task", *(c[0] for c in ctt.COLUMNS), "accuracy beyond", "entropy beyond"]
    cells = dict(zip(head, [c.strip("| ") for c in row]))
    assert cells["EMA"] == "-0.0100 [-0.0150, -0.0050] helps"
    assert cells["output rescale"] == "+0.0010 [-0.0020, +0.0040] none"
    assert cells["dropout on entropy"] == "+0.1000 [+0.0500, +0.1500] 95%"
    assert cells["BEMA"] == "-"
    assert (cells["accuracy beyond"], cells["entropy beyond"]) == ("0.500", "0.750")
    assert ctt.main(["--row", "nothing"]) == 2


def test_tally_counts_each_claims_verdicts_across_rows(tmp_path, capsys):
    def report(ema=None, bema=None):
        effects = []
        for contrast, v in (("ema - raw", ema), ("bema - raw", bema)):
            if v == "kept none":  # a claim that no config met the region for: no interval
                effects.append(_effect("averaging", contrast, estimate=float("nan"), verdict="inconclusive"))
            elif v is not None:
                verdict, small = v
                effects.append(_effect("averaging", contrast, estimate=0.0, ci_holm=[-1, 1], verdict=verdict,
                                       within_delta=small))  # fmt: skip
        return {"effects": effects}

    # four rows: EMA helps twice (once within delta), is harmful once and kept no config once;
    # BEMA is none on one row, inconclusive on one, and absent from two
    rows = [
        report(ema=("supported", True), bema=("no practical effect", True)),
        report(ema=("supported", False), bema=("inconclusive", False)),
        report(ema=("harmful", False)),
        report(ema="kept none"),
    ]
    args = []
    for i, r in enumerate(rows):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "study_report.json").write_text(json.dumps(r))
        args += ["--row", f"t{i}={tmp_path / str(i)}"]
    assert ctt.main([*args, "--tally"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    counts = {}
    for line in lines[lines.index("| claim | helps | hurts | none | ? | no verdict | not run |") + 2 :]:
        name, *rest = [c.strip() for c in line.strip("|").split("|")]
        counts[name] = rest
    assert counts["EMA"] == ["2 (1*)", "1", "0", "0", "1", "0"]
    assert counts["BEMA"] == ["0", "0", "1", "1", "0", "2"]
    assert counts["Post-Norm"] == ["0", "0", "0", "0", "0", "4"]


def _remedies_report(tmp_path, name, targets):
    effects = [
        _effect("remedy", c, target=t, estimate=est, ci_holm=[est - 0.01, est + 0.01], verdict=v)
        for t in targets
        for c, est, v in (
            ("postnorm - baseline", -0.05, "supported"),
            ("out_rescale - baseline", 0.002, "no practical effect"),
        )
    ]
    (tmp_path / name).mkdir()
    (tmp_path / name / "study_report.json").write_text(json.dumps({"effects": effects, "levels": []}))
    return f"{name}={tmp_path / name}"


def test_remedies_table_gives_both_targets_in_words_and_skips_rows_without_remedies(tmp_path, capsys):
    rows = [_remedies_report(tmp_path, "sc", ["sampled"]), _remedies_report(tmp_path, "lang", ["sampled", "exact"])]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "study_report.json").write_text(json.dumps({"effects": [_effect("averaging", "ema - raw")]}))
    args = [a for r in [*rows, f"plain={tmp_path / 'plain'}"] for a in ("--row", r)]
    assert ctt.main([*args, "--remedies"]) == 0
    out = capsys.readouterr().out
    body = out[out.index("| task | contrast | sampled | exact |") :].strip().splitlines()[2:]
    assert body == [
        "| sc | Post-Norm - baseline | -0.0500 [-0.0600, -0.0400] supported | - |",
        "| sc | output rescale - baseline | +0.0020 [-0.0080, +0.0120] no practical effect | - |",
        "| lang | Post-Norm - baseline | -0.0500 [-0.0600, -0.0400] supported | -0.0500 [-0.0600, -0.0400] supported |",
        "| lang | output rescale - baseline | +0.0020 [-0.0080, +0.0120] no practical effect"
        " | +0.0020 [-0.0080, +0.0120] no practical effect |",
    ]


def test_embed_replaces_only_the_marked_blocks_and_writes_nothing_when_a_marker_is_missing(tmp_path, capsys):
    row = _remedies_report(tmp_path, "lang", ["sampled", "exact"])
    page = tmp_path / "page.md"
    before = (
        "# title\n\nprose stays\n\n<!-- cross_task_table: remedies -->\n| old | table |\n<!-- /cross_task_table -->\n"
        "\nmiddle prose\n<!-- cross_task_table: table -->\nstale\n<!-- /cross_task_table -->\nend prose\n"
    )
    page.write_text(before)
    assert ctt.main(["--row", row, "--remedies", "--embed", str(page)]) == 0
    out = capsys.readouterr().out
    text = page.read_text()
    assert "| old | table |" not in text and "stale" not in text
    for kept in ("# title\n\nprose stays\n\n", "\nmiddle prose\n", "end prose\n"):
        assert kept in text
    remedies = text.split("<!-- cross_task_table: remedies -->\n")[1].split("<!-- /cross_task_table -->")[0]
    assert remedies.startswith("| task | contrast | sampled | exact |\n") and remedies.count("| lang |") == 2
    assert remedies in out  # the page and stdout say the same
    # asking for the tally too: the page has no tally marker, so it is left exactly as it was
    assert ctt.main(["--row", row, "--tally", "--embed", str(page)]) == 2
    assert "cross_task_table: tally -->" in capsys.readouterr().err
    assert page.read_text() == text


def test_levels_of_a_baseline_with_no_config_kept_are_dashes_not_nan():
    report = {"levels": [{"variant": "baseline", "target": "sampled", "beyond pos_acc": float("nan"),
                          "beyond norm_entropy": float("nan")}]}  # fmt: skip
    assert ctt.levels([report]) == ("-", "-")

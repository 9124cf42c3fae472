"""The paired study's statistics against hand-computed values and planted effects."""

from __future__ import annotations

import numpy as np
import pytest

from interp.analysis.study_report import analyse
from interp.analysis.study_stats import cluster_bootstrap, configs_needed, holm_adjusted, holm_levels, verdict


def test_holm_against_a_hand_computed_case():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm_adjusted(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # step-down at alpha 0.05: 0.005 <= 0.0125 rejected, 0.01 <= 0.0167 rejected, 0.03 > 0.025
    # kept, so it and 0.04 both keep level 0.025
    assert holm_levels(p) == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])
    # rejected at its level exactly when the adjusted p-value is at most alpha
    assert [pv <= lvl for pv, lvl in zip(p, holm_levels(p))] == [a <= 0.05 for a in holm_adjusted(p)]


def test_holm_with_ties_against_hand_computed_cases():
    # two claims tie at 0.01 (as bootstrap p-values tie at their floor): both take the level of
    # the first rank they share, 0.05 / 3 (not 0.05 / 3 and 0.05 / 2 by list order); both are
    # rejected (0.01 <= 0.0167), so 0.04 is tested at 0.05 / 1
    assert holm_levels([0.01, 0.01, 0.04]) == pytest.approx([0.05 / 3, 0.05 / 3, 0.05])
    assert holm_levels([0.04, 0.01, 0.01]) == pytest.approx([0.05, 0.05 / 3, 0.05 / 3])  # order-free
    # a tie that is not rejected at 0.0167 fixes that level for itself and everything after
    assert holm_levels([0.02, 0.5, 0.02]) == pytest.approx([0.05 / 3] * 3)
    # 36 claims at the floor of 10,000 resamples: one level for all, the strictest, 0.05 / 36
    assert holm_levels([1e-4] * 36) == pytest.approx([0.05 / 36] * 36)
    # a NaN p-value (an effect without spread) ranks last, whatever its place in the list
    assert holm_levels([float("nan"), 0.01, 0.01]) == pytest.approx([0.05, 0.05 / 3, 0.05 / 3])
    # the adjusted p-values were already tie-free: equal p, equal adjusted p
    assert holm_adjusted([0.01, 0.01, 0.04]) == pytest.approx([0.03, 0.03, 0.04])


def test_verdicts():
    assert verdict(-0.03, -0.01, 0.02) == "supported"
    assert verdict(0.001, 0.05, 0.02) == "harmful"
    assert verdict(-0.01, 0.015, 0.02) == "no practical effect"
    assert verdict(-0.03, 0.01, 0.02) == "inconclusive"
    assert verdict(float("nan"), 0.01, 0.02) == "inconclusive"


def test_comparison_words():
    from interp.analysis.study_report import comparison

    assert comparison(-0.05, -0.03, 0.02) == "variant lower"
    assert comparison(-0.015, -0.005, 0.02) == "variant lower, by less than delta"
    assert comparison(0.01, 0.04, 0.02) == "variant higher"
    assert comparison(-0.01, 0.015, 0.02) == "no practical difference"
    assert comparison(-0.03, 0.01, 0.02) == "inconclusive"


def test_cluster_bootstrap_matches_the_standard_error_of_a_mean():
    x = np.random.default_rng(1).normal(0.3, 0.05, size=40)
    b = cluster_bootstrap(x, n_boot=20000, seed=2)
    assert b.estimate == pytest.approx(x.mean())
    # the bootstrap SD of a mean is the plug-in standard error sd_pop / sqrt(n)
    assert np.std(b.samples) == pytest.approx(np.std(x) / np.sqrt(len(x)), rel=0.03)
    lo, hi = b.interval()
    assert lo < x.mean() < hi
    assert b.p_value() == pytest.approx(1 / 20000)  # every resample above 0
    assert configs_needed(0.02, 0.01) == 16  # (1.96 * 0.02 / 0.01)^2 = 15.4


def test_stratified_bootstrap_keeps_only_the_within_stratum_spread():
    # two strata of 10 configs, constant within each: the stratified mean cannot vary at all,
    # while resampling across strata spreads it by sd_pop / sqrt(n) = 0.05 / sqrt(20)
    x = np.array([0.0] * 10 + [0.1] * 10)
    labels = [1] * 10 + [2] * 10
    b = cluster_bootstrap(x, n_boot=5000, seed=0, strata=labels)
    assert b.estimate == pytest.approx(0.05)
    assert np.ptp(b.samples) == pytest.approx(0.0, abs=1e-12)
    assert b.sd == 0.0
    plain = cluster_bootstrap(x, n_boot=20000, seed=0)
    assert np.std(plain.samples) == pytest.approx(0.05 / np.sqrt(20), rel=0.03)


def test_stratified_bootstrap_matches_the_stratified_standard_error():
    rng = np.random.default_rng(3)
    a, c = rng.normal(0.0, 0.02, size=12), rng.normal(0.15, 0.05, size=8)
    x, labels = np.concatenate([a, c]), ["one"] * 12 + ["two"] * 8
    b = cluster_bootstrap(x, n_boot=40000, seed=1, strata=labels)
    # Var(mean) = sum_s (n_s / n)^2 * sd_pop_s^2 / n_s, the plug-in variance of a stratified mean
    n = len(x)
    se = np.sqrt((12 / n) ** 2 * np.var(a) / 12 + (8 / n) ** 2 * np.var(c) / 8)
    assert b.estimate == pytest.approx(x.mean())
    assert np.std(b.samples) == pytest.approx(se, rel=0.03)
    # the pooled within-stratum SD, by hand
    pooled = np.sqrt((((a - a.mean()) ** 2).sum() + ((c - c.mean()) ** 2).sum()) / (n - 2))
    assert b.sd == pytest.approx(pooled)
    # a failed config (NaN) leaves with its label; a stratum of one config drops the strata
    x[0] = np.nan
    assert cluster_bootstrap(x, n_boot=100, strata=labels).per_config.shape == (19,)
    lone = cluster_bootstrap([0.0, 0.1, 0.2, 1.0], n_boot=2000, strata=[1, 1, 1, 2])
    assert lone.strata is None and np.std(lone.samples) > 0.1


SPEC = {
    "seeds": [0, 1],
    "dropouts": [0.0, 0.1],
    "targets": ["sampled", "exact"],
    "averagers": [{"name": "ema"}, {"name": "bema"}],
    "delta": 0.02,
    "region": {"metric": "tv", "range": "in_range", "max": 0.05},
}


def planted_records(n_configs: int = 12, seed: int = 0, unconverged: int | None = None) -> list[dict]:
    """Arm records with known effects on beyond-range TV and calibrated TV:
    bema - raw = -0.05 (sampled) and -0.01 (exact), so the noise interaction is -0.04;
    ema - raw = 0; dropout 0.1 - 0 = +0.05 (harmful). Configs differ by a large offset (SD 0.1),
    seeds by 0.01, and each paired difference carries noise of SD 0.002."""
    rng = np.random.default_rng(seed)
    records = []
    for c in range(n_configs):
        offset = rng.normal(0, 0.1)
        for s in SPEC["seeds"]:
            seed_off = rng.normal(0, 0.01)
            for p in SPEC["dropouts"]:
                for t in SPEC["targets"]:
                    base = 0.4 + offset + seed_off + (0.05 if p else 0.0)
                    effects = {"raw": 0.0, "ema": 0.0, "bema": -0.05 if t == "sampled" else -0.01}
                    weights = {}
                    for w, eff in effects.items():
                        tv = base + eff + rng.normal(0, 0.002)
                        in_tv = 0.5 if unconverged == c else 0.01
                        weights[w] = {
                            "summary": {
                                "in_range": {"tv": in_tv, "cal_tv": in_tv},
                                "beyond": {"tv": tv, "cal_tv": tv + 0.1, "norm_entropy": 0.99},
                            },
                            "model": {"sd_cv": 0.1},
                        }
                    records.append(
                        {"config": c, "seed": s, "dropout": p, "target": t, "error": None, "weights": weights}
                    )
    return records


def _effect(result, family, contrast, target, measure="tv", part="beyond"):
    return next(
        e
        for e in result["effects"]
        if e["family"] == family
        and e["contrast"] == contrast
        and e["target"] == target
        and e["measure"] == measure
        and e["part"] == part
    )


def test_planted_effects_are_recovered_with_the_right_verdicts():
    result = analyse(planted_records(), SPEC, 12, n_boot=4000)
    for measure in ("tv", "cal_tv"):
        cases = [
            ("averaging", "bema - raw", "sampled", -0.05, "supported"),
            ("averaging", "bema - raw", "exact", -0.01, "supported"),
            ("averaging", "ema - raw", "sampled", 0.0, "no practical effect"),
            ("dropout", "dropout 0.1 - 0", "sampled", 0.05, "harmful"),
            ("noise", "(bema - raw) sampled - exact", "both", -0.04, "supported"),
            ("noise", "(ema - raw) sampled - exact", "both", 0.0, "no practical effect"),
        ]
        for family, contrast, target, planted, expected in cases:
            e = _effect(result, family, contrast, target, measure)
            lo, hi = e["ci_holm"]
            assert lo <= planted <= hi, (contrast, target, measure, e["ci_holm"])
            assert e["verdict"] == expected, (contrast, target, measure, e["verdict"])
            assert e["claim"] and e["n_configs"] == 12
    # 2 averagers x 2 targets + 1 rate x 2 targets + 2 interactions = 8 per measure, plus dispersion x 2
    assert result["n_claims"] == 8 * 2 + 2
    assert result["budget"]["averaging"]["met"] and result["budget"]["dropout"]["met"]


def test_unconverged_configs_and_failed_arms_are_reported_not_pooled():
    records = planted_records(unconverged=3)
    records[5]["error"] = "TrainingDiverged: loss became nan"
    del records[5]["weights"]
    result = analyse(records, SPEC, 12, n_boot=2000)
    assert result["kept_configs"] == [c for c in range(12) if c != 3]
    assert "0.5000 > 0.05" in result["excluded_configs"][0]["reason"]
    arm = f"dropout {records[5]['dropout']:g}, {records[5]['target']}"
    assert result["failures"][arm] == {"failed": 1, "of": 24}
    assert _effect(result, "averaging", "bema - raw", "sampled")["n_configs"] == 11


def test_too_few_configs_give_no_verdict():
    result = analyse(planted_records(n_configs=3), SPEC, 3, n_boot=2000)
    assert {e["verdict"] for e in result["effects"] if e["claim"]} == {"inconclusive"}


def test_a_planted_remedy_is_paired_against_the_baseline_variant():
    """Variant 'fix' lowers beyond-range TV by 0.04 at dropout 0; variant 'same' changes nothing."""
    spec = {
        **SPEC,
        "variants": {"baseline": [], "fix": ["model.ssmax=true"], "same": []},
        "contrasts": [["same", "fix"]],
    }
    records = planted_records()
    extra = []
    for r in records:
        if r["dropout"] != 0.0:
            continue
        for variant, shift in (("fix", -0.04), ("same", 0.0)):
            weights = {
                w: {
                    "summary": {
                        part: {m: v + (shift if part == "beyond" else 0.0) for m, v in d.items()}
                        for part, d in rec["summary"].items()
                    }
                }
                for w, rec in r["weights"].items()
            }
            extra.append({**r, "variant": variant, "weights": weights})
    result = analyse(records + extra, spec, 12, n_boot=4000)
    fix = _effect(result, "remedy", "fix - baseline", "sampled")
    assert fix["ci_holm"][0] <= -0.04 <= fix["ci_holm"][1] and fix["verdict"] == "supported"
    same = _effect(result, "remedy", "same - baseline", "exact", measure="cal_tv")
    assert same["estimate"] == pytest.approx(0.0, abs=1e-12) and same["verdict"] == "no practical effect"
    # a contrast between two variants, neither the reference: same - fix is 0 - (-0.04) = +0.04, a claim
    contrast = _effect(result, "remedy", "same - fix", "sampled")
    assert contrast["estimate"] == pytest.approx(0.04, abs=1e-12) and contrast["claim"]
    assert contrast["verdict"] == "harmful"
    # the other families still read the baseline variant only
    assert _effect(result, "averaging", "bema - raw", "sampled")["verdict"] == "supported"
    # versus: a variant's raw weights against the baseline's averages, same cells. fix - bema is
    # -0.04 - (-0.05) = +0.01 with sampled targets and -0.04 - (-0.01) = -0.03 with exact ones
    for target, planted in (("sampled", 0.01), ("exact", -0.03)):
        e = _effect(result, "versus", "fix - baseline bema", target)
        assert e["estimate"] == pytest.approx(planted, abs=0.002) and not e["claim"]
        assert e["ci95"][0] <= planted <= e["ci95"][1]
    inter = _effect(result, "versus", "(fix - baseline bema) sampled - exact", "both")  # +0.01 - (-0.03)
    assert inter["estimate"] == pytest.approx(0.04, abs=0.002) and inter["ci95"][0] <= 0.04 <= inter["ci95"][1]
    same = _effect(result, "versus", "same - baseline ema", "sampled")  # 0, up to the planted noise
    assert same["ci95"][0] <= 0.0 <= same["ci95"][1] and abs(same["estimate"]) < 0.002
    from interp.analysis.study_report import format_report

    lines = format_report(result, "x").splitlines()
    assert any(
        x.startswith("same - baseline ema [sampled]: TV") and x.endswith("no practical difference") for x in lines
    )
    assert any(x.startswith("fix - baseline bema [exact]: TV") and x.endswith("variant lower") for x in lines)


def test_averaging_within_a_variant_and_at_dropout_0_alone():
    """Planted: within variant 'fix' BEMA gains 0.03 less than within the baseline (-0.02 against
    -0.05, sampled); EMA gains 0.02 at dropout 0.1 only, so its pooled effect is -0.01 and its
    dropout-0 effect 0. The 'within' effects recover each, outside the Holm family."""
    spec = {**SPEC, "variants": {"baseline": [], "fix": ["model.ssmax=true"]}}
    records = []
    for r in planted_records():
        weights = {w: {"summary": {k: dict(d) for k, d in rec["summary"].items()}} for w, rec in r["weights"].items()}
        if r["dropout"] != 0.0:
            weights["ema"]["summary"]["beyond"]["tv"] -= 0.02
        records.append({**r, "weights": weights})
        fix = {w: {"summary": {k: dict(d) for k, d in rec["summary"].items()}} for w, rec in weights.items()}
        if r["target"] == "sampled":
            fix["bema"]["summary"]["beyond"]["tv"] += 0.03
        records.append({**r, "variant": "fix", "weights": fix})
    result = analyse(records, spec, 12, n_boot=4000)
    cases = [
        ("bema - raw (fix)", "sampled", -0.02),
        ("bema - raw (fix)", "exact", -0.01),
        ("ema - raw (dropout 0)", "sampled", 0.0),
        ("bema - raw (dropout 0)", "sampled", -0.05),
    ]
    for contrast, target, planted in cases:
        e = _effect(result, "within", contrast, target)
        assert e["ci95"][0] <= planted <= e["ci95"][1] and not e["claim"], (contrast, target, e["ci95"])
        assert e["estimate"] == pytest.approx(planted, abs=0.003)
    pooled = _effect(result, "averaging", "ema - raw", "sampled")
    assert pooled["estimate"] == pytest.approx(-0.01, abs=0.003)
    noise0 = _effect(result, "within", "(bema - raw) sampled - exact (dropout 0)", "both")
    assert noise0["estimate"] == pytest.approx(-0.04, abs=0.003)
    from interp.analysis.study_report import format_report

    lines = format_report(result, "x").splitlines()
    assert any(x.startswith("bema - raw (fix) [sampled]: TV") and x.endswith("average lower") for x in lines)


def test_a_real_but_small_effect_is_marked_as_below_delta():
    """bema - raw planted at -0.01 with exact targets: supported, and inside +-delta."""
    from interp.analysis.study_report import format_report

    result = analyse(planted_records(), SPEC, 12, n_boot=4000)
    e = _effect(result, "averaging", "bema - raw", "exact")
    assert e["verdict"] == "supported" and e["within_delta"]
    assert not _effect(result, "averaging", "bema - raw", "sampled")["within_delta"]
    line = next(x for x in format_report(result, "x").splitlines() if x.startswith("bema - raw [exact]: TV"))
    assert "* supported" in line


def test_strata_recover_a_planted_moderator_and_narrow_the_interval():
    """Dropout's planted +0.05 becomes +0.01 for one-head configs and +0.09 for two-head ones:
    the per-stratum means recover both, the pooled estimate stays 0.05, and resampling within
    strata removes the between-strata spread from its interval."""
    from interp.analysis.study_report import format_report

    records = planted_records(n_configs=12)
    configs = [{"model.n_heads": 1 + c % 2} for c in range(12)]
    for r in records:
        if r["dropout"]:
            shift = -0.04 if configs[r["config"]]["model.n_heads"] == 1 else 0.04
            for rec in r["weights"].values():
                rec["summary"]["beyond"]["tv"] += shift
    plain = _effect(analyse(records, SPEC, 12, n_boot=4000), "dropout", "dropout 0.1 - 0", "sampled")
    result = analyse(records, {**SPEC, "strata": ["model.n_heads"]}, 12, n_boot=4000, configs=configs)
    e = _effect(result, "dropout", "dropout 0.1 - 0", "sampled")
    assert e["estimate"] == pytest.approx(plain["estimate"]) == pytest.approx(0.05, abs=0.002)
    assert e["by_stratum"]["n_heads=1"] == pytest.approx(0.01, abs=0.002)
    assert e["by_stratum"]["n_heads=2"] == pytest.approx(0.09, abs=0.002)
    width = lambda x: x["ci95"][1] - x["ci95"][0]  # noqa: E731
    # between strata the values differ by 0.08 (plain SE about 0.04 / sqrt(12) = 0.012); within,
    # only the pair noise remains (about 0.002 / sqrt(2 seeds), over 12 configs)
    assert width(plain) > 0.03 and width(e) < 0.005
    assert e["ci95"][0] <= 0.05 <= e["ci95"][1]
    assert e["sd"] < 0.003 < plain["sd"]
    text = format_report(result, "x")
    assert "within strata of model.n_heads (the design balanced" in text
    assert "claims by stratum" in text
    with pytest.raises(ValueError):
        analyse(records, {**SPEC, "strata": ["model.n_heads"]}, 12, n_boot=100)


OTHELLO_SPEC = {
    "seeds": [0],
    "dropouts": [0.0, 0.1],
    "targets": ["sampled", "exact"],
    "variants": {"baseline": [], "anneal": []},
    "averagers": [{"name": "ema"}, {"name": "bema"}],
    "deltas": {"tv": 0.02, "cal_tv": 0.02, "legal_top1": 0.01},
    "region": {"metric": "legal_top1", "range": "in_range", "min": 0.8},
    "interval": "t",
}


def othello_records(n_configs: int = 10, seed: int = 0) -> list[dict]:
    """Othello-shaped arm records with known effects beyond range: EMA raises legal top-1 by 0.03
    and lowers TV by 0.03 (both as predicted); BEMA lowers legal top-1 by 0.03 (against); the
    'anneal' variant raises legal top-1 by 0.04 and changes TV by nothing; dropout 0.1 changes
    nothing. Config offsets SD 0.05, pair noise SD 0.002. Config 0's baseline is at in-range
    legal top-1 0.7, below the region's bound, and must be left out."""
    rng = np.random.default_rng(seed)
    records = []
    for c in range(n_configs):
        offset = rng.normal(0, 0.05)
        for v in OTHELLO_SPEC["variants"]:
            for p in OTHELLO_SPEC["dropouts"]:
                for t in OTHELLO_SPEC["targets"]:
                    weights = {}
                    for w, (d_legal, d_tv) in {"raw": (0, 0), "ema": (0.03, -0.03), "bema": (-0.03, 0)}.items():
                        legal = 0.45 + offset + d_legal + (0.04 if v == "anneal" else 0) + rng.normal(0, 0.002)
                        tv = 0.7 - offset + d_tv + rng.normal(0, 0.002)
                        weights[w] = {
                            "summary": {
                                "in_range": {"tv": 0.3, "cal_tv": 0.3, "legal_top1": 0.7 if c == 0 else 0.9},
                                "beyond": {"tv": tv, "cal_tv": tv - 0.1, "legal_top1": legal},
                            }
                        }
                    records.append(
                        {
                            "config": c,
                            "seed": 0,
                            "dropout": p,
                            "target": t,
                            "variant": v,
                            "error": None,
                            "weights": weights,
                        }
                    )
    return records


def test_planted_othello_effects_are_recovered_with_the_right_verdicts():
    """Legal top-1 is a claim measure where higher is as predicted: a planted rise is 'supported',
    a planted fall 'harmful', each with its own delta; the region bounds legal top-1 from below;
    the intervals are the study file's cluster t-intervals."""
    result = analyse(othello_records(), OTHELLO_SPEC, 10, n_boot=4000)
    assert result["interval"] == "t" and result["kept_configs"] == list(range(1, 10))
    assert result["excluded_configs"][0]["config"] == 0
    cases = [
        ("averaging", "ema - raw", "sampled", "legal_top1", 0.03, "supported"),
        ("averaging", "ema - raw", "exact", "tv", -0.03, "supported"),
        ("averaging", "bema - raw", "sampled", "legal_top1", -0.03, "harmful"),
        ("averaging", "bema - raw", "exact", "cal_tv", 0.0, "no practical effect"),
        ("remedy", "anneal - baseline", "sampled", "legal_top1", 0.04, "supported"),
        ("remedy", "anneal - baseline", "exact", "tv", 0.0, "no practical effect"),
        ("dropout", "dropout 0.1 - 0", "sampled", "legal_top1", 0.0, "no practical effect"),
        ("noise", "(ema - raw) sampled - exact", "both", "legal_top1", 0.0, "no practical effect"),
    ]
    for family, contrast, target, measure, planted, expected in cases:
        e = _effect(result, family, contrast, target, measure)
        lo, hi = e["ci_holm"]
        assert lo <= planted <= hi, (contrast, target, measure, e["ci_holm"])
        assert e["verdict"] == expected, (contrast, target, measure, e["verdict"])
        assert e["delta"] == OTHELLO_SPEC["deltas"][measure]
    # 3 measures x (2 averagers x 2 targets + 1 rate x 2 + 1 variant x 2 + 2 interactions)
    assert result["n_claims"] == 3 * 10
    # the levels the effects are differences of: the raw dropout-0 arm's mean over kept configs
    recs = othello_records()
    for variant in ("baseline", "anneal"):
        want = np.mean(
            [
                r["weights"]["raw"]["summary"]["beyond"]["legal_top1"]
                for r in recs
                if r["config"] != 0 and r["variant"] == variant and r["dropout"] == 0 and r["target"] == "exact"
            ]
        )
        row = next(x for x in result["levels"] if x["variant"] == variant and x["target"] == "exact")
        assert row["beyond legal_top1"] == pytest.approx(want) and row["in_range legal_top1"] == pytest.approx(0.9)
    # the versus effect (anneal's raw weights against the reference's EMA) is reported, not claimed
    versus = _effect(result, "versus", "anneal - baseline ema", "sampled", "legal_top1")
    assert not versus["claim"] and versus["estimate"] == pytest.approx(0.01, abs=0.003)


def test_t_quantiles_against_closed_forms_and_tables():
    from interp.analysis.study_stats import t_quantile, t_sf2

    # df 1 is the Cauchy: P(|T| >= t) = 1 - 2 atan(t) / pi; df 2: t = (2p - 1) / sqrt(2p(1 - p))
    assert t_quantile(0.05, 1) == pytest.approx(np.tan(np.pi * 0.475), rel=1e-9)
    p = 1 - 0.001 / 2
    assert t_quantile(0.001, 2) == pytest.approx((2 * p - 1) / np.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert t_sf2(1.0, 1) == pytest.approx(1 - 2 * np.arctan(1.0) / np.pi, rel=1e-12)
    # printed tables: t(5, 0.975) = 2.5706, t(10, 0.995) = 3.1693; large df tends to the normal
    assert t_quantile(0.05, 5) == pytest.approx(2.570582, abs=1e-6)
    assert t_quantile(0.01, 10) == pytest.approx(3.169273, abs=1e-6)
    assert t_quantile(0.05, 1e7) == pytest.approx(1.959964, abs=1e-5)


def test_cluster_t_interval_keeps_its_coverage_with_six_configs_where_the_bootstrap_does_not():
    """2000 studies of 6 normal per-config values around a planted 0: the t-interval covers it
    about 95% of the time (binomial SE 0.005); the percentile bootstrap about 86%."""
    from interp.analysis.study_stats import cluster_t

    rng = np.random.default_rng(0)
    data = rng.normal(size=(2000, 6))
    t_hits = sum(lo <= 0 <= hi for lo, hi in (cluster_t(x).interval() for x in data))
    boot_hits = sum(
        lo <= 0 <= hi for lo, hi in (cluster_bootstrap(x, n_boot=1000, seed=i).interval() for i, x in enumerate(data))
    )
    assert 0.935 <= t_hits / 2000 <= 0.965
    assert boot_hits / 2000 < 0.9
    # by hand: values 1, 2, 3, 6 -> mean 3, SD sqrt(14/3), SE sqrt(14/3) / 2, df 3
    t = cluster_t([1.0, 2.0, 3.0, 6.0])
    assert (t.estimate, t.df) == (3.0, 3.0) and t.se == pytest.approx(np.sqrt(14 / 3) / 2)
    assert t.interval(0.05)[1] == pytest.approx(3 + 3.182446 * np.sqrt(14 / 3) / 2, abs=1e-5)
    # strata: sqrt(sum (n_s/n)^2 s_s^2 / n_s) with n - k degrees of freedom
    s = cluster_t([0.0, 1.0, 2.0, 10.0, 12.0, 14.0], strata=[1, 1, 1, 2, 2, 2])
    assert s.df == 4 and s.se == pytest.approx(np.sqrt((0.5**2) * 1 / 3 + (0.5**2) * 4 / 3))
    assert cluster_t([0.0, 0.0, 0.0]).p_value() == 1.0 and cluster_t([1.0, 1.0, 1.0]).p_value() == 0.0


def test_levels_show_an_accuracy_measure_that_is_not_a_claim():
    """With legal top-1 left out of the claims (deltas on TV only), the levels still show it: how
    well each arm does at all, next to the differences the claims are about."""
    spec = {**OTHELLO_SPEC, "deltas": {"tv": 0.02}}
    result = analyse(othello_records(), spec, 10, n_boot=1000)
    assert {e["measure"] for e in result["effects"] if e["claim"]} == {"tv"}
    row = next(x for x in result["levels"] if x["variant"] == "baseline" and x["target"] == "exact")
    assert row["in_range legal_top1"] == pytest.approx(0.9) and "beyond legal_top1" in row
    assert "in_range cal_tv" not in row


def test_infer_from_stored_per_config_values_reproduces_a_committed_report():
    """The re-inference path (scripts/rereport_studies.py) against numbers the study engine wrote
    before it existed: the remedies study's bootstrap report. From its stored per-config values,
    ``infer`` with the same interval, resamples and seed gives every estimate and 95% interval
    back to the last digit, and the same claims."""
    import json
    from pathlib import Path

    from interp.analysis.study_report import infer, stratum_labels

    folder = Path(__file__).resolve().parents[1] / "docs" / "results" / "study_remedies"
    old = json.loads((folder / "study_report_bootstrap.json").read_text())
    meta = json.loads((folder / "study.json").read_text())
    spec = {**meta["spec"], "interval": "bootstrap"}
    keep = ("family", "contrast", "target", "part", "measure", "per_config", "family_label")
    series = [{k: e[k] for k in keep if k in e} for e in old["effects"]]
    new = infer(series, spec, stratum_labels(spec, meta["configs"], old["kept_configs"]))
    assert len(new["effects"]) == len(old["effects"]) > 100
    for a, b in zip(old["effects"], new["effects"]):
        assert b["estimate"] == a["estimate"] and b["ci95"] == a["ci95"] and b["claim"] == a["claim"]
    assert new["n_claims"] == old["n_claims"] == 19


def test_the_temperature_controls_are_reported_beside_the_claims():
    """Records that carry oracle_tv and length_tv (the study's temperature controls): planted
    bema - raw of +0.03 on calibrated TV but -0.02 at the oracle temperature and 0 per length
    (sampled targets); the report gives each its 95% interval and verdict, outside the Holm family."""
    records = []
    for r in planted_records():
        weights = {}
        for w, rec in r["weights"].items():
            beyond = dict(rec["summary"]["beyond"])
            shift = {"cal_tv": 0.03, "oracle_tv": -0.02, "length_tv": 0.0} if w == "bema" else {}
            base = beyond["tv"] - (-0.05 if w == "bema" and r["target"] == "sampled" else 0.0)
            if w == "bema" and r["target"] == "exact":
                base -= -0.01
            for m in ("cal_tv", "oracle_tv", "length_tv"):
                beyond[m] = base + 0.1 + shift.get(m, 0.0) if r["target"] == "sampled" else base + 0.1
            weights[w] = {"summary": {"in_range": rec["summary"]["in_range"], "beyond": beyond}}
        records.append({**r, "weights": weights})
    result = analyse(records, SPEC, 12, n_boot=4000)
    for measure, planted in (("cal_tv", 0.03), ("oracle_tv", -0.02)):
        e = _effect(result, "averaging", "bema - raw", "sampled", measure=measure)
        assert e["estimate"] == pytest.approx(planted, abs=0.003) and e["ci95"][0] <= planted <= e["ci95"][1]
    length = _effect(result, "averaging", "bema - raw", "sampled", measure="length_tv")
    assert not length["claim"] and length["ci95"][0] <= 0.0 <= length["ci95"][1]
    from interp.analysis.study_report import format_report

    lines = format_report(result, "x").splitlines()
    assert any(x.startswith("bema - raw [sampled]: oracle-temperature TV") and x.endswith("supported") for x in lines)
    assert any(
        x.startswith("bema - raw [sampled]: per-length-temperature TV") and x.endswith("no practical effect")
        for x in lines
    )

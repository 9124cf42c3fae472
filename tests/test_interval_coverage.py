"""scripts/interval_coverage.py: the t-interval's coverage on normal data is exact (a theorem), and
bad arguments are one line."""

import numpy as np

from tests.scriptload import load_script

ic = load_script("interval_coverage")


def test_t_interval_covers_normal_data_at_its_nominal_rate():
    # for normal per-config values the t-interval is exact: coverage 1 - a at every n; 20,000
    # studies give a binomial SD of 0.0015 at 95%, so 0.006 is four SDs
    rng = np.random.default_rng(1)
    cov = ic.coverage(lambda size: rng.normal(size=size), 10, 20_000, 0, rng, claims=28)
    assert set(cov) == {"t", "hall"}  # no bootstrap at --boot 0
    assert abs(cov["t"]["95%"] - 0.95) < 0.006
    assert abs(cov["t"]["Holm, 1 of 28"] - (1 - 0.05 / 28)) < 0.0025


def test_a_skewed_shape_lowers_the_t_intervals_coverage():
    # a planted heavy skew (a centred exponential cubed) is what the real shape guards against: the
    # t-interval must fall short of 95% on it, or the script could not tell the shapes apart
    rng = np.random.default_rng(2)

    def skewed(size):
        x = rng.exponential(size=size) ** 3
        return x - 6.0  # E[X^3] = 3! = 6 for a unit exponential: mean 0

    cov = ic.coverage(skewed, 6, 10_000, 0, rng)
    assert cov["t"]["95%"] < 0.90


def test_bad_arguments_are_one_line(capsys):
    for argv in (["--configs", "1"], ["--configs", "x"], ["--boot", "-1"], ["--reports", "nothing_*/none.json"]):
        assert ic.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1


def test_tail_check_tells_heavy_tails_from_normal_ones():
    # claims drawn normal sit inside the normal reference; claims drawn from a t with 3 degrees of
    # freedom (infinite kurtosis) sit above it, although standardizing pulls both below 3
    rng = np.random.default_rng(3)
    normal = [rng.normal(size=10) for _ in range(200)]
    heavy = [rng.standard_t(3, size=10) for _ in range(400)]
    n = ic.tail_check(normal, rng, reps=400)
    h = ic.tail_check(heavy, rng, reps=400)
    assert abs(n["normal_reference"] - 3 * 9**3 / (100 * 11)) < 0.03  # 3(k - 1)^3 / (k^2 (k + 1)), k = 10
    assert n["normal_95"][0] <= n["kurtosis"] <= n["normal_95"][1]
    assert n["matched_df"] == float("inf")
    assert h["kurtosis"] > h["normal_95"][1]
    assert h["matched_df"] is not None and 2.5 <= h["matched_df"] <= 5  # near the planted 3
    assert n["abs_skew_normal_95"][0] <= n["abs_skew"] <= n["abs_skew_normal_95"][1]
    assert n["matched_lognormal_sigma"] is None
    # lognormal claims of log-SD 0.75 are found skewed and matched back to (about) their sigma
    skewed = ic.tail_check([ic.lognormal(0.75, rng)(10) for _ in range(400)], rng, reps=400)
    assert skewed["abs_skew"] > n["abs_skew_normal_95"][1]
    assert skewed["matched_lognormal_sigma"] in (0.5, 0.75, 1.0)


def test_hall_interval_keeps_normal_coverage_and_corrects_planted_skew():
    rng = np.random.default_rng(4)
    normal = ic.coverage(lambda size: rng.normal(size=size), 10, 20_000, 0, rng)
    assert abs(normal["hall"]["95%"] - 0.95) < 0.01
    skewed = ic.coverage(ic.lognormal(0.75, rng), 10, 20_000, 0, rng)  # t covers about 0.885 here
    assert skewed["hall"]["95%"] > skewed["t"]["95%"] + 0.015
    # with no skew at all (a symmetric sample) the interval is the t-interval
    x = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    lo, hi = ic.hall_interval(x, 0.05)
    half = ic.t_quantile(0.05, 4) * x.std(ddof=1) / np.sqrt(5)
    assert np.allclose([lo[0], hi[0]], [-half, half])


def test_json_output_is_strict_json(tmp_path, capsys):
    import json

    out = tmp_path / "cov.json"
    argv = ["--reports", "study_default/study_report.json", "--configs", "6", "--boot", "0", "--datasets", "200"]
    assert ic.main([*argv, "--json", str(out)]) == 0

    def reject(constant):  # Infinity or NaN would make the file unreadable to strict parsers
        raise ValueError(constant)

    data = json.loads(out.read_text(), parse_constant=reject)
    assert data["rows"][0]["configs"] == 6 and "t" in data["rows"][0]["coverage"]

"""The sweep analysis recovers known effects from synthetic trial data, and reports end to end."""

import numpy as np

from commands.interp import main as interp_main
from interp.analysis.sweep import analyse, best_table, effects, load_trials, variant, verdict


def _rows(n=300, seed=0, dropout_effect=-0.5, bema_effect=-0.05, ema_effect=0.0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d = rng.choice([0.0, 0.05, 0.1, 0.2])
        mode = rng.choice(["none", "ema", "bema"])
        lr = float(np.exp(rng.uniform(np.log(1e-3), np.log(1e-2))))
        value = (
            0.4
            + dropout_effect * d
            + bema_effect * (mode == "bema")
            + ema_effect * (mode == "ema")
            + 0.02 * np.log(lr / 3e-3)
            + rng.normal(0, 0.01)
        )
        s = {"in_range": {"tv": 0.05, "itr": 0.01, "margin": 3.0}, "beyond": {"tv": value, "itr": value, "margin": 1.0}}
        rows.append(
            {
                "number": i,
                "lr": lr,
                "d_model": int(rng.choice([32, 64])),
                "d_head": int(rng.choice([16, 64])),
                "dropout": float(d),
                "mode": str(mode),
                "target": str(rng.choice(["sampled", "exact"])),
                "summary": s,
                "tv": [0.1, value],
                "value": float(value),
            }
        )
    return rows


def test_known_effects_are_recovered():
    rows = [r for r in _rows() if r["target"] == "sampled"]
    eff = effects(rows, n_boot=300)
    assert eff["dropout"]["ci"][0] < -0.5 < eff["dropout"]["ci"][1]
    assert eff["bema"]["ci"][0] < -0.05 < eff["bema"]["ci"][1]
    assert verdict(eff["dropout"]) == "supported" and verdict(eff["bema"]) == "supported"
    assert verdict(eff["ema"]) == "inconclusive"  # no effect was planted


def test_harmful_effect_is_not_supported_and_few_trials_inconclusive():
    eff = effects(_rows(dropout_effect=+0.5), n_boot=300)
    assert verdict(eff["dropout"]) == "not supported"
    assert verdict(effects(_rows(n=5))["dropout"]) == "inconclusive"


def test_variants_and_best_table():
    rows = _rows(n=60)
    assert variant({"dropout": 0.0, "mode": "none"}) == "none"
    assert variant({"dropout": 0.1, "mode": "bema"}) == "dropout+bema"
    assert variant({"dropout": 0.1, "mode": "ema"}) is None  # not one of the study's five variants
    table = best_table(rows)
    for v, b in table.items():
        same = [r for r in rows if variant(r) == v]
        assert b["tv_beyond"] == min(r["summary"]["beyond"]["tv"] for r in same)
    result = analyse(rows)
    assert set(result["by_target"]) == {"sampled", "exact"}


def test_sweep_report_command(tmp_path, capsys):
    import optuna

    from training.config import preset_path
    from training.experiments.sweep import run_sweep

    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        run_sweep(tmp_path / "sw", preset_path("sweep_quick"), workers=1, progress=False)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the caller's setting is left alone
        rows = load_trials(tmp_path / "sw")
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    # widths come from each trial's config: the quick space fixes d_model=32 and never samples it
    assert rows and all(r["d_model"] == 32 and r["d_head"] == 64 for r in rows)
    assert interp_main(["sweep-report", str(tmp_path / "sw")]) == 0
    out = capsys.readouterr().out
    assert "best metrics per model variant" in out and "verdict" in out
    assert (tmp_path / "sw" / "report" / "sweep.png").exists()
    assert interp_main(["sweep-report", str(tmp_path / "nothing")]) == 2

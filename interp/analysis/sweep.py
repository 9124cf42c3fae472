"""Analysis of a random search: the study's "best metrics per model variant" table, effect
estimates with bootstrap confidence intervals, verdicts computed from those intervals, and plots.

Variants: none, dropout only, EMA, BEMA, dropout+BEMA (dropout = any attention or residual
dropout; EMA/BEMA evaluated on their averaged weights). Effects come from a least-squares
regression of beyond-range TV on total dropout rate, EMA and BEMA indicators, log learning rate
and log widths, fit separately for ``sampled`` and ``exact`` targets; 95% intervals are
percentile bootstraps over trials. A hypothesis is *supported* when its interval lies below 0
(the remedy lowers beyond-range TV), *not supported* when it lies at or above 0, *inconclusive*
otherwise (or with too few trials).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training import atomic
from training.errors import WorkbenchError
from training.experiments.runner import read_state, storage_url
from training.experiments.sweep import SWEEP_STATE, check_sweep_state
from training.scoped import optuna_quiet

VARIANTS = ("none", "dropout", "ema", "bema", "dropout+bema")
EFFECTS = ("dropout", "ema", "bema")


def trial_run_config(trial) -> dict:
    """The full run config of a trial: stored on the trial, or read from its run directory (older
    sweeps stored only the sampled parameters; the defaults of the rest live in the config)."""
    if "config" in trial.user_attrs:
        return trial.user_attrs["config"]
    from training import runs

    run_dir = trial.user_attrs.get("run_dir")
    if run_dir is None:
        raise WorkbenchError(f"trial {trial.number} records no run directory, so its config is unknown")
    return runs.read_run_config(run_dir).to_dict()


def averaged_mode(cfg: dict) -> str:
    """The mode of a trial's 'averaged' average ('none' without one): an averager of that name, or
    the old ``averaging`` section in configs stored before it was folded into ``averagers``."""
    for a in cfg.get("averagers") or []:
        if a.get("name") == "averaged":
            return a["mode"]
    return (cfg.get("averaging") or {}).get("mode", "none")


def load_trials(sweep_dir: str | Path) -> list[dict]:
    """Completed trials as flat records (each trial's own config plus the metrics that count)."""
    import optuna
    from optuna.trial import TrialState

    meta = read_state(Path(sweep_dir) / "sweep.json", SWEEP_STATE, "sweep", check_sweep_state)
    url = storage_url(meta["storage"], Path(sweep_dir), must_exist=True)
    with optuna_quiet():
        try:
            study = optuna.load_study(study_name=meta["study_name"], storage=url)
        except KeyError:
            raise WorkbenchError(f"sweep {meta['study_name']!r} not found in {url}") from None
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = []
    for t in trials:
        cfg = trial_run_config(t)
        model = cfg["model"]
        weights = "averaged" if "averaged_summary" in t.user_attrs else "raw"
        rows.append(
            {
                "number": t.number,
                "lr": cfg["train"]["lr"],
                "d_model": model["d_model"],
                "d_head": model["d_head"],
                "dropout": model["attn_dropout"] + model["resid_dropout"],
                "mode": averaged_mode(cfg),
                "target": cfg["task"]["target"],
                "summary": t.user_attrs[f"{weights}_summary"],
                "tv": t.user_attrs[f"{weights}_tv"],
                "train_range": t.user_attrs.get("train_range"),
                "value": t.value,
            }
        )
    return rows


def variant(row: dict) -> str | None:
    d, m = row["dropout"] > 0, row["mode"]
    if m == "none":
        return "dropout" if d else "none"
    if m == "ema":
        return None if d else "ema"
    return "dropout+bema" if d else "bema"


def best_table(rows: list[dict]) -> dict:
    out = {}
    for v in VARIANTS:
        rs = [r for r in rows if variant(r) == v and "beyond" in r["summary"]]
        if rs:
            b = min(rs, key=lambda r: r["summary"]["beyond"]["tv"])
            out[v] = {
                "trial": b["number"],
                "n": len(rs),
                **{f"{m}_{k}": b["summary"][k][m] for k in ("in_range", "beyond") for m in ("tv", "itr", "margin")},
            }
    return out


def _design(rows):
    X = np.array(
        [
            [
                1.0,
                r["dropout"],
                r["mode"] == "ema",
                r["mode"] == "bema",
                np.log(r["lr"] or 1e-3),
                np.log(r["d_model"]),
                np.log(r["d_head"]),
            ]
            for r in rows
        ],
        dtype=float,
    )
    y = np.array([r["value"] for r in rows], dtype=float)
    return X, y


def effects(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Regression coefficients (change of beyond-range TV) with 95% bootstrap intervals."""
    if len(rows) < 8:
        return {e: {"estimate": None, "ci": None, "n": len(rows)} for e in EFFECTS}
    X, y = _design(rows)
    keep = X.std(0) > 0
    keep[0] = True
    coef = np.linalg.lstsq(X[:, keep], y, rcond=None)[0]
    full = np.full(X.shape[1], np.nan)
    full[keep] = coef
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):  # resampling trials; a loop over resamples, not over trials
        idx = rng.integers(0, len(y), len(y))
        b = np.full(X.shape[1], np.nan)
        b[keep] = np.linalg.lstsq(X[idx][:, keep], y[idx], rcond=None)[0]
        boots.append(b)
    boots = np.array(boots)
    out = {}
    for i, e in zip((1, 2, 3), EFFECTS):
        if not keep[i]:
            out[e] = {"estimate": None, "ci": None, "n": len(rows)}
            continue
        lo, hi = np.nanpercentile(boots[:, i], [2.5, 97.5])
        out[e] = {"estimate": float(full[i]), "ci": [float(lo), float(hi)], "n": len(rows)}
    return out


def verdict(effect: dict) -> str:
    if effect["ci"] is None:
        return "inconclusive"
    lo, hi = effect["ci"]
    return "supported" if hi < 0 else "not supported" if lo >= 0 else "inconclusive"


def analyse(rows: list[dict]) -> dict:
    by_target = {}
    for target in sorted({r["target"] for r in rows}):
        sub = [r for r in rows if r["target"] == target]
        eff = effects(sub)
        by_target[target] = {
            "n_trials": len(sub),
            "effects": eff,
            "verdicts": {
                "dropout counteracts dispersion": verdict(eff["dropout"]),
                "EMA helps": verdict(eff["ema"]),
                "BEMA helps": verdict(eff["bema"]),
            },
        }
    return {"n_trials": len(rows), "best_per_variant": best_table(rows), "by_target": by_target}


def sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> dict:
    from interp.core.visualize import save_figure

    sweep_dir = Path(sweep_dir)
    out = Path(out) if out else sweep_dir / "report"
    rows = load_trials(sweep_dir)
    result = analyse(rows)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_sweep(rows, result)
    files = save_figure(fig, out / "sweep")
    result["files"] = [p.name for p in files]
    atomic.write_json(out / "sweep_report.json", result)
    return result


def plot_sweep(rows: list[dict], result: dict):
    """Beyond-range TV against dropout and learning rate, and TV against length of the best run per variant."""
    from interp.core.visualize import new_figure

    colors = {"none": "C0", "ema": "C1", "bema": "C2"}
    fig, axes = new_figure(1, 3, figsize=(16, 4.2))
    for r in rows:
        axes[0].scatter(
            r["dropout"], r["value"], color=colors[r["mode"]], marker="o" if r["target"] == "sampled" else "x"
        )
        axes[2].scatter(r["lr"], r["value"], color=colors[r["mode"]], marker="o" if r["target"] == "sampled" else "x")
    for m, c in colors.items():
        axes[0].scatter([], [], color=c, label=m)
    axes[0].set(xlabel="total dropout", ylabel="beyond-range TV", title="TV vs dropout (o sampled, x exact)")
    axes[0].legend(fontsize=7)
    axes[2].set(xscale="log", xlabel="learning rate", ylabel="beyond-range TV", title="learning-rate landscape")
    for v, b in result["best_per_variant"].items():
        r = next(r for r in rows if r["number"] == b["trial"])
        axes[1].plot(range(1, len(r["tv"]) + 1), r["tv"], marker=".", label=f"{v} (trial {r['number']})")
    axes[1].set(yscale="log", xlabel="set length", ylabel="TV", title="best run per variant")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig


def format_report(result: dict) -> str:
    lines = [
        f"{result['n_trials']} completed trials",
        "",
        "best metrics per model variant (by beyond-range TV):",
        f"{'variant':<14}{'n':>4}{'TV in':>9}{'TV beyond':>11}{'ITR in':>10}{'ITR beyond':>12}{'margin beyond':>15}",
    ]
    for v, b in result["best_per_variant"].items():
        lines.append(
            f"{v:<14}{b['n']:>4}{b['tv_in_range']:>9.4f}{b['tv_beyond']:>11.4f}{b['itr_in_range']:>10.2e}"
            f"{b['itr_beyond']:>12.2e}{b['margin_beyond']:>15.3f}"
        )
    for target, t in result["by_target"].items():
        lines += ["", f"target={target} ({t['n_trials']} trials): effect on beyond-range TV, 95% bootstrap CI"]
        for e, eff in t["effects"].items():
            est = (
                "n/a"
                if eff["estimate"] is None
                else f"{eff['estimate']:+.4f} [{eff['ci'][0]:+.4f}, {eff['ci'][1]:+.4f}]"
            )
            lines.append(f"  {e:<8} {est}")
        lines += [f"  verdict: {k}: {v}" for k, v in t["verdicts"].items()]
    return "\n".join(lines)

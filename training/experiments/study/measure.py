"""What the study records of one trained arm: every set of weights measured the same way.

For the raw weights and every average of an arm: the task's study metrics (``Task.study_metrics``)
in range and beyond, from the final evaluation the training already ran; the calibrated ones
(``Task.calibrated_metrics``, stored as ``cal_<name>``) at one temperature per model, fit on fresh
in-range inputs (``Task.calibrated_evaluate``); TV per length, raw and calibrated, for the plots; and
whatever the caller's ``measures`` returns (the mechanism measures, which are probes and live in
``interp``: ``interp/analysis/mechanism.py``). Nothing here asks which task it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def measure_member(run_dir: Path, cfg, final: dict, measures: Callable | None, measure_sets: int) -> dict:
    """Every outcome of one arm's raw weights and averages: the summaries in range and beyond
    (raw and calibrated), TV per length (raw and calibrated) and ``measures``' summaries."""
    from training import runs

    task = cfg.make_task()
    return {
        name: measure_weights(runs.load_run(run_dir, weights=name), task, cfg, metrics, measures, measure_sets)
        for name, metrics in final.items()
    }


def measure_weights(model, task, cfg, metrics, measures: Callable | None, measure_sets: int) -> dict:
    """The record of one set of weights (``model``), whose final evaluation is ``metrics``."""
    summary = {part: {m: values[m] for m in task.study_metrics} for part, values in metrics.summary().items()}
    record = {"summary": summary, "tv": metrics.values["tv"]}
    fitted = task.calibrated_evaluations(model, cfg.train.final_eval_sets, seed=cfg.train.eval_seed)
    if "cal" in fitted:
        cal, scale = fitted.pop("cal")
        for part, values in cal.summary().items():
            summary[part].update({f"cal_{m}": values[m] for m in task.calibrated_metrics})
        record.update(cal_tv=cal.values["tv"], logit_scale=scale)
    for kind, (metrics_at, scales) in fitted.items():  # the temperature controls
        for part, values in metrics_at.summary().items():
            summary[part].update({f"{kind}_{m}": values[m] for m in task.temperature_controls})
        record.update({f"{kind}_tv": metrics_at.values["tv"], f"{kind}_scale": scales})
    if measures is not None:
        extra = measures(model, task, measure_sets, cfg.train.eval_seed)
        for part, values in extra.get("by_range", {}).items():
            summary.setdefault(part, {}).update(values)
        record["model"] = extra.get("model", {})
    return record

"""The main job: train set-complement models with and without the study's remedies, compare them.

Every variant shares the base config ``training/configs/demo.json`` (same budget, same seed, same
evaluation sets) and differs only by the overrides listed in ``VARIANTS``. ``run_demo`` trains
them and returns a ``DemoResult``; ``write_demo`` renders it as ``demo_table.txt`` (per-length
tables of raw and averaged weights) and ``demo_results.json`` (every metric at every length, for
notebooks). The command line adds the plot. Whatever the numbers are, they are printed as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training import atomic, runs
from training.config import RunConfig, load_config, preset_path
from training.metrics import LengthMetrics, metric_tables
from training.trainer import train

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "dropout": ["model.attn_dropout=0.1"],
    "ema": ["averaging.mode=ema"],
    "bema": ["averaging.mode=bema"],
    "dropout_bema": ["model.attn_dropout=0.1", "averaging.mode=bema"],
}
TABLE_METRICS = ("tv", "itr", "margin", "acc")


@dataclass
class DemoResult:
    """Final metrics of every variant: ``name`` for raw weights, ``name (avg)`` for averaged ones."""

    results: dict[str, LengthMetrics]
    seconds: dict[str, float]
    config: RunConfig
    """The baseline's config (the others differ only by ``VARIANTS``)."""

    def deduped(self) -> tuple[dict[str, LengthMetrics], dict[str, str]]:
        return dedupe(self.results)

    def header(self) -> str:
        c = self.config
        return (
            f"Set complement demo: v={c.task.v}, train lengths {c.task.train_min_len}.."
            f"{c.task.train_max_len}, {c.train.steps} steps x batch {c.train.batch_size}, "
            f"{c.train.final_eval_sets} sets per length (* = training length)"
        )

    def tables(self) -> str:
        """The per-length tables, each result shown once (identical ones named below)."""
        shown, same = self.deduped()
        text = metric_tables(shown, TABLE_METRICS)
        if same:
            text += "\n\nnot shown, identical at every length: " + "; ".join(f"{a} = {b}" for a, b in same.items())
        return text


def variant_configs(base: Path | None, overrides: list[str]) -> dict[str, RunConfig]:
    base = base or preset_path("demo")
    return {name: load_config(base, overrides + extra) for name, extra in VARIANTS.items()}


def dedupe(results: dict[str, LengthMetrics]) -> tuple[dict[str, LengthMetrics], dict[str, str]]:
    """Drop results identical to an earlier one (the raw weights of an averaging run equal the
    raw weights of the run without averaging: same seed, and averaging never touches training)."""
    shown: dict[str, LengthMetrics] = {}
    same: dict[str, str] = {}
    for name, res in results.items():
        twin = next((n for n, r in shown.items() if r.values == res.values), None)
        if twin is None:
            shown[name] = res
        else:
            same[name] = twin
    return shown, same


def run_demo(
    out: str | Path = "runs/demo",
    overwrite: bool = False,
    overrides: list[str] | None = None,
    base: Path | None = None,
    progress: bool = True,
) -> DemoResult:
    """Train (or reuse, see ``runs.prepare_run``) every variant into ``out/NAME``."""
    out = Path(out)
    configs = variant_configs(base, overrides or [])  # validate everything before touching disk
    results: dict[str, LengthMetrics] = {}
    seconds = {}
    for name, cfg in configs.items():
        res = train(cfg, runs.prepare_run(out / name, cfg, overwrite), progress=progress, desc=name)
        seconds[name] = round(res.train_seconds, 1)  # the run's own, not this call's (a reused run trains none)
        results[name] = res.final["raw"]
        if "averaged" in res.final:
            results[f"{name} (avg)"] = res.final["averaged"]
    return DemoResult(results, seconds, next(iter(configs.values())))


def write_demo(result: DemoResult, out: str | Path) -> list[Path]:
    """``demo_table.txt`` and ``demo_results.json`` in ``out``."""
    out = Path(out)
    table, data = out / "demo_table.txt", out / "demo_results.json"
    atomic.write_text(table, result.header() + "\n\n" + result.tables() + "\n")
    atomic.write_json(
        data,
        {
            "variants": VARIANTS,
            "seconds": result.seconds,
            "results": {k: v.to_dict() for k, v in result.results.items()},
        },
    )
    return [table, data]


def summary_text(result: DemoResult) -> str:
    return f"training seconds per variant: {json.dumps(result.seconds)}"

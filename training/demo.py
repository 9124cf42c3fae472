"""The main job: train set-complement models with and without the study's remedies, compare them.

Every variant shares the base config ``training/configs/demo.json`` (same budget, same seed, same
evaluation sets) and differs only by the overrides listed in ``VARIANTS``. The demo prints per-length
tables for raw and averaged weights, saves ``demo_results.json`` (per-length metrics of every
variant), ``demo_table.txt`` and a plot ``demo.png`` of TV and ITR against length with the training
range shaded, plus .svg). Whatever the numbers are, they are printed as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.metrics import LengthMetrics
from training import atomic, runs
from training.config import RunConfig, load_config, preset_path
from training.errors import WorkbenchError
from training.trainer import train

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "dropout": ["model.attn_dropout=0.1"],
    "ema": ["averaging.mode=ema"],
    "bema": ["averaging.mode=bema"],
    "dropout_bema": ["model.attn_dropout=0.1", "averaging.mode=bema"],
}


def table_lengths(lo: int, hi: int, max_len: int, beyond_points: int = 7) -> list[int]:
    """A readable subset of lengths: powers of two and the edges of the training range, then
    evenly spaced lengths beyond it up to the longest evaluated."""
    chosen = {lo, hi} | {2**k for k in range(8) if lo <= 2**k <= hi}
    if max_len > hi:
        span = max_len - hi - 1
        chosen |= {hi + 1 + round(i * span / max(1, beyond_points - 1)) for i in range(beyond_points)}
    return sorted(s for s in chosen if 1 <= s <= max_len)


def variant_configs(base: Path | None, overrides: list[str]) -> dict[str, RunConfig]:
    base = base or preset_path("demo")
    return {name: load_config(base, overrides + extra) for name, extra in VARIANTS.items()}


def prepare(out: Path, name: str, cfg: RunConfig, overwrite: bool) -> Path:
    """Create the variant's run dir, or reuse it (resume) when it holds the same config."""
    path = out / name
    if path.exists() and not overwrite:
        try:
            same = runs.read_run_config(path).to_dict() == cfg.to_dict()
        except WorkbenchError:
            same = False
        if not same:
            raise WorkbenchError(f"{path} holds a different run (use --overwrite to replace it)")
        return path
    return runs.create_run_dir(path, cfg, overwrite=overwrite)


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


def metric_table(results: dict[str, LengthMetrics], metric: str) -> str:
    """Rows: lengths (then in-range and beyond means); columns: one per result."""
    first = next(iter(results.values()))
    lo, hi = first.train_range
    lengths = table_lengths(lo, hi, max(first.lengths))
    width = max(12, *(len(n) + 1 for n in results))
    lines = [f"{metric.upper():<8}" + "".join(f"{n:>{width}}" for n in results)]
    for s in lengths:
        mark = "*" if lo <= s <= hi else " "
        lines.append(f"len {s:>3}{mark}" + "".join(f"{_fmt(r.at(s)[metric]):>{width}}" for r in results.values()))
    for key, label in (("in_range", "in-range"), ("beyond", "beyond")):
        cells = [r.summary().get(key, {}).get(metric) for r in results.values()]
        lines.append(f"{label:<8}" + "".join(f"{_fmt(c) if c is not None else '-':>{width}}" for c in cells))
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return f"{x:.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:.1e}"


def run_demo(
    out: str | Path = "runs/demo",
    overwrite: bool = False,
    overrides: list[str] | None = None,
    base: Path | None = None,
    progress: bool = True,
) -> dict[str, LengthMetrics]:
    out = Path(out)
    configs = variant_configs(base, overrides or [])  # validate everything before touching disk
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, LengthMetrics] = {}
    seconds = {}
    for name, cfg in configs.items():
        run_dir = prepare(out, name, cfg, overwrite)
        res = train(cfg, run_dir, progress=progress, desc=name)
        seconds[name] = round(res.seconds, 1)
        results[name] = res.final["raw"]
        if "averaged" in res.final:
            results[f"{name} (avg)"] = res.final["averaged"]
    shown, same = dedupe(results)
    tables = "\n\n".join(metric_table(shown, m) for m in ("tv", "itr", "margin", "acc"))
    if same:
        tables += "\n\nnot shown, identical at every length: " + "; ".join(f"{a} = {b}" for a, b in same.items())
    first = next(iter(configs.values()))
    header = (
        f"Set complement demo: v={first.task.v}, train lengths {first.task.train_min_len}.."
        f"{first.task.train_max_len}, {first.train.steps} steps x batch {first.train.batch_size}, "
        f"{first.train.final_eval_sets} sets per length (* = training length)"
    )
    atomic.write_text(out / "demo_table.txt", header + "\n\n" + tables + "\n")
    atomic.write_json(
        out / "demo_results.json",
        {"variants": VARIANTS, "seconds": seconds, "results": {k: v.to_dict() for k, v in results.items()}},
    )
    from interp.visualize import plot_metrics

    plot_metrics(shown, out / "demo", metrics=("tv", "itr"),
                 title="Set complement: length generalization (dashed: averaged weights)")
    print(header)
    print()
    print(tables)
    print(f"\ntraining seconds per variant: {json.dumps(seconds)}")
    print(f"wrote {out}/demo_table.txt, {out}/demo_results.json, {out}/demo.png (.svg) and one run directory per variant")
    return results

"""OthelloGPT variants at equal budget and seed: averaging (none / EMA / BEMA) or positional
encoding (learned / rotary / none), evaluated by move index (``python -m training othello-compare``).

Averaging never changes the raw trajectory (same seed, same data, same dropout masks; tested bit
for bit), so the 'none' variant is read off the EMA run's raw weights instead of being trained a
third time.
"""

from __future__ import annotations

from pathlib import Path

from training import runs
from training.metrics import LengthMetrics
from training.tasks.othello.checkpoints import othello_config
from training.trainer import train

COMPARISONS = {
    "averaging": {"none": ["averaging.mode=none"], "ema": ["averaging.mode=ema"], "bema": ["averaging.mode=bema"]},
    "positional": {
        "learned": ["model.positional=learned"],
        "rotary": ["model.positional=rotary"],
        "no_pos": ["model.positional=none"],
    },
}
TABLE_METRICS = ("legal_top1", "itr", "tv")


def compare(
    preset: str, data, out: str | Path, what: str = "averaging", overrides=None, overwrite=False, progress=True
) -> dict[str, LengthMetrics]:
    """Train the variants of ``COMPARISONS[what]``; per-move-index metrics of each (averaged
    weights where averaging is on)."""
    out = Path(out)
    variants = dict(COMPARISONS[what])
    reuse_raw = what == "averaging"
    if reuse_raw:
        variants.pop("none")
    configs = {name: othello_config(preset, data, (overrides or []) + extra) for name, extra in variants.items()}
    for cfg in configs.values():
        cfg.make_task()  # check the dataset once, before any training
    results = {}
    for name, cfg in configs.items():
        res = train(cfg, runs.prepare_run(out / name, cfg, overwrite), progress=progress, desc=f"othello {name}")
        if reuse_raw and name == "ema":
            results["none"] = res.final["raw"]
        results[f"{name} (avg)" if "averaged" in res.final else name] = res.final.get("averaged", res.final["raw"])
    return results

"""Widths against the theory: train the demo config across d_model x d_head and report the smallest
widths that reach a target in-range TV (``python -m interp dim-scan``).

The study proves bounds on the embedding and value dimensions; this shows where training actually
lands at a fixed budget. Each cell is an ordinary run in ``OUT/dm{d_model}_dh{d_head}``, reused
only when it holds the same config (``runs.prepare_run``): a scan with other overrides into the
same folder is refused unless ``overwrite``.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from training import runs
from training.config import load_config, preset_path
from training.errors import ConfigError
from training.trainer import train


def dimension_scan(
    d_models: list[int],
    d_heads: list[int],
    out_dir: str | Path,
    overrides: list[str] | None = None,
    target_tv: float = 0.05,
    weights: str = "raw",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """One run per (d_model, d_head) (demo config plus ``overrides``): in-range TV, beyond-range TV
    and the smallest widths that reach ``target_tv`` in range."""
    out_dir = Path(out_dir)
    if not (isinstance(target_tv, (int, float)) and 0 < target_tv <= 1):  # TV lies in [0, 1]
        raise ConfigError(f"--target-tv must be in (0, 1] (a TV), got {target_tv}")
    grid = [(dm, dh) for dm in d_models for dh in d_heads]
    configs = {
        (dm, dh): load_config(
            preset_path("demo"), (overrides or []) + [f"model.d_model={dm}", f"model.d_head={dh}", "model.n_heads=1"]
        )
        for dm, dh in grid
    }  # validate all before training any
    cells = []
    for dm, dh in tqdm(grid, desc="dimension scan", disable=not progress):
        cfg = configs[(dm, dh)]
        final = train(cfg, runs.prepare_run(out_dir / f"dm{dm}_dh{dh}", cfg, overwrite), progress=False).final
        summ = final[weights if weights in final else "raw"].summary()
        cells.append(
            {
                "d_model": dm,
                "d_head": dh,
                "tv_in_range": summ["in_range"]["tv"],
                "tv_beyond": summ.get("beyond", {}).get("tv"),
                "acc_beyond": summ.get("beyond", {}).get("acc"),
                "reached": summ["in_range"]["tv"] <= target_tv,
            }
        )
    passing = [c for c in cells if c["reached"]]
    smallest = min(passing, key=lambda c: (c["d_model"] * c["d_head"], c["d_model"])) if passing else None
    return {
        "target_tv": target_tv,
        "weights": weights,
        "cells": cells,
        "smallest": smallest,
        "d_models": d_models,
        "d_heads": d_heads,
    }

"""Shared helpers for the benchmark scripts: time candidates side by side, alternating rounds, and
build the demo model they time."""

from __future__ import annotations

import time
from typing import Callable


def best_of(candidates: dict[str, Callable[[], object]], repeats: int = 3) -> dict[str, float]:
    """Fastest wall time (s) of each candidate over ``repeats`` alternating rounds, so that machine
    noise falls on every candidate alike."""
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def demo_task_and_model():
    """The demo preset's set-complement task and a freshly initialised model in eval mode, on the CPU."""
    from training.config import load_config, preset_path
    from training.models import build_model
    from training.tasks.set_complement import SetComplementTask

    cfg = load_config(preset_path("demo"), ["train.device=cpu"])
    task = SetComplementTask(cfg.task)
    return task, build_model(cfg.model, task.d_vocab, task.d_vocab_out, cfg.n_ctx()).eval()

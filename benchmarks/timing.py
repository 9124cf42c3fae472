"""Shared helper for the benchmark scripts: time candidates side by side, alternating rounds."""

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

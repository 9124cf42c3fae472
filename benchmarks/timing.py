"""Shared helpers for the benchmark scripts: time candidates side by side, alternating rounds, and
build the demo model (or run the demo trainer) they time."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Callable

from commands.tools import Parser, positive_int


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
    from training.tasks.set_complement.task import SetComplementTask

    cfg = load_config(preset_path("demo"), ["train.device=cpu"])
    task = SetComplementTask(cfg.task)
    return task, build_model(cfg.model, task.d_vocab, task.d_vocab_out, cfg.n_ctx()).eval()


def round_args(
    doc: str, steps: int = 1000, rounds: int = 6, seeds: int | None = None, flags: dict[str, str] | None = None
) -> argparse.Namespace:
    """``--steps``, ``--rounds``, ``--threads`` and ``--default-malloc`` (and ``--seeds`` when given
    a default, and the benchmark's own ``flags``) for a benchmark of training loops; sets the
    threads and the allocator (``set_allocator``)."""
    import torch

    ap = Parser(description=doc.split("\n\n")[0])
    ap.add_argument("--steps", type=positive_int, default=steps)
    ap.add_argument("--rounds", type=positive_int, default=rounds)
    ap.add_argument("--threads", type=positive_int, default=2)
    if seeds is not None:
        ap.add_argument("--seeds", type=positive_int, default=seeds)
    for flag, text in (flags or {}).items():  # a benchmark's own on/off switches
        ap.add_argument(flag, action="store_true", help=text)
    add_malloc_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    set_allocator(args)
    return args


def add_malloc_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's default malloc settings instead of those of the training commands",
    )


def set_allocator(args: argparse.Namespace) -> None:
    """Unless ``--default-malloc``: this process's allocator as the training commands set theirs
    (``training/allocator.py``), for every candidate alike."""
    if not args.default_malloc:
        from training.allocator import keep_freed_memory

        print(f"allocator: freed memory kept in the heap ({'set' if keep_freed_memory() else 'not glibc: unchanged'})")


def alternating_rounds(
    candidates: dict[str, Callable[[int], float]], rounds: int, steps: int, pair: tuple[str, str] | None = None
) -> dict[str, list[float]]:
    """Steps/s of each candidate (called with a step count) in ``rounds`` alternating rounds, after a
    50-step warm-up of each (first-call allocations, lazy imports); prints every round, with the
    ratio of ``pair`` (numerator, denominator) when given. Every other round runs the candidates in
    reverse order (A B, B A, ...), so that a drift of the machine's speed within a round favours
    no candidate over an even number of rounds."""
    for fn in candidates.values():
        fn(50)
    out: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        order = list(candidates.items())
        for name, fn in order if r % 2 == 0 else order[::-1]:
            out[name].append(fn(steps))
        line = "   ".join(f"{name} {v[-1]:7.1f} steps/s" for name, v in out.items())
        if pair:
            line += f"   ratio {out[pair[0]][-1] / out[pair[1]][-1]:.3f}"
        print(f"round {r + 1}: {line}", flush=True)
    return out


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b. This machine's speed drifts by 10-30% between rounds
    (other tenants); adjacent runs share the drift, so the ratio within a round is what to read."""
    return statistics.median(x / y for x, y in zip(a, b))


def trainer_steps_per_s(overrides: list[str], steps: int, preset: str = "demo") -> float:
    """Steps/s of the workbench trainer on ``preset`` with ``overrides``, in a scratch run dir
    (evaluations, checkpoints and the final evaluation included)."""
    import tempfile

    from training import runs
    from training.config import load_config, preset_path
    from training.trainer import train

    cfg = load_config(preset_path(preset), overrides + [f"train.steps={steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = runs.create_run_dir(f"{tmp}/run", cfg)
        t0 = time.perf_counter()
        train(cfg, run_dir, progress=False)
        return steps / (time.perf_counter() - t0)


def spec_path(name: str) -> Path:
    """A study preset by short name (``quick``, ``default``, ...) or a study file's path."""
    from training.config import preset_path

    return Path(name) if name.endswith(".json") else preset_path(f"study_{name}")


@contextlib.contextmanager
def cold_compile():
    """Nothing compiled to reuse: no graph of an earlier round (dynamo's caches reset), no
    compiled kernels in memory or on disk (inductor's ``fresh_cache``: cleared in-memory caches,
    an empty cache directory). The compiler's own imports, paid once per process, are not undone."""
    import torch._dynamo
    from torch._inductor.utils import fresh_cache

    torch._dynamo.reset()
    with fresh_cache():
        yield

"""Configs per minute of the paired study with 1 and with 2 worker processes, side by side.

Workers are spawned once and stay alive across configs (Optuna's loop runs inside each), so a
worker pays its start-up (spawn, imports, opening the storage) once per study, not per config.
Each round runs a fresh study of ``--configs`` configs of a study file's design (``--spec``: the
quick study by default, 8 arms per config as one ensemble; ``--spec default`` is the default
study's, 16 arms of larger models) with ``--steps`` steps, three ways:

- one worker on all threads (what ``--workers 1`` does);
- one worker on one thread each of the two workers would get;
- two workers on half the threads each (what ``--workers 2`` does).

Two workers against one worker *at the same threads per worker* is the cost of running workers
side by side (spawn, imports, the shared storage, contention for memory bandwidth). Two workers
against one worker *on all threads* adds how well one worker's kernels use several threads, which
depends on the models: one worker on two threads against one thread is printed too.
Target: 2 workers at least 1.8x one.

    python benchmarks/study_workers.py [--spec quick|default|FILE] [--configs 6] [--steps 600] [--rounds 2]
                                       [--default-malloc]
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from timing import add_malloc_flag, set_allocator, spec_path

from commands.tools import Parser, positive_int, run_script


def study_seconds(
    workers: int, configs: int, steps: int, threads: int | None = None, spec_file: Path | None = None
) -> float:
    from training.experiments.study import load_spec, run_study, with_steps

    spec = {**with_steps(load_spec(spec_file or spec_path("quick")), steps), "n_configs": configs}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        result = run_study(Path(tmp) / "study", path, workers=workers, progress=False, threads=threads)
        seconds = time.perf_counter() - t0
    assert result["completed"] == configs, result
    return seconds


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="quick", help="study design: quick, default, or a study file (default: quick)")
    ap.add_argument("--configs", type=positive_int, default=6)
    ap.add_argument("--steps", type=positive_int, default=600)
    ap.add_argument("--rounds", type=positive_int, default=2)
    add_malloc_flag(ap)  # this process's setting; the spawned workers set their own
    args = ap.parse_args()
    spec_file = spec_path(args.spec)
    if not spec_file.is_file():
        ap.error(f"no study file {spec_file}")
    set_allocator(args)
    half = max(1, (os.cpu_count() or 2) // 2)
    arms = {"1 worker, all threads": (1, None), f"1 worker, {half} thread(s)": (1, half), "2 workers": (2, None)}
    rate = {name: [] for name in arms}
    for r in range(args.rounds):
        for name, (workers, threads) in arms.items():
            rate[name].append(args.configs / study_seconds(workers, args.configs, args.steps, threads, spec_file) * 60)
        print(
            f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.2f}" for name, v in rate.items()) + " configs/min",
            flush=True,
        )
    two, all_threads, same = rate["2 workers"], rate["1 worker, all threads"], rate[f"1 worker, {half} thread(s)"]
    for label, one in (("at the same threads per worker", same), ("against one worker on all threads", all_threads)):
        ratio = statistics.median(b / a for a, b in zip(one, two))
        print(f"ratio 2 workers / 1 worker, {label}: {ratio:.2f} (median of rounds; target >= 1.8)")
    threads = statistics.median(b / a for a, b in zip(same, all_threads))
    print(f"ratio 1 worker on all threads / on {half} thread(s): {threads:.2f} (median of rounds)")


if __name__ == "__main__":
    run_script(main)

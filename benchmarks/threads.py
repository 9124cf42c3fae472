"""Training speed by thread count, on a quiet machine and with one competing busy process.

The workbench's models are tiny (the demo's is one attention-only layer, d_model 32): a step is
a few small matmuls, so a second intra-op thread mostly adds synchronisation. When anything else
runs on the machine, a thread that waits for a busy core stalls every step. This trains the demo
preset's model with the workbench trainer at 1 thread and at every core, alternating rounds, first
on a quiet machine, then with one busy-looping process (started here, one core's worth of other
work), and prints steps/s with the ratio 1 thread / all cores in each condition.

    python benchmarks/threads.py [--steps 300] [--rounds 3]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics

from timing import alternating_rounds, paired_ratio, trainer_steps_per_s

from commands.tools import Parser, positive_int, run_script
from training.scoped import num_threads

OVERRIDES = [
    "train.device=cpu",
    "train.eval_every=100000",
    "train.checkpoint_every=100000",
    "train.final_eval_sets=256",
]


def busy_loop() -> None:  # pragma: no cover - runs in a child process until terminated
    while True:
        pass


def measure(threads: list[int], rounds: int, steps: int) -> dict[str, list[float]]:
    def at(k: int):
        def run(n: int) -> float:
            with num_threads(k):
                return trainer_steps_per_s(OVERRIDES, n)

        return run

    names = {k: f"{k} thread{'s' if k > 1 else ''}" for k in threads}
    return alternating_rounds(
        {names[k]: at(k) for k in threads}, rounds, steps, pair=(names[threads[0]], names[threads[-1]])
    )


def main() -> int:
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=positive_int, default=300)
    ap.add_argument("--rounds", type=positive_int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    threads = [1, cores] if cores > 1 else [1]
    results = {}
    for condition in ("quiet", "one busy process"):
        print(f"-- {condition} ({cores} cores)", flush=True)
        other = None
        if condition != "quiet":
            other = mp.get_context("spawn").Process(target=busy_loop, daemon=True)
            other.start()
        try:
            results[condition] = measure(threads, args.rounds, args.steps)
        finally:
            if other is not None:
                other.terminate()
                other.join()
    print("\nmedian steps/s (ratio: 1 thread / all cores, median of per-round ratios)")
    for condition, r in results.items():
        names = list(r)
        line = "   ".join(f"{n} {statistics.median(v):7.1f}" for n, v in r.items())
        if len(names) > 1:
            line += f"   ratio {paired_ratio(r[names[0]], r[names[-1]]):.2f}"
        print(f"{condition:<18}{line}")
    return 0


if __name__ == "__main__":
    run_script(main)

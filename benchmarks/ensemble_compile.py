"""Does ``train.compile`` pay for itself on a study's own configs? Eager against compiled ensemble
steps, per config shape, with the compile time that the compiled step costs up front.

For the smallest and the largest config shape a study file can draw (each ``choice`` parameter at
its lowest and at its highest value; the other parameters at their low end, which does not change
the cost of a step), each round builds the config's ensemble of every arm twice, eager and compiled
(``training/ensemble.py``), and times ``--steps`` optimizer steps of each after a warm-up. The
compiled step's first call, less one step, is its compile time. A warm-up compile first pays the
compiler's one-time start-up in this process (printed: a study worker pays it at its first
compile). Round 1 then compiles each shape cold (``cold_compile``: nothing compiled to reuse, in
memory or on disk), as a study worker's first config of a shape does on a machine with an empty
compiler cache. In later rounds the process already holds the graph of each shape and reuses
it, compiling nothing, as the worker does for its later configs of that shape. The last column
is what compiling saves over the study's step count: ``steps x (eager - compiled) - compile
time``, negative when compiling costs more than it saves.

    python benchmarks/ensemble_compile.py [--spec default|quick|FILE] [--steps 200] [--rounds 2] [--threads 2]
                                          [--default-malloc]
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from pathlib import Path

from timing import add_malloc_flag, cold_compile, set_allocator, spec_path

from commands.tools import Parser, positive_int, run_script


def shapes(spec: dict) -> dict[str, dict]:
    """The smallest and the largest config of the study file's space: every ``choice`` parameter at
    its lowest, or highest, value; other parameters at their low end."""

    def pick(p: dict, largest: bool):
        if p["type"] == "choice":
            return max(p["values"]) if largest else min(p["values"])
        return p["low"]

    return {
        "largest" if big else "smallest": {k: pick(p, big) for k, p in spec["params"].items()} for big in (False, True)
    }


def step_times(spec: dict, values: dict, compile_: bool, steps: int) -> tuple[float, float]:
    """(seconds of the first step, milliseconds per step after a warm-up) of one config's ensemble."""
    from training.ensemble import EnsembleTrainer
    from training.experiments.study import arm_config, arms
    from training.trainer import training_scope

    cfgs = [arm_config(spec, values, arm) for arm in arms(spec)]
    cfgs = [dataclasses.replace(c, train=dataclasses.replace(c.train, compile=compile_)) for c in cfgs]
    with tempfile.TemporaryDirectory() as tmp, training_scope(cfgs[0]):
        tr = EnsembleTrainer(cfgs, [Path(tmp) / f"m{i}" for i in range(len(cfgs))])
        t0 = time.perf_counter()
        tr.train_step()
        first = time.perf_counter() - t0
        for _ in range(20):
            tr.train_step()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        return first, (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--spec", default="default", help="study design: default, quick, or a study file (default: default)"
    )
    ap.add_argument("--steps", type=positive_int, default=200, help="timed steps per ensemble (default 200)")
    ap.add_argument("--rounds", type=positive_int, default=2)
    ap.add_argument("--threads", type=positive_int, default=2)
    add_malloc_flag(ap)
    args = ap.parse_args()
    spec_file = spec_path(args.spec)
    if not spec_file.is_file():
        ap.error(f"no study file {spec_file}")
    if min(args.steps, args.rounds, args.threads) < 1:
        ap.error("--steps, --rounds and --threads must be positive")
    import torch

    from training.experiments.study import arm_config, arms, load_spec

    torch.set_num_threads(args.threads)
    set_allocator(args)
    spec = load_spec(spec_file)
    space = shapes(spec)
    study_steps = arm_config(spec, space["smallest"], arms(spec)[0]).train.steps  # what every config trains for
    with cold_compile():
        first, _ = step_times(spec, space["smallest"], True, 1)
    print(f"warm-up: the compiler's start-up and a cold compile of the smallest shape, {first:.1f} s")
    print(
        f"{'round':>5} {'shape':>8} {'eager ms/step':>14} {'compiled ms/step':>17} {'speed-up':>9} "
        f"{'compile s':>10} {'break-even steps':>17} {f'saved at {study_steps} steps, s':>24}"
    )
    for r in range(args.rounds):
        for name, values in space.items():
            _, eager = step_times(spec, values, False, args.steps)
            with cold_compile() if r == 0 else contextlib.nullcontext():
                first, comp = step_times(spec, values, True, args.steps)
            compile_s = max(0.0, first - comp / 1e3)  # a graph reused from an earlier round costs ~0
            gain = eager - comp
            even = f"{compile_s / gain * 1e3:.0f}" if gain > 0 else "never"
            saved = f"{study_steps * gain / 1e3 - compile_s:+.1f}"
            print(
                f"{r + 1:>5} {name:>8} {eager:>14.1f} {comp:>17.1f} {eager / comp:>8.2f}x "
                f"{compile_s:>10.1f} {even:>17} {saved:>24}",
                flush=True,
            )
    print("shapes: " + "; ".join(f"{n} {v}" for n, v in space.items()))


if __name__ == "__main__":
    run_script(main)

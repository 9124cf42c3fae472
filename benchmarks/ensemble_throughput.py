"""Model-steps/s of a batched ensemble (``training/ensemble.py``) against separate runs.

The ensemble is one config's arms as the study trains them: 2 seeds x attention dropout
{0, 0.1, 0.2, 0.3} x target {sampled, exact} = 16 demo models, each with BEMA, EMA and the
extrapolation control. The separate side trains one of those arms with the ordinary trainer
(runs one after another give the same model-steps/s). Both include the final evaluation of every
set of weights; both run in this process, alternating rounds. Target: a ratio of at least 3 on
2 CPU threads.

    python benchmarks/ensemble_throughput.py [--steps 600] [--rounds 4] [--threads 2] [--seeds 2] [--compile]

``--seeds 4`` gives the 32-member ensemble. ``--compile`` trains the ensemble with
``train.compile=true``, its compile time counted in every round: each compiled ensemble starts
with nothing compiled to reuse (``cold_compile``), as a study worker's first config of a shape
on a machine with an empty compiler cache does; read it at the study's 3000 steps. (Without
that, later ensembles of one shape in a process reuse the first one's graph and compile
nothing.) The separate runs stay eager, as the study would train them.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time

from timing import alternating_rounds, cold_compile, paired_ratio, round_args, trainer_steps_per_s

from commands.tools import run_script

BASE = [
    "train.device=cpu",
    "averaging.mode=bema",
    "train.eval_every=100000",
    "train.checkpoint_every=100000",
    "train.final_eval_sets=256",
    'averagers=[{"name": "ema", "mode": "ema", "decay": 0.999, "warmup": true},'
    ' {"name": "extrap", "mode": "extrapolation"}]',
]


def arms(seeds: int) -> list[list[str]]:
    return [
        [f"train.seed={s}", f"model.attn_dropout={p}", f"task.target={t}"]
        for s in range(seeds)
        for p in (0.0, 0.1, 0.2, 0.3)
        for t in ("sampled", "exact")
    ]


def ensemble_model_steps_per_s(steps: int, arms: list[list[str]], extra: list[str] = ()) -> float:
    from training import runs
    from training.config import load_config, preset_path
    from training.ensemble import train_ensemble

    cfgs = [load_config(preset_path("demo"), BASE + arm + [f"train.steps={steps}", *extra]) for arm in arms]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [runs.create_run_dir(f"{tmp}/m{i}", c) for i, c in enumerate(cfgs)]
        with cold_compile() if cfgs[0].train.compile else contextlib.nullcontext():
            t0 = time.perf_counter()
            train_ensemble(cfgs, dirs, progress=False)
            return len(cfgs) * steps / (time.perf_counter() - t0)


def main() -> None:
    args = round_args(__doc__, steps=600, rounds=4, seeds=2, flags={"--compile": "compile the ensemble's step"})
    members = arms(args.seeds)
    extra = ["train.compile=true"] if args.compile else []
    ens, sep = f"ensemble of {len(members)}{' (compiled)' if args.compile else ''}", "separate runs"
    speed = alternating_rounds(
        {
            ens: lambda n: ensemble_model_steps_per_s(n, members, extra),
            sep: lambda n: trainer_steps_per_s(BASE + members[2], n),
        },
        args.rounds,
        args.steps,
        pair=(ens, sep),
    )
    print(f"median model-steps/s: {ens} {statistics.median(speed[ens]):.1f}, {sep} {statistics.median(speed[sep]):.1f}")
    print(f"ratio ensemble / separate: {paired_ratio(speed[ens], speed[sep]):.2f} (median of rounds; target >= 3)")


if __name__ == "__main__":
    run_script(main)

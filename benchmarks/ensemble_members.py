"""Does a bigger ensemble train more model-steps/s? The lever of merging configs (issue 26).

The study trains each config's 16 arms as one ensemble. Configs that share a shape (batch size,
heads, ``d_head``) could share one ensemble too, with a learning rate and weight decay per
member. This measures what that would buy before building it: model-steps/s of one ensemble of
16, 32 and 48 members (2, 4 and 6 seeds of the study's 8 arms per seed) at the smallest and the
largest shape the default study draws, rounds alternating. Each ensemble includes its final
evaluation of every set of weights, whose cost per member does not shrink with the ensemble, as
in a study. The merged study would run about 20 / 8 = 2.5 configs per ensemble.

    python benchmarks/ensemble_members.py [--steps 300] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import statistics

from ensemble_throughput import arms, ensemble_model_steps_per_s
from timing import round_args

from commands.tools import run_script

SHAPES = {
    "smallest (batch 64, 1 head, d_head 32)": ["train.batch_size=64", "model.n_heads=1", "model.d_head=32"],
    "largest (batch 128, 2 heads, d_head 64)": ["train.batch_size=128", "model.n_heads=2", "model.d_head=64"],
}
SEEDS = (2, 4, 6)


def main() -> None:
    args = round_args(__doc__, steps=300, rounds=2)
    for label, shape in SHAPES.items():
        extra = ["model.d_model=64", *shape]  # the default study's d_model
        speed: dict[int, list[float]] = {s: [] for s in SEEDS}
        ensemble_model_steps_per_s(20, arms(SEEDS[0]), extra)  # warm-up: first-call allocations
        for r in range(args.rounds):
            for s in SEEDS:
                speed[s].append(ensemble_model_steps_per_s(args.steps, arms(s), extra))
            print(f"{label} round {r + 1}: " + ", ".join(f"{8 * s} members {v[-1]:.1f}" for s, v in speed.items()))
        base = speed[SEEDS[0]]
        ratios = ", ".join(
            f"{8 * s}: {statistics.median(a / b for a, b in zip(speed[s], base)):.2f}x" for s in SEEDS[1:]
        )
        print(f"{label}: model-steps/s against 16 members (median of rounds): {ratios}", flush=True)


if __name__ == "__main__":
    run_script(main)

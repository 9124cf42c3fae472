"""What does ``train.bf16`` buy a study's ensemble on this CPU? fp32 against bf16 autocast, side by side.

The CPU's matrix units run bf16 matmuls several times faster than fp32 (``study_bound.py``
prints the rate of each), but the study's matmuls are small and autocast adds casts. This times
one config's 16-member ensemble (2 seeds x the study's 8 arms), each with its final fp32
evaluation, at the smallest and the largest shape the default study draws, fp32 and bf16
alternating in each round, and prints model-steps/s and the ratio bf16 / fp32 per round and
its median. Whether bf16 changes the study's verdicts is a study run, not this benchmark
(docs/benchmarks.md).

    python benchmarks/ensemble_bf16.py [--steps 300] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

from ensemble_members import SHAPES
from ensemble_throughput import arms, ensemble_model_steps_per_s
from timing import alternating_rounds, paired_ratio, round_args

from commands.tools import run_script


def main() -> None:
    args = round_args(__doc__, steps=300, rounds=3)
    members = arms(2)
    for label, shape in SHAPES.items():
        extra = ["model.d_model=64", *shape]  # the default study's d_model
        print(label, flush=True)
        overrides = {m: [*extra, f"train.bf16={str(m == 'bf16').lower()}"] for m in ("fp32", "bf16")}
        speed = alternating_rounds(
            {m: (lambda n, o=o: ensemble_model_steps_per_s(n, members, o)) for m, o in overrides.items()},
            args.rounds,
            args.steps,
            pair=("bf16", "fp32"),
        )
        print(
            f"{label}: bf16 / fp32 model-steps/s {paired_ratio(speed['bf16'], speed['fp32']):.2f}x (median of rounds)"
        )


if __name__ == "__main__":
    run_script(main)

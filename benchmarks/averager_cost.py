"""What each extra averager costs: the demo model trained with the ``averaging`` section's BEMA
alone, and with three more averagers (extrapolation control, EMA 0.999 with warm-up, EMA 0.9999),
side by side in this process, alternating rounds. Every averager is updated every step and
evaluated at every evaluation, as in real use. Target: at most 5% of steps/s per extra averager.

    python benchmarks/averager_cost.py [--steps 1000] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import statistics

from timing import alternating_rounds, paired_ratio, round_args, trainer_steps_per_s

from commands.tools import run_script

BASE = [
    "train.device=cpu",
    "model.attn_dropout=0.1",
    "averaging.mode=bema",
    "train.eval_every=500",
    "train.checkpoint_every=1000",
    "train.final_eval_sets=256",
]
EXTRA = (
    'averagers=[{"name": "extrap", "mode": "extrapolation"}, '
    '{"name": "ema999", "mode": "ema", "decay": 0.999, "warmup": true}, '
    '{"name": "ema9999", "mode": "ema", "decay": 0.9999, "warmup": true}]'
)
N_EXTRA = 3


def main() -> None:
    args = round_args(__doc__)
    one, many = "1 averager", f"{1 + N_EXTRA} averagers"
    speed = alternating_rounds(
        {one: lambda n: trainer_steps_per_s(BASE, n), many: lambda n: trainer_steps_per_s(BASE + [EXTRA], n)},
        args.rounds,
        args.steps,
        pair=(many, one),
    )
    ratio = paired_ratio(speed[many], speed[one])
    print(f"median steps/s: {one} {statistics.median(speed[one]):.1f}, {many} {statistics.median(speed[many]):.1f}")
    print(
        f"ratio {many} / {one}: {ratio:.3f} (median of rounds); cost per extra averager "
        f"{(1 - ratio) / N_EXTRA:.1%} of steps/s (target <= 5%)"
    )


if __name__ == "__main__":
    run_script(main)

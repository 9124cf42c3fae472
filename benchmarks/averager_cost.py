"""What each extra averager costs: the demo model trained with the ``averaging`` section's BEMA
alone, and with three more averagers (extrapolation control, EMA 0.999 with warm-up, EMA 0.9999),
side by side in this process, alternating rounds. Every averager is updated every step and
evaluated at every evaluation, as in real use. Target: at most 5% of steps/s per extra averager.

    python benchmarks/averager_cost.py [--steps 1000] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from training import runs
from training.config import load_config, preset_path
from training.trainer import train

BASE = ["train.device=cpu", "model.attn_dropout=0.1", "averaging.mode=bema", "train.eval_every=500",
        "train.checkpoint_every=1000", "train.final_eval_sets=256"]
EXTRA = ('averagers=[{"name": "extrap", "mode": "extrapolation"}, '
         '{"name": "ema999", "mode": "ema", "decay": 0.999, "warmup": true}, '
         '{"name": "ema9999", "mode": "ema", "decay": 0.9999, "warmup": true}]')
N_EXTRA = 3


def steps_per_s(steps: int, extra: bool) -> float:
    cfg = load_config(preset_path("demo"), BASE + [f"train.steps={steps}"] + ([EXTRA] if extra else []))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = runs.create_run_dir(f"{tmp}/run", cfg)
        t0 = time.perf_counter()
        train(cfg, run_dir, progress=False)
        return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps_per_s(50, False), steps_per_s(50, True)  # warm-up
    one, four = [], []
    for r in range(args.rounds):
        one.append(steps_per_s(args.steps, False))
        four.append(steps_per_s(args.steps, True))
        print(f"round {r + 1}: 1 averager {one[-1]:7.1f} steps/s   {1 + N_EXTRA} averagers {four[-1]:7.1f} steps/s   "
              f"ratio {four[-1] / one[-1]:.3f}")
    # adjacent runs share this machine's drift: read the median of the per-round ratios
    ratio = statistics.median(f / o for f, o in zip(four, one))
    print(f"median steps/s: 1 averager {statistics.median(one):.1f}, {1 + N_EXTRA} averagers {statistics.median(four):.1f}")
    print(f"ratio {1 + N_EXTRA} / 1 averagers: {ratio:.3f} (median of rounds); cost per extra averager "
          f"{(1 - ratio) / N_EXTRA:.1%} of steps/s (target <= 5%)")


if __name__ == "__main__":
    main()

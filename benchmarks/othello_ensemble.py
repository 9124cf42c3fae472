"""OthelloGPT arms as one vmapped ensemble against separate runs, and the cost of exact targets.

The ensemble is one config's arms as an Othello study trains them: 2 seeds x attention dropout
{0, 0.1} x target {sampled, exact} = 8 small OthelloGPTs (2 layers, d_model 64, 2 heads, MLP,
LayerNorm, learned positions, 20 training moves), each with EMA, BEMA and the extrapolation
control. The separate side trains one exact-target arm with the ordinary trainer. Both include
the final evaluation; both run in this process, alternating rounds, on a dataset of random games
made at the start.

The exact target (uniform over the legal moves after each prefix) replays every batch's games
with the bitboard engine on the CPU; its time per batch is printed next to the ensemble's step.

    python benchmarks/othello_ensemble.py [--steps 200] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import statistics
import tempfile
import time

from timing import alternating_rounds, best_of, paired_ratio, round_args, trainer_steps_per_s

from commands.tools import run_script

MODEL = [
    "model.n_layers=2",
    "model.d_model=64",
    "model.n_heads=2",
    "model.d_head=32",
    "model.d_mlp=256",
    "othello.train_max_moves=20",
    "othello.val_games=500",
    "train.batch_size=64",
    "train.device=cpu",
    "train.eval_every=100000",
    "train.checkpoint_every=100000",
    "train.final_eval_sets=500",
    'averagers=[{"name": "ema", "mode": "ema", "decay": 0.999, "warmup": true}, {"name": "bema", "mode": "bema"},'
    ' {"name": "extrap", "mode": "extrapolation"}]',
]


def arms() -> list[list[str]]:
    return [
        [f"train.seed={s}", f"model.attn_dropout={p}", f"othello.target={t}"]
        for s in (0, 1)
        for p in (0.0, 0.1)
        for t in ("sampled", "exact")
    ]


def ensemble_model_steps_per_s(steps: int, base: list[str]) -> float:
    from training import runs
    from training.config import load_config, preset_path
    from training.ensemble import train_ensemble

    cfgs = [load_config(preset_path("othello_cpu"), base + arm + [f"train.steps={steps}"]) for arm in arms()]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [runs.create_run_dir(f"{tmp}/m{i}", c) for i, c in enumerate(cfgs)]
        t0 = time.perf_counter()
        train_ensemble(cfgs, dirs, progress=False)
        return len(cfgs) * steps / (time.perf_counter() - t0)


def main() -> None:
    import torch

    from training.tasks.othello.data import generate_dataset
    from training.tasks.othello.task import OthelloConfig, OthelloTask

    args = round_args(__doc__, steps=200, rounds=2)
    with tempfile.TemporaryDirectory() as data:
        generate_dataset(data, 20_000, seed=0, chunk=10_000, workers=1, progress=False)
        base = MODEL + [f"othello.data={data}"]
        ens, sep = "ensemble of 8", "separate runs"
        speed = alternating_rounds(
            {
                ens: lambda n: ensemble_model_steps_per_s(n, base),
                sep: lambda n: trainer_steps_per_s(base + arms()[1], n, preset="othello_cpu"),
            },
            args.rounds,
            args.steps,
            pair=(ens, sep),
        )
        print(
            f"median model-steps/s: {ens} {statistics.median(speed[ens]):.1f}, "
            f"{sep} {statistics.median(speed[sep]):.1f}"
        )
        print(f"ratio ensemble / separate: {paired_ratio(speed[ens], speed[sep]):.2f} (median of rounds)")
        task = OthelloTask(OthelloConfig(data=data, train_max_moves=20, val_games=500, target="exact"))
        batch = task.sample_batch(64, generator=torch.Generator().manual_seed(0))
        sampled = OthelloTask(OthelloConfig(data=data, train_max_moves=20, val_games=500))
        t = best_of({"exact": lambda: task.loss_target(batch), "sampled": lambda: sampled.loss_target(batch)}, 20)
        step_ms = 1000 * len(arms()) / statistics.median(speed[ens])
        print(
            f"loss target per batch of 64 games x 20 moves: exact {1000 * t['exact']:.2f} ms, "
            f"sampled {1000 * t['sampled']:.2f} ms; one ensemble step {step_ms:.1f} ms "
            f"(the exact target is computed once per batch and seed, outside the mapped step)"
        )


if __name__ == "__main__":
    run_script(main)

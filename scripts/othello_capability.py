"""How good an OthelloGPT can 2 CPU cores train inside an Othello study's budget? Learning curves.

    python scripts/othello_capability.py [--data runs/othello_data] [--out runs/othello_capability]
                                         [--steps 3000] [--shapes small,medium] [--json F]

Trains each shape (below) once on the synthetic games (generated into ``--data`` if missing:
200,000 games) with the study's length protocol (20 training moves, batch 64, lr 3e-3 with
warm-up and cosine decay, sampled targets, learned positions), evaluating every 250 steps on the
held-out games: top-1 legal rate, ITR and TV, mean over move indices 1..20 (in range) and
21..59 (beyond). Prints the curves and the seconds per step, and writes them to ``--json``.
A study must pick a shape and step count whose in-range legal rate is useful and whose cost fits
its budget; docs/othello_study.md records what this gave.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from commands.tools import Parser, check_outputs, positive_int, run_script
from training import atomic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "small": ["model.n_layers=2", "model.d_model=64", "model.n_heads=2", "model.d_head=32", "model.d_mlp=256"],
    "medium": ["model.n_layers=3", "model.d_model=96", "model.n_heads=3", "model.d_head=32", "model.d_mlp=384"],
    "cpu": ["model.n_layers=4", "model.d_model=128", "model.n_heads=4", "model.d_head=32", "model.d_mlp=512"],
}
PROTOCOL = [
    "othello.train_max_moves=20",
    "othello.val_games=1000",
    "train.batch_size=64",
    "train.lr=3e-3",
    "train.warmup_steps=100",
    "train.eval_every=250",
    "train.checkpoint_every=100000",
    "train.eval_sets=1000",
    "train.final_eval_sets=1000",
    "train.device=cpu",
]


def curve(run_dir: Path) -> list[dict]:
    from training import runs

    out = []
    for rec in runs.read_metrics(run_dir):
        s = rec["raw"]["summary"]
        out.append(
            {
                "step": rec["step"],
                "elapsed_s": rec["elapsed_s"],
                **{f"{m}_{part}": s[part][m] for part in ("in_range", "beyond") for m in ("legal_top1", "itr", "tv")},
            }
        )
    return out


def main() -> int:
    from training import runs
    from training.allocator import keep_freed_memory
    from training.config import load_config, preset_path
    from training.tasks.othello.data import generate_dataset
    from training.trainer import train

    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("runs/othello_data"))
    ap.add_argument("--out", type=Path, default=Path("runs/othello_capability"))
    ap.add_argument("--steps", type=positive_int, default=3000)
    ap.add_argument("--shapes", default="small,medium")
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    check_outputs(args)
    import torch

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if not (args.data / "games.npy").exists():
        generate_dataset(args.data, 200_000, seed=0, workers=2, progress=False)
    results = {}
    for name in args.shapes.split(","):
        cfg = load_config(
            preset_path("othello_cpu"),
            SHAPES[name] + PROTOCOL + [f"othello.data={args.data}", f"train.steps={args.steps}"],
        )
        run = runs.prepare_run(args.out / name, cfg, overwrite=True)
        t0 = time.perf_counter()
        train(cfg, run, progress=False)
        seconds = time.perf_counter() - t0
        params = sum(p.numel() for p in runs.load_run(run, "raw").parameters())
        results[name] = {
            "overrides": SHAPES[name],
            "params": params,
            "seconds_per_step": seconds / args.steps,
            "curve": curve(run),
        }
        print(f"{name}: {params:,} parameters, {seconds / args.steps * 1000:.1f} ms per step")
        print(f"  {'step':>6} {'legal in':>9} {'legal beyond':>13} {'ITR in':>8} {'TV in':>8}")
        for c in results[name]["curve"]:
            print(
                f"  {c['step']:>6} {c['legal_top1_in_range']:>9.4f} {c['legal_top1_beyond']:>13.4f} "
                f"{c['itr_in_range']:>8.4f} {c['tv_in_range']:>8.4f}"
            )
    if args.json:
        atomic.write_text(
            args.json,
            json.dumps(
                {"protocol": PROTOCOL, "steps": args.steps, "threads": args.threads, "results": results}, indent=1
            ),
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_script(main)

"""Time to evaluate every length 1..v-1 with 2,048 sets each, against a per-length loop.

The workbench evaluates all lengths in one batched pass over permutation prefixes (causal
attention makes position s the set of the first s items). The baseline runs one forward pass per
length on sets of exactly that length, the obvious way. Same model, same threads, same process.
Target: the workbench under 5 s on the CPU for a 1-layer model.

    python benchmarks/eval_speed.py [--sets 2048] [--threads 2]
"""

from __future__ import annotations

import torch
from timing import best_of, demo_task_and_model

from commands.tools import Parser, positive_int, run_script
from interp.set_complement.probes import complement_metrics, evaluate_lengths


@torch.no_grad()
def per_length_loop(model, task, sets):
    out = []
    for s in range(1, task.v):
        b = task.sample_batch(sets, max_len=s, generator=torch.Generator().manual_seed(s))
        logits = model(b.tokens)[:, -1]
        members = torch.nn.functional.one_hot(b.items, task.v).sum(1).bool()
        out.append(complement_metrics(logits, members)["tv"].mean().item())
    return out


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=positive_int, default=2048)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--repeats", type=positive_int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task, model = demo_task_and_model()
    evaluate_lengths(model, task, n=64)
    t = best_of(
        {
            "ours": lambda: evaluate_lengths(model, task, n=args.sets),
            "base": lambda: per_length_loop(model, task, args.sets),
        },
        args.repeats,
    )
    o, b = t["ours"], t["base"]
    print(f"v={task.v}: lengths 1..{task.v - 1} x {args.sets} sets, all six metrics")
    print(f"workbench one-pass evaluation: {o:.3f} s (target < 5 s)")
    print(f"per-length loop (tv only):     {b:.3f} s")
    print(f"speed-up: {b / o:.2f}x")


if __name__ == "__main__":
    run_script(main)

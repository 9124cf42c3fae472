"""Time for every probe over lengths 1..v-1 with 1,024 sets each, against per-length loops.

Probes: metrics, attention entropy, logit displacement (exact decomposition), on the demo's
1-layer model. The workbench measures all lengths in shared batched passes; the baseline runs
one cached forward pass per length, the obvious way. Target: workbench under 10 s on the CPU.

    python benchmarks/probe_speed.py [--sets 1024] [--threads 2]
"""

from __future__ import annotations

import torch
from timing import best_of, demo_task_and_model

from commands.tools import Parser, positive_int, run_script
from interp.core.attention import pattern_entropy
from interp.set_complement.displacement import decompose_logits, displacement_by_length
from interp.set_complement.probes import attention_entropy, complement_metrics, evaluate_lengths


def workbench(model, task, sets):
    evaluate_lengths(model, task, n=sets)
    attention_entropy(model, task, n=sets)
    displacement_by_length(model, task, n=sets)


@torch.no_grad()
def per_length(model, task, sets):
    for s in range(1, task.v):
        b = task.sample_batch(sets, max_len=s, generator=torch.Generator().manual_seed(s))
        logits, cache = model.run_with_cache(b.tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        members = torch.nn.functional.one_hot(b.items, task.v).sum(1).bool()
        complement_metrics(logits[:, -1], members)
        pattern_entropy(cache["blocks.0.attn.hook_pattern"][:, :, -1])
        decompose_logits(model, b.tokens)


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=positive_int, default=1024)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--repeats", type=positive_int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task, model = demo_task_and_model()
    workbench(model, task, 32)
    t = best_of(
        {
            "ours": lambda: workbench(model, task, args.sets),
            "base": lambda: per_length(model, task, args.sets),
        },
        args.repeats,
    )
    o, b = t["ours"], t["base"]
    print(f"v={task.v}: lengths 1..{task.v - 1} x {args.sets} sets; metrics + attention entropy + logit displacement")
    print(f"workbench (batched over lengths): {o:.3f} s (target < 10 s)")
    print(f"per-length loop:                  {b:.3f} s")
    print(f"speed-up: {b / o:.2f}x")


if __name__ == "__main__":
    run_script(main)

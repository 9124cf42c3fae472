"""Steps/s of the workbench trainer against a minimal plain-PyTorch loop, side by side.

Both train the demo's model (1-layer attention-only HookedTransformer, v=32, lengths 1..8) at the
same batch size on the same CPU threads, in this one process, alternating rounds so that machine
noise hits both. The workbench run includes everything it does in real use: dropout hooks, BEMA
updated every step, periodic evaluation of raw and averaged weights at every length, atomic
checkpoints and the final evaluation. Target: ratio >= 0.9.

    python benchmarks/train_throughput.py [--steps 2000] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from training import runs
from training.config import load_config, preset_path
from training.models import build_model
from training.tasks.set_complement import SetComplementTask
from training.trainer import train


def workbench(steps: int) -> float:
    cfg = load_config(
        preset_path("demo"),
        [f"train.steps={steps}", "train.device=cpu", "model.attn_dropout=0.1", "averaging.mode=bema",
         "train.eval_every=500", "train.checkpoint_every=1000", "train.final_eval_sets=256"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = runs.create_run_dir(f"{tmp}/run", cfg)
        t0 = time.perf_counter()
        train(cfg, run_dir, progress=False)
        return steps / (time.perf_counter() - t0)


def plain(steps: int, fused: bool = False) -> float:
    """The smallest honest loop: sample permutations, forward, cross-entropy, AdamW step.

    ``fused=False`` is what a minimal loop writes (``torch.optim.AdamW`` defaults); ``fused=True``
    gives the plain loop the same fused AdamW kernel as the workbench, the stricter baseline."""
    cfg = load_config(preset_path("demo"), ["train.device=cpu"])
    task = SetComplementTask(cfg.task)
    model = build_model(cfg.model, task.d_vocab, task.d_vocab_out, cfg.n_ctx(), seed=0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, fused=fused)
    v, L, B = cfg.task.v, cfg.task.train_max_len, cfg.train.batch_size
    t0 = time.perf_counter()
    for _ in range(steps):
        perm = torch.rand(B, v).argsort(1)[:, : L + 1]
        logits = model(perm[:, :L] + 1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, v), perm[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plain(50), plain(50, fused=True), workbench(50)  # warm-up: first-call allocations, lazy imports
    ours, base, fused = [], [], []
    for r in range(args.rounds):
        ours.append(workbench(args.steps))
        base.append(plain(args.steps))
        fused.append(plain(args.steps, fused=True))
        print(
            f"round {r + 1}: workbench {ours[-1]:7.1f} steps/s   plain loop {base[-1]:7.1f} steps/s   "
            f"plain loop + fused AdamW {fused[-1]:7.1f} steps/s"
        )
    o, b, f = (statistics.median(x) for x in (ours, base, fused))
    print(f"median steps/s: workbench {o:.1f}, plain loop {b:.1f}, plain loop + fused AdamW {f:.1f}")
    print(f"ratio workbench / plain loop:              {o / b:.3f} (target >= 0.9)")
    print(f"ratio workbench / plain loop + fused AdamW: {o / f:.3f}")


if __name__ == "__main__":
    main()

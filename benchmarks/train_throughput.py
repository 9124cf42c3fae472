"""Steps/s of the workbench trainer against a plain-PyTorch loop doing the same math, side by side.

Both train the demo's model (1-layer attention-only HookedTransformer, v=32, lengths 1..8) with
attention dropout 0.1 and BEMA refreshed every step, at the same batch size on the same CPU
threads, in this one process, alternating rounds so that machine noise hits both. The plain loop
is written out by hand around the task's own batches and loss: the same fused AdamW with the same
parameter groups, warm-up + cosine schedule and gradient clipping, the BEMA update on a list of
tensors, and the same evaluations (raw and averaged weights at every length, every 500 steps and
at the end). So the ratio measures what the trainer adds on top of the math: the averager class,
loss bookkeeping and NaN checks, metrics records, checkpoints, the progress bar.
Target: ratio >= 0.95. A bare loop (no dropout, no averaging, no evaluation) is timed as well, to
show what that math itself costs.

    python benchmarks/train_throughput.py [--steps 1000] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from timing import alternating_rounds, paired_ratio, round_args, trainer_steps_per_s

from commands.tools import run_script
from training.config import load_config, preset_path
from training.models import build_model
from training.tasks.set_complement.metrics import evaluate_lengths
from training.tasks.set_complement.task import SetComplementTask

OVERRIDES = [
    "train.device=cpu",
    "model.attn_dropout=0.1",
    "averaging.mode=bema",
    "train.eval_every=500",
    "train.checkpoint_every=1000",
    "train.final_eval_sets=256",
]


def matched(steps: int) -> float:
    """The trainer's math as a plain loop: dropout, schedule, clipping, BEMA every step, evaluations."""
    cfg = load_config(preset_path("demo"), OVERRIDES + [f"train.steps={steps}"])
    tc, av = cfg.train, cfg.averaging_configs()["averaged"]
    task = SetComplementTask(cfg.task)
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model, task.d_vocab, task.d_vocab_out, cfg.n_ctx(), seed=tc.seed)
    avg_model = build_model(cfg.model, task.d_vocab, task.d_vocab_out, cfg.n_ctx(), seed=tc.seed)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    # the trainer's two parameter groups: weight decay on matrices only
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": tc.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=tc.lr, betas=tuple(tc.betas), fused=True)

    def lr_at(step):  # linear warm-up, then cosine to min_lr_ratio
        if step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps))
        return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(tc.seed + 1)
    live = [p.detach() for p in params]
    ema = theta0 = out = None

    def evaluate(sets):
        evaluate_lengths(model, task, n=sets, seed=tc.eval_seed)
        state = model.state_dict()
        state.update(dict(zip(names, out)))
        avg_model.load_state_dict(state)
        evaluate_lengths(avg_model, task, n=sets, seed=tc.eval_seed)

    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        batch = task.sample_batch(tc.batch_size, generator=gen)  # the same data and loss as the trainer's
        loss = task.loss(model(batch.tokens), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # clip_grad_norm_ skips its foreach kernels on the CPU; the same clipping with them:
        grads = [p.grad for p in params]
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, (tc.grad_clip / (total + 1e-6)).clamp(max=1.0))
        opt.step()
        sched.step()
        with torch.no_grad():  # BEMA: theta_0 at the first step, then every step
            if ema is None:
                ema, theta0, out = [p.clone() for p in live], [p.clone() for p in live], [p.clone() for p in live]
            else:
                base = av.rho + av.gamma * (step - 1)
                torch._foreach_lerp_(ema, live, max(base**-av.kappa, av.min_beta))
                drift = torch._foreach_sub(live, theta0)
                torch._foreach_mul_(drift, base**-av.eta)
                out = torch._foreach_add(drift, ema)
        if step % tc.eval_every == 0 or step == steps:
            evaluate(tc.eval_sets)
    evaluate(tc.final_eval_sets)
    return steps / (time.perf_counter() - t0)


def bare(steps: int) -> float:
    """The smallest honest loop: sample permutations, forward, cross-entropy, fused AdamW step."""
    cfg = load_config(preset_path("demo"), ["train.device=cpu"])
    task = SetComplementTask(cfg.task)
    model = build_model(cfg.model, task.d_vocab, task.d_vocab_out, cfg.n_ctx(), seed=0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, fused=True)
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
    args = round_args(__doc__)
    # the trainer runs in deterministic mode by default; give the plain loops the same kernels
    torch.use_deterministic_algorithms(True)
    ours, same, plain = "workbench", "plain loop, same math", "bare loop"
    speed = alternating_rounds(
        {ours: lambda n: trainer_steps_per_s(OVERRIDES, n), same: matched, plain: bare},
        args.rounds,
        args.steps,
        pair=(ours, same),
    )
    # the ratio of the best rounds is printed too: noise only ever slows a run down
    best = max(speed[ours]) / max(speed[same])
    print(
        f"median steps/s: workbench {statistics.median(speed[ours]):.1f}, plain loop with the same math "
        f"{statistics.median(speed[same]):.1f}, bare loop {statistics.median(speed[plain]):.1f}"
    )
    print(
        f"ratio workbench / plain loop, same math: {paired_ratio(speed[ours], speed[same]):.3f} (median of rounds), "
        f"{best:.3f} (best rounds); target >= 0.95: the trainer's own overhead"
    )
    print(
        f"ratio same math / bare loop:             {paired_ratio(speed[same], speed[plain]):.3f} "
        "(median of rounds): what dropout, BEMA and evaluations cost"
    )


if __name__ == "__main__":
    run_script(main)

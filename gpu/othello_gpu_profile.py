"""Where an OthelloGPT training step's time goes on the GPU: step time, host time to issue a step,
device busy time, the matrix-multiply share, and the top kernels, for eager and compiled steps of
the full preset, and the step time at a second batch size (does the step scale with the batch?).

    python gpu/othello_gpu_profile.py [--batch 1024] [--scale-batch 2048] [--compile both]
    python gpu/othello_gpu_profile.py --tiny --device cpu     # the same script at a tiny size

Reading it: if device busy time is close to the step time the step is device-bound, and the
matmul share says how much of that is tensor-core work (the rest is memory-bound elementwise
work: layer norms, dropout, residual adds, casts); if the host time is close to the step time the
step is launch-bound, and a larger batch comes almost free.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from othello_gpu import (  # noqa: E402 (found through the sys.path line above)
    PEAK,
    TINY_MODEL,
    check_imports,
    device_sync,
    flops_per_token,
    generate,
    say,
    time_steps,
)

MATMUL_WORDS = ("gemm", "cublas", "cutlass", "xmma", "nvjet", "matmul", "addmm", "aten::mm", "aten::bmm")


def is_matmul(name: str) -> bool:
    n = name.lower()
    return any(w in n for w in MATMUL_WORDS)


def device_rows(events, steps: int, cuda: bool) -> list[tuple[str, float, int]]:
    """(name, ms per step, calls per step) of the work that ran, most expensive first.

    On a GPU only kernel rows count: an aten op's row also carries the device time of the
    kernels it launched, so counting op rows too would count every kernel twice. On the CPU only
    aten leaf ops count, or nested calls would be counted twice."""
    import torch

    rows = []
    for e in events:
        if cuda:
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            t = e.self_device_time_total
        else:
            if not e.key.startswith("aten::"):
                continue
            t = e.self_cpu_time_total
        if t > 0:
            rows.append((e.key, t / steps / 1e3, e.count // steps))
    return sorted(rows, key=lambda r: -r[1])


def profile_steps(trainer, steps: int) -> dict:
    """Device time per step in total, in matrix multiplies, and by kernel (top 12)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
    rows = device_rows(prof.key_averages(), steps, cuda)
    busy = sum(r[1] for r in rows)
    mm = sum(r[1] for r in rows if is_matmul(r[0]))
    return {"busy_ms": busy, "matmul_ms": mm, "top": rows[:12]}


def host_ms(trainer, steps: int) -> float:
    """Host time to issue one step when the device never holds it back (queue drained first)."""
    sync = device_sync(trainer.device)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    issued = (time.perf_counter() - t0) / steps
    sync()
    return issued * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1024, help="games per step (default 1024)")
    ap.add_argument("--scale-batch", type=int, default=2048, help="second batch size to time (0: skip)")
    ap.add_argument("--compile", choices=("off", "on", "both"), default="both")
    ap.add_argument("--steps", type=int, default=5, help="profiled steps per mode (default 5)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--tiny", action="store_true", help="tiny model and data (for a CPU check)")
    ap.add_argument("--wheels", type=Path, default=None, help="install missing packages offline from the wheels here")
    args = ap.parse_args()
    check_imports(args.wheels)

    import numpy as np
    import torch

    from training.tasks.othello.checkpoints import othello_config
    from training.trainer import Trainer, training_scope

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tmp = Path(tempfile.mkdtemp(prefix="othello_profile_"))
    (tmp / "data").mkdir()
    games, _ = generate(3000 if args.tiny else 200_000, device, 30.0)
    np.save(tmp / "data" / "games.npy", games.numpy())
    base = [f"train.device={device}", "othello.val_games=200", "train.steps=100000", "train.warmup_steps=10"]
    if device.type != "cuda":
        base.append("train.bf16=false")
    if args.tiny:
        base += TINY_MODEL
    warmup, timed = (3, 5) if args.tiny else (20, 30)
    say(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")

    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    for compiled in modes:
        for batch in [args.batch] + ([args.scale_batch] if args.scale_batch and compiled == modes[-1] else []):
            cfg = othello_config(
                "full", tmp / "data", base + [f"train.batch_size={batch}", f"train.compile={str(compiled).lower()}"]
            )
            name = f"{'compiled' if compiled else 'eager'}, batch {batch}"
            try:
                with training_scope(cfg):  # the kernels and seeding a real run gets
                    tr = Trainer(cfg, tmp)
                    warm_s, step_s = time_steps(tr, warmup, timed)
                    issue = host_ms(tr, timed)
                    prof = profile_steps(tr, args.steps)
            except Exception as e:  # a compiler failure must not hide the other figures
                say(f"{name}: failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                continue
            T = cfg.othello.train_max_moves
            tok_s = batch * T / step_s
            mfu = flops_per_token(tr.model, T)[1] * tok_s / PEAK
            say(
                f"{name}: {step_s * 1e3:.2f} ms/step (warm-up {warm_s:.1f} s), host issues a step in {issue:.2f} ms, "
                f"device busy {prof['busy_ms']:.2f} ms/step of which matmul {prof['matmul_ms']:.2f} ms "
                f"({prof['matmul_ms'] / max(prof['busy_ms'], 1e-9):.0%}); {tok_s:,.0f} tokens/s, MFU {mfu:.1%}"
            )
            for key, ms, calls in prof["top"]:
                say(f"    {ms:8.3f} ms/step  x{calls:<4d} {'[mm] ' if is_matmul(key) else ''}{key[:110]}")
            del tr


if __name__ == "__main__":
    main()

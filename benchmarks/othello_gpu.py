"""OthelloGPT on one GPU in one bounded run: data made on the GPU, the full preset trained, and
tokens/s, model FLOP utilisation (MFU) and the top-1 legal rate per move index printed.

    python benchmarks/othello_gpu.py [--minutes 6] [--games 2000000] [--compile] [--device cuda]
    python benchmarks/othello_gpu.py --tiny --device cpu      # the same script at a tiny size

MFU = (6 N + 12 L d T) x tokens/s / peak, with N the non-embedding parameters, L layers, d_model,
T the trained context, and peak 989 TFLOP/s (H100 bf16 dense). Tokens/s is measured over pure
training steps after warm-up. A GPU machine may lack transformer-lens: the script checks its
imports first, installs missing packages offline from wheel files in ``benchmarks/wheels/`` when
that folder exists, and otherwise says exactly what is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
NEEDED = {"numpy": "numpy", "torch": "torch", "transformer_lens": "transformer-lens", "safetensors": "safetensors",
          "tqdm": "tqdm", "jaxtyping": "jaxtyping"}
PEAK = 989e12


def check_imports() -> None:
    missing = [pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None]
    wheels = HERE / "wheels"
    if missing and wheels.is_dir() and any(wheels.glob("*.whl")):
        print(f"installing {', '.join(missing)} from {wheels} (offline)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *missing], check=False)
        importlib.invalidate_caches()
        missing = [pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print(f"error: missing Python packages: {', '.join(missing)} (put their wheels in {wheels}/ and rerun)", file=sys.stderr)
        raise SystemExit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget in minutes (default 6)")
    ap.add_argument("--games", type=int, default=2_000_000, help="games to generate on the device")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward pass")
    ap.add_argument("--tiny", action="store_true", help="tiny model and data (for a CPU check)")
    ap.add_argument("--out", type=Path, default=None, help="keep the run directory here")
    args = ap.parse_args()
    check_imports()

    import numpy as np
    import torch

    from training import atomic, runs
    from training.othello_models import othello_config
    from training.tasks.othello_torch import random_games
    from training.trainer import Trainer, train

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    games_n = 3000 if args.tiny else args.games
    tmp = Path(tempfile.mkdtemp(prefix="othello_gpu_"))
    data = tmp / "data"
    data.mkdir()

    t0 = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(0)
    chunks = [random_games(min(500_000, games_n - i), gen, device) for i in range(0, games_n, 500_000)]
    games = torch.cat(chunks)
    if device.type == "cuda":
        torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    np.save(data / "games.npy", games.cpu().numpy())
    atomic.write_json(data / "games.json", {"count": games_n, "seed": 0, "generator": "othello_torch", "device": str(device)})
    print(f"data: {games_n} games on {device} in {gen_s:.1f} s ({games_n / gen_s:,.0f} games/s)")

    overrides = [f"train.device={device}", "train.eval_every=1000000", "train.checkpoint_every=1000000",
                 f"train.compile={'true' if args.compile else 'false'}", "train.final_eval_sets=2000", "othello.val_games=2000"]
    if device.type != "cuda":
        overrides.append("train.bf16=false")
    if args.tiny:
        overrides += ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_head=16", "model.d_mlp=64",
                      "train.batch_size=16", "othello.val_games=200", "train.final_eval_sets=200", "train.warmup_steps=5"]
    cfg = othello_config("full", data, overrides + ["train.steps=100000"])

    # calibrate: time pure optimizer steps after a warm-up (compilation, allocator, kernels)
    probe = Trainer(cfg, tmp)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3 if args.tiny else 20):
        probe.train_step()
    sync()
    n_cal = 5 if args.tiny else 50
    t0 = time.perf_counter()
    for _ in range(n_cal):
        probe.train_step()
    sync()
    step_s = (time.perf_counter() - t0) / n_cal
    m = probe.model.cfg
    non_embed = sum(p.numel() for n, p in probe.model.named_parameters() if not n.startswith(("embed", "pos_embed", "unembed")))
    T = cfg.othello.train_max_moves
    tokens_per_step = cfg.train.batch_size * T
    flops_per_token = 6 * non_embed + 12 * m.n_layers * m.d_model * T
    tok_s = tokens_per_step / step_s
    del probe

    steps = 20 if args.tiny else max(100, int(args.minutes * 60 / step_s))
    cfg = othello_config("full", data, overrides + [f"train.steps={steps}", f"train.warmup_steps={min(1000, steps // 10)}"])
    run_dir = runs.create_run_dir(args.out or tmp / "run", cfg, overwrite=True)
    t0 = time.perf_counter()
    res = train(cfg, run_dir, progress=not args.tiny)
    wall = time.perf_counter() - t0
    final = res.final["raw"]
    summ = final.summary()
    print(f"model: {m.n_layers} layers, d_model {m.d_model}, {non_embed / 1e6:.1f}M non-embedding parameters; "
          f"batch {cfg.train.batch_size} x {T} tokens; bf16 {cfg.train.bf16 and device.type == 'cuda'}; compile {args.compile}")
    print(f"tokens/s: {tok_s:,.0f} ({step_s * 1e3:.1f} ms/step)")
    print(f"MFU: {flops_per_token * tok_s / PEAK:.1%} of {PEAK / 1e12:.0f} TFLOP/s")
    print(f"training: {steps} steps in {wall:.0f} s wall (evaluation included)")
    print(f"legal top-1: in range (moves 1-{T}) {summ['in_range']['legal_top1']:.4f}, beyond {summ.get('beyond', {}).get('legal_top1', float('nan')):.4f}")
    print("legal top-1 by move index: " + json.dumps([round(x, 4) for x in final.values["legal_top1"]]))


if __name__ == "__main__":
    main()

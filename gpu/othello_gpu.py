"""OthelloGPT on one GPU in one bounded run: data made on the GPU, the full preset trained, and
tokens/s, model FLOP utilisation (MFU) and the top-1 legal rate per move index printed.

    python gpu/othello_gpu.py [--minutes 4.5] [--games 8000000] [--batch 1024] [--compile auto]
    python gpu/othello_gpu.py --tiny --device cpu      # the same script at a tiny size
    python gpu/othello_gpu.py --check-only             # imports only (installs wheels if given)

Steps: (1) check that every needed package imports (in a child process, so a broken install is
reported as the exception it raises), installing missing ones offline from ``--wheels DIR`` when
given; (2) generate games on the device with the torch engine; (3) time pure training steps after
a warm-up, eager and (``--compile auto|on``) compiled, and keep the faster; (4) train the full
preset for as many steps as fit ``--minutes`` at that speed; (5) evaluate on held-out games.

In the same process a plain PyTorch GPT of the same shape (``plain_gpt.py``, nanoGPT style:
fused LayerNorm, SDPA, compiled when ours is) is timed the same way, and our tokens/s is printed
as a ratio of it.

MFU = (6 N + 12 L d T) x tokens/s / peak, with N the non-embedding parameters, L layers, d_model,
T the trained context, and peak 989 TFLOP/s (H100 bf16 dense). Tokens/s is measured over pure
training steps after warm-up; the whole training wall time (evaluation, checkpoint and a
recompile included) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
NEEDED = {
    "numpy": "numpy",
    "torch": "torch",
    "transformer_lens": "transformer-lens",
    "safetensors": "safetensors",
    "tqdm": "tqdm",
    "jaxtyping": "jaxtyping",
}
PEAK = 989e12
TINY_MODEL = ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_head=16", "model.d_mlp=64"]
_PROBE = """
import importlib, json, sys
bad = {}
for mod in sys.argv[1:]:
    try:
        importlib.import_module(mod)
    except Exception as e:
        bad[mod] = f"{type(e).__name__}: {e}"
print(json.dumps(bad))
"""


def import_problems(extra_path: Path | None = None) -> dict[str, str]:
    """Package name -> the error its import raises, checked in a fresh interpreter."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", _PROBE, *NEEDED], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"python": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return {NEEDED[mod]: err for mod, err in json.loads(proc.stdout).items()}


def check_imports(wheels: Path | None) -> None:
    """Exit 2 naming each package that does not import; first try the wheels in ``wheels``."""
    problems = import_problems()
    if problems and wheels is not None:
        found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
        if not found:
            print(f"error: no wheel files in {wheels}", file=sys.stderr)
            raise SystemExit(2)
        target = Path(tempfile.mkdtemp(prefix="wm_site_"))
        print(f"installing {len(found)} wheels from {wheels} into {target} (offline, no dependency resolution)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--target",
                str(target),
                *map(str, found),
            ],
            check=False,
        )
        problems = import_problems(target)
        if not problems:
            sys.path.insert(0, str(target))
    if problems:
        for pkg, err in problems.items():
            print(f"error: {pkg} does not import ({err})", file=sys.stderr)
        print(
            f"error: missing Python packages: {', '.join(problems)} (rerun with --wheels DIR holding their wheels)",
            file=sys.stderr,
        )
        raise SystemExit(2)


def say(msg: str) -> None:
    print(msg, flush=True)


def generate(games_n: int, device, max_seconds: float):
    """Games made on ``device`` in chunks, stopping early once ``max_seconds`` have passed."""
    import torch

    from training.tasks.othello.engine_torch import random_games

    gen = torch.Generator(device=device).manual_seed(0)
    chunk = 1_000_000 if device.type == "cuda" else 100_000
    chunks, made, t0 = [], 0, time.perf_counter()
    while made < games_n and (made == 0 or time.perf_counter() - t0 < max_seconds):
        chunks.append(random_games(min(chunk, games_n - made), gen, device).cpu())
        made += chunks[-1].shape[0]
    return torch.cat(chunks), time.perf_counter() - t0


def device_sync(device):
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def flops_per_token(model, T: int) -> tuple[int, int]:
    """(N, 6 N + 12 L d T): non-embedding parameters and training FLOPs per token at context T."""
    m = model.cfg
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("embed", "pos_embed", "unembed")))
    return n, 6 * n + 12 * m.n_layers * m.d_model * T


def time_steps(trainer, warmup: int, timed: int) -> tuple[float, float]:
    """(warm-up seconds, seconds per step afterwards) of pure optimizer steps."""
    sync = device_sync(trainer.device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step()
    sync()
    t1 = time.perf_counter()
    for _ in range(timed):
        trainer.train_step()
    sync()
    return t1 - t0, (time.perf_counter() - t1) / timed


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--minutes", type=float, default=4.5, help="training budget in minutes at the timed speed (default 4.5)"
    )
    ap.add_argument(
        "--total-minutes",
        type=float,
        default=8.0,
        help="fewer training steps if needed so the whole script ends within this (default 8)",
    )
    ap.add_argument("--games", type=int, default=8_000_000, help="games to generate on the device (default 8M)")
    ap.add_argument("--data-seconds", type=float, default=60.0, help="stop generating after this long (default 60)")
    ap.add_argument("--batch", type=int, default=None, help="games per step (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument(
        "--compile",
        choices=("off", "on", "auto"),
        default="off",
        help="torch.compile the training forward: on, off, or time both and keep the faster",
    )
    # the literal list of training.config.COMPILE_MODES: that module needs torch, not yet checked here
    ap.add_argument(
        "--compile-mode",
        default="default",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        help="torch.compile mode (reduce-overhead: CUDA graphs, against host launch gaps)",
    )
    ap.add_argument("--tiny", action="store_true", help="tiny model and data (for a CPU check)")
    ap.add_argument("--out", type=Path, default=None, help="keep the run directory here")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    ap.add_argument("--wheels", type=Path, default=None, help="install missing packages offline from the wheels here")
    ap.add_argument("--check-only", action="store_true", help="check (and install) the imports, then stop")
    return ap.parse_args(argv)


def make_data(args, device, folder: Path, record) -> Path:
    """Games generated on ``device`` into ``folder/data`` (games.npy + games.json)."""
    import numpy as np

    from training import atomic

    data = folder / "data"
    data.mkdir()
    games, gen_s = generate(3000 if args.tiny else args.games, device, args.data_seconds)
    np.save(data / "games.npy", games.numpy())
    atomic.write_json(
        data / "games.json",
        {"count": int(games.shape[0]), "seed": 0, "generator": "othello_torch", "device": str(device)},
    )
    record(games=int(games.shape[0]), games_per_s=games.shape[0] / gen_s)
    say(f"data: {games.shape[0]:,} games on {device} in {gen_s:.1f} s ({games.shape[0] / gen_s:,.0f} games/s)")
    return data


def base_overrides(args, device) -> list[str]:
    overrides = [
        f"train.device={device}",
        f"train.compile_mode={args.compile_mode}",
        "train.eval_every=1000000",
        "train.checkpoint_every=1000000",
        "train.final_eval_sets=2000",
        "othello.val_games=2000",
    ]
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    if args.lr:
        overrides.append(f"train.lr={args.lr}")
    if device.type != "cuda":
        overrides.append("train.bf16=false")
    if args.tiny:
        overrides += TINY_MODEL + [
            "train.batch_size=16",
            "othello.val_games=200",
            "train.final_eval_sets=200",
            "train.warmup_steps=5",
        ]
    return overrides


def time_modes(args, data: Path, overrides: list[str], folder: Path, record) -> dict:
    """Time pure optimizer steps after a warm-up (compilation, allocator, kernel selection), eager
    and/or compiled as ``--compile`` says; the faster mode with its speed and MFU."""
    from training.tasks.othello.checkpoints import othello_config
    from training.trainer import Trainer, training_scope

    modes = {"off": [False], "on": [True], "auto": [False, True]}[args.compile]
    warmup, timed = (3, 5) if args.tiny else (20, 50)
    speed, shape = {}, {}
    for compiled in modes:
        cfg = othello_config("full", data, overrides + ["train.steps=100000", f"train.compile={str(compiled).lower()}"])
        try:
            with training_scope(cfg):  # the kernels and seeding a real run gets
                probe = Trainer(cfg, folder)
                warm_s, step_s = time_steps(probe, warmup, timed)
        except Exception as e:  # a compiler failure must not cost the eager run
            say(f"timing with compile={compiled} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            continue
        name = "compiled" if compiled else "eager"
        speed[compiled] = step_s
        say(f"{name}: {step_s * 1e3:.2f} ms/step after a {warm_s:.1f} s warm-up of {warmup} steps")
        record(**{f"{name}_ms_per_step": step_s * 1e3, f"{name}_warmup_s": warm_s})
        T = cfg.othello.train_max_moves
        non_embed, flops = flops_per_token(probe.model, T)
        shape = dict(
            model=probe.model.cfg,
            T=T,
            non_embed=non_embed,
            flops=flops,
            batch=cfg.train.batch_size,
            bf16=cfg.train.bf16 and cfg.train.device.startswith("cuda"),
            warmup_steps=cfg.train.warmup_steps,
            dropout=(cfg.model.attn_dropout, cfg.model.resid_dropout, cfg.model.embed_dropout),
            device=probe.device,
            timing=(warmup, timed),
        )
        del probe
    if not speed:
        raise SystemExit("error: no training mode could be timed")
    compiled = min(speed, key=speed.get)
    step_s = speed[compiled]
    tok_s = shape["batch"] * shape["T"] / step_s
    mfu = shape["flops"] * tok_s / PEAK
    m = shape["model"]
    say(
        f"model: {m.n_layers} layers, d_model {m.d_model}, {shape['non_embed'] / 1e6:.1f}M non-embedding parameters; "
        f"batch {shape['batch']} x {shape['T']} tokens; bf16 {shape['bf16']}; "
        f"training {'compiled' if compiled else 'eager'}"
    )
    say(f"tokens/s: {tok_s:,.0f} ({step_s * 1e3:.2f} ms/step)")
    say(f"MFU: {mfu:.1%} of {PEAK / 1e12:.0f} TFLOP/s ({shape['flops'] * tok_s / 1e12:.0f} TFLOP/s achieved)")
    record(
        non_embedding_params=shape["non_embed"], batch=shape["batch"], compiled=compiled, tokens_per_s=tok_s, mfu=mfu
    )
    time_plain_baseline(shape, compiled, tok_s, record)
    return dict(shape, compiled=compiled, step_s=step_s)


def time_plain_baseline(shape: dict, compiled: bool, ours_tok_s: float, record) -> None:
    """The same shape as a plain PyTorch GPT (``plain_gpt.py``: fused LayerNorm, SDPA, no hooks),
    timed the same way in the same process; prints our tokens/s as a ratio of it."""
    from plain_gpt import time_plain

    m = shape["model"]
    try:
        plain = time_plain(
            m,
            m.d_vocab,
            m.n_ctx,
            shape["batch"],
            shape["T"],
            shape["device"],
            shape["bf16"],
            compiled,
            shape["dropout"],
            *shape["timing"],
        )
    except Exception as e:  # the baseline must not cost the run
        say(f"plain PyTorch baseline failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return
    ratio = ours_tok_s / plain["tokens_per_s"]
    say(
        f"plain PyTorch (nanoGPT style, same shape, {'compiled' if compiled else 'eager'}): "
        f"{plain['tokens_per_s']:,.0f} tokens/s ({plain['step_s'] * 1e3:.2f} ms/step); ours / plain = {ratio:.2f}"
    )
    record(
        plain_tokens_per_s=plain["tokens_per_s"],
        plain_ms_per_step=plain["step_s"] * 1e3,
        ours_over_plain=ratio,
        plain_mfu=shape["flops"] * plain["tokens_per_s"] / PEAK,
    )


def final_run(
    args, data: Path, overrides: list[str], folder: Path, timing: dict, start: float, figures: dict, record
) -> None:
    """Train for as many steps as fit the budget at the timed speed, then evaluate by move index."""
    from training import runs
    from training.tasks.othello.checkpoints import othello_config
    from training.trainer import train

    compiled, step_s, T = timing["compiled"], timing["step_s"], timing["T"]
    tokens_per_step = timing["batch"] * T
    # The final run compiles again (a fresh model; the compiler's caches make it quicker) and
    # evaluates five times; keep a reserve for that so the script ends within --total-minutes.
    reserve = 30.0 + (0.6 * figures["compiled_warmup_s"] if compiled else 0.0)
    left = args.total_minutes * 60 - (time.perf_counter() - start) - reserve
    steps = 20 if args.tiny else max(100, int(min(args.minutes * 60, left) / step_s))
    final_over = [
        f"train.compile={str(compiled).lower()}",
        f"train.steps={steps}",
        f"train.warmup_steps={min(timing['warmup_steps'], steps // 10)}",
        f"train.eval_every={max(1, steps // 4)}",
    ]
    cfg = othello_config("full", data, overrides + final_over)
    run_dir = runs.create_run_dir(args.out or folder / "run", cfg, overwrite=True)
    say(
        f"training {steps} steps ({steps * cfg.train.batch_size:,} games' first {T} moves), lr {cfg.train.lr}, "
        f"evaluating every {cfg.train.eval_every}: run dir {run_dir}"
    )
    t0 = time.perf_counter()
    res = train(cfg, run_dir, progress=not args.tiny)
    wall = time.perf_counter() - t0
    final = res.final["raw"]
    summ = final.summary()
    by_move = [round(x, 4) for x in final.values["legal_top1"]]
    say(
        f"training: {steps} steps in {wall:.0f} s wall ({steps * tokens_per_step / wall:,.0f} tokens/s over the whole "
        f"call: evaluation, checkpoint and compilation included)"
    )
    say(
        f"legal top-1: in range (moves 1-{T}) {summ['in_range']['legal_top1']:.4f}, "
        f"beyond {summ.get('beyond', {}).get('legal_top1', float('nan')):.4f}"
    )
    say("legal top-1 by move index: " + json.dumps(by_move))
    for line in runs.read_metrics(run_dir):
        s = line["raw"]["summary"]
        say(
            f"  step {line['step']}: loss {line['loss']:.4f}, legal top-1 in range {s['in_range']['legal_top1']:.4f}, "
            f"beyond {s['beyond']['legal_top1']:.4f}, {line['elapsed_s']:.0f} s"
        )
    record(
        steps=steps,
        train_wall_s=wall,
        legal_top1_in_range=summ["in_range"]["legal_top1"],
        legal_top1_beyond=summ.get("beyond", {}).get("legal_top1"),
        legal_top1_by_move=by_move,
        itr_in_range=summ["in_range"]["itr"],
        run_dir=str(run_dir),
    )


def start_run(args, prefix: str, **extra):
    """The device, the figures dict (device and torch version first, then ``extra``), a ``record``
    that updates it and rewrites ``--json`` each time (so a run cut short keeps what it had), and a
    scratch folder."""
    import torch

    from training import atomic

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    figures: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        **extra,
    }

    def record(**kw) -> None:
        figures.update(kw)
        if args.json:
            atomic.write_json(args.json, figures)

    return device, figures, record, Path(tempfile.mkdtemp(prefix=prefix))


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    check_imports(args.wheels)
    if args.check_only:
        say("imports ok: " + ", ".join(NEEDED.values()))
        return

    device, figures, record, folder = start_run(args, "othello_gpu_")
    say(f"device: {figures['device']}, torch {figures['torch']}")
    data = make_data(args, device, folder, record)
    overrides = base_overrides(args, device)
    timing = time_modes(args, data, overrides, folder, record)
    final_run(args, data, overrides, folder, timing, start, figures, record)


if __name__ == "__main__":
    main()

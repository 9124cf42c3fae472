"""OthelloGPT arms on one GPU in one bounded run: the study's EMA claim on a capable model, and
training-time fixes for the collapse past the training length, every arm carrying every averager.

    python gpu/othello_arms.py [--arms full,dropout0,tied,rotary] [--total-minutes 9] [--seed 0]
                                      [--json gpu/results/othello_arms_h100_seed0.json] [--probe-games 2000]
    python gpu/othello_arms.py --tiny --device cpu        # the same run at a tiny size
    python gpu/othello_arms.py --table                    # the comparison table from every results file

Arms (each the ``full`` preset, trained on moves 1..30, plus):

- ``full``: as it is (learned positions, dropout 0.1 at every site);
- ``dropout0``: no dropout anywhere;
- ``tied``: ``model.tie_positions_from=30``, positions past the training length read the last
  trained row of their parity (the training-time form of the same-parity transplant that lifted
  the H100 model's beyond-range legal rate from 0.741 to 0.913);
- ``rotary``: rotary positions instead of learned ones.

Every arm carries raw weights and four averagers fed the same trajectory: EMA 0.999 with
warm-up, EMA 0.9999 with warm-up, BEMA, and the extrapolation control (BEMA without its EMA).
Steps: (1) imports (wheels installed offline when given), (2) games generated once on the device,
(3) the step time of the ``full`` arm, averagers on, (4) each arm trained for an equal share of
the time left, (5) per arm and per set of weights: top-1 legal, ITR and TV to uniform over legal
moves at every move index, in range and beyond, written to ``--json`` after each arm (a run cut
short keeps what it finished); (6) on the raw and EMA weights of each arm, the relative-board and
side-to-move probes (fit on moves 1..30 of training games, scored on held-out games by layer and
move index), so the results say whether averaging or the position fix changes the board and turn
representation past move 30; (7) on the ``full`` arm, activation patching from its same-parity
transplant (the ``tied`` model) into it at moves ``--patch-moves``: the legal-move mass recovered
by patching each layer's ``resid_pre`` at each position, which locates where the turn is read.
The probes and patching run on the device because five sets of weights of four 8-layer models
are far more than a lent machine sends back.

``--table`` reads every ``gpu/results/othello_arms_*.json`` (one per run; a second run with
another ``--seed`` adds seeds) and writes the comparison, means over seeds with their spread,
as ``gpu/results/othello_arms_table.md`` and a plot by move index.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from othello_gpu import base_overrides, check_imports, make_data, say, start_run, time_modes  # noqa: E402

RESULTS = HERE / "results"
TRAIN_MOVES = 30
ARMS = {
    "full": [],
    "dropout0": ["model.attn_dropout=0", "model.resid_dropout=0", "model.embed_dropout=0"],
    "tied": [f"model.tie_positions_from={TRAIN_MOVES}"],
    "rotary": ["model.positional=rotary"],
}
AVERAGERS = [
    {"name": "ema", "mode": "ema", "decay": 0.999, "warmup": True},
    {"name": "ema9999", "mode": "ema", "decay": 0.9999, "warmup": True},
    {"name": "bema", "mode": "bema"},
    {"name": "extrap", "mode": "extrapolation"},
]
METRICS = ("legal_top1", "itr", "tv")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)} (default: all)")
    ap.add_argument(
        "--total-minutes",
        type=float,
        default=9.0,
        help="the whole run, data and evaluation included, ends within this (default 9)",
    )
    ap.add_argument("--seed", type=int, default=0, help="training seed of every arm (default 0)")
    ap.add_argument("--games", type=int, default=8_000_000, help="games to generate on the device (default 8M)")
    ap.add_argument("--data-seconds", type=float, default=60.0, help="stop generating after this long (default 60)")
    ap.add_argument("--batch", type=int, default=None, help="games per step (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--compile", choices=("off", "on", "auto"), default="off", help="as othello_gpu.py")
    ap.add_argument(
        "--compile-mode",
        default="default",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    )
    ap.add_argument("--tiny", action="store_true", help="tiny model and data (for a CPU check)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here, after every arm")
    ap.add_argument(
        "--probe-games",
        type=int,
        default=2000,
        help="training games to fit the board and side-to-move probes on, per arm (0: no probes; default 2000)",
    )
    ap.add_argument(
        "--patch-moves",
        default="31,32",
        help="move indices past 30 at which to patch the transplant into the full arm (empty: none; default 31,32)",
    )
    ap.add_argument("--patch-games", type=int, default=200, help="held-out games per patched move index (default 200)")
    ap.add_argument("--wheels", type=Path, default=None, help="install missing packages offline from the wheels here")
    ap.add_argument("--table", action="store_true", help="only rebuild the comparison table from --results")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of othello_arms_*.json (default gpu/results)")
    args = ap.parse_args(argv)
    args.arm_list = [a for a in args.arms.split(",") if a]
    try:
        args.patch_list = [int(m) for m in args.patch_moves.split(",") if m]
    except ValueError:
        ap.error(f"--patch-moves must be move indices like 31,32, got {args.patch_moves!r}")
    if any(not TRAIN_MOVES < m <= 59 for m in args.patch_list):
        ap.error(f"--patch-moves must lie in {TRAIN_MOVES + 1}..59 (past the training length)")
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown or not args.arm_list:
        ap.error(f"unknown arm {unknown[0]!r} (choose from {', '.join(ARMS)})" if unknown else "give at least one arm")
    return args


def arm_overrides(arm: str, steps: int, warmup_steps: int, seed: int) -> list[str]:
    """An arm's own settings, every averager, and the step budget."""
    return ARMS[arm] + [
        f"averagers={json.dumps(AVERAGERS)}",
        f"train.steps={steps}",
        f"train.seed={seed}",
        f"train.warmup_steps={min(warmup_steps, steps // 10)}",
        f"train.eval_every={steps}",
        f"train.checkpoint_every={steps}",
    ]


def weights_results(final: dict, train_moves: int) -> dict:
    """Per set of weights: every metric by move index, and its means in range and beyond."""
    out = {}
    for name, m in final.items():
        summary = m.summary()
        out[name] = {
            "by_move": {k: [round(x, 5) for x in m.values[k]] for k in METRICS},
            "in_range": {k: summary["in_range"][k] for k in METRICS},
            "beyond": {k: summary.get("beyond", {}).get(k) for k in METRICS},
        }
    return out


def arm_probes(run_dir: Path, cfg, probe_games: int) -> dict:
    """{weights: {target: {hook: {in_range, beyond, by_move}}}} for the raw and EMA weights."""
    import numpy as np

    from interp.othello.board_probe import fit_board_probe, probe_accuracy
    from training import runs

    task = cfg.make_task()
    train_games = np.asarray(task.games[: min(probe_games, task.n_train)])
    val_games = np.asarray(task.games[task.n_train : task.n_train + cfg.othello.val_games])
    out = {}
    for weights in ("raw", "ema"):
        model = runs.load_run(run_dir, weights, device=cfg.train.device)
        out[weights] = {}
        for target in ("relative", "side"):
            probe = fit_board_probe(model, train_games, target, positions=(0, TRAIN_MOVES - 1))
            acc = probe_accuracy(model, probe, val_games)
            out[weights][target] = {
                h: {
                    "in_range": float(np.mean(m[:TRAIN_MOVES])),
                    "beyond": float(np.mean(m[TRAIN_MOVES:])),
                    "by_move": [round(x, 4) for x in m],
                }
                for h, m in acc.by_move.items()
            }
    return out


def transplant_patching(run_dir: Path, cfg, moves: list[int], n_games: int) -> dict:
    """Patch the same-parity transplant of the run's raw model (clean) into the model itself
    (corrupted), on the same held-out prefixes of ``m`` moves: per move index, the legal-move mass
    at the last position of each, and the normalised recovery [layer, position] of ``resid_pre``."""
    from interp.core.patching import activation_patch, legal_mass_metric, model_pair_cache, normalised
    from interp.othello.positions import transplant
    from training import runs

    task = cfg.make_task()
    model = runs.load_run(run_dir, "raw", device=cfg.train.device)
    clean_model = transplant(model, TRAIN_MOVES, "same_parity")
    tokens, legal = task.eval_data(min(n_games, cfg.othello.val_games))
    out = {}
    for m in moves:
        live = legal[:, m - 1].any(-1)  # the game goes on after move m
        toks, mask = tokens[live, :m].to(model.W_E.device), legal[live, m - 1]
        mass = legal_mass_metric(mask)
        clean_logits, cache = model_pair_cache(clean_model, toks)
        clean, corrupted = mass(clean_logits).item(), mass(model(toks)).item()
        entry = {"games": int(live.sum()), "clean_legal_mass": clean, "corrupted_legal_mass": corrupted}
        # a transplant that barely moves the metric leaves nothing to locate (and the normalised
        # recovery would divide by almost 0)
        if abs(clean - corrupted) > 0.01:
            rec = activation_patch(model, toks, cache, normalised(mass, clean, corrupted), sites=("resid_pre",))
            entry["resid_pre_recovery"] = [[round(x, 4) for x in row] for row in rec["resid_pre"].tolist()]
        out[str(m)] = entry
    return out


def run_arms(args) -> dict:
    from training import runs
    from training.tasks.othello.checkpoints import othello_config
    from training.trainer import train

    start = time.perf_counter()
    device, figures, record, folder = start_run(
        args, "othello_arms_", seed=args.seed, train_moves=TRAIN_MOVES, averagers=AVERAGERS, arms={}
    )
    say(f"device: {figures['device']}, torch {figures['torch']}; arms {', '.join(args.arm_list)}; seed {args.seed}")
    data = make_data(args, device, folder, record)
    overrides = base_overrides(args, device) + [
        f"othello.train_max_moves={TRAIN_MOVES}",
        f"averagers={json.dumps(AVERAGERS)}",
    ]
    timing = time_modes(args, data, overrides, folder, record)
    # every arm gets the same number of steps; keep 40 s a arm for building, evaluating five sets
    # of weights and saving them
    reserve = 40.0 * len(args.arm_list) + (0.6 * figures.get("compiled_warmup_s", 0.0) * len(args.arm_list))
    left = args.total_minutes * 60 - (time.perf_counter() - start) - reserve
    steps = 20 if args.tiny else max(100, int(left / len(args.arm_list) / timing["step_s"]))
    record(steps_per_arm=steps)
    say(f"{steps} steps per arm ({timing['step_s'] * 1e3:.1f} ms/step measured on 'full', averagers on)")
    for arm in args.arm_list:
        cfg = othello_config(
            "full",
            data,
            overrides
            + [f"train.compile={str(timing['compiled']).lower()}"]
            + arm_overrides(arm, steps, timing["warmup_steps"], args.seed),
        )
        run_dir = runs.create_run_dir(folder / arm, cfg, overwrite=True)
        t0 = time.perf_counter()
        res = train(cfg, run_dir, progress=not args.tiny)
        wall = time.perf_counter() - t0
        result = {
            "overrides": ARMS[arm],
            "steps": steps,
            "train_wall_s": wall,
            "weights": weights_results(res.final, TRAIN_MOVES),
        }
        figures["arms"][arm] = result
        record()
        for w, r in result["weights"].items():
            say(
                f"{arm:>9} {w:>8}: legal top-1 {r['in_range']['legal_top1']:.4f} in range, "
                f"{r['beyond']['legal_top1']:.4f} beyond; TV {r['in_range']['tv']:.4f} / {r['beyond']['tv']:.4f}"
            )
        if args.probe_games > 0:
            result["probes"] = arm_probes(run_dir, cfg, args.probe_games)
            record()
            for w, per in result["probes"].items():
                for target, hooks in per.items():
                    best = max(hooks, key=lambda h: hooks[h]["in_range"])
                    say(
                        f"{arm:>9} {w:>8}: {target} probe at {best}: {hooks[best]['in_range']:.4f} in range, "
                        f"{hooks[best]['beyond']:.4f} beyond"
                    )
        if arm == "full" and args.patch_list:
            figures["patching"] = transplant_patching(run_dir, cfg, args.patch_list, args.patch_games)
            record()
            for m, e in figures["patching"].items():
                best = ""
                if "resid_pre_recovery" in e:
                    rec = e["resid_pre_recovery"]
                    layer, pos = max(
                        ((layer, p) for layer in range(len(rec)) for p in range(len(rec[layer]))),
                        key=lambda lp: rec[lp[0]][lp[1]],
                    )
                    best = f"; best resid_pre patch: layer {layer}, position {pos + 1} ({rec[layer][pos]:.2f})"
                say(
                    f"patching at move {m}: legal mass transplant {e['clean_legal_mass']:.3f}, original "
                    f"{e['corrupted_legal_mass']:.3f}{best}"
                )
    say(f"all arms in {time.perf_counter() - start:.0f} s")
    return figures


# -- the comparison table, from every results file ------------------------------------------


def load_results(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("othello_arms_*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"error: {path} is not a results file ({type(e).__name__})") from None
    return out


def comparison(results: list[dict]) -> dict:
    """{(arm, weights): {part: {metric: [one value per run]}}}, plus by-move curves per run."""
    import numpy as np

    table: dict = {}
    for res in results:
        for arm, a in res.get("arms", {}).items():
            for w, r in a["weights"].items():
                cell = table.setdefault((arm, w), {"in_range": {}, "beyond": {}, "by_move": []})
                for part in ("in_range", "beyond"):
                    for k in METRICS:
                        if r[part].get(k) is not None:
                            cell[part].setdefault(k, []).append(float(r[part][k]))
                cell["by_move"].append(np.asarray(r["by_move"]["legal_top1"], dtype=float))
    return table


def format_table(table: dict) -> str:
    import numpy as np

    def cell(xs):
        if not xs:
            return "n/a"
        m = float(np.mean(xs))
        return f"{m:.4f}" + (f" +- {float(np.std(xs, ddof=1)):.4f}" if len(xs) > 1 else "")

    lines = [
        "| arm | weights | runs | legal top-1 in range | legal top-1 beyond | ITR beyond | TV beyond |",
        "|---|---|---|---|---|---|---|",
    ]
    for (arm, w), c in table.items():
        lines.append(
            f"| {arm} | {w} | {len(c['by_move'])} | {cell(c['in_range'].get('legal_top1'))} | "
            f"{cell(c['beyond'].get('legal_top1'))} | {cell(c['beyond'].get('itr'))} | {cell(c['beyond'].get('tv'))} |"
        )
    lines.append("")
    lines.append(
        "Means over runs (seeds), +- their SD when there are several; in range = moves 1..30, beyond = 31..59."
    )
    return "\n".join(lines)


def write_table(folder: Path) -> list[Path]:
    import numpy as np

    from interp.core.visualize import new_figure, save_figure, shade_training
    from training import atomic

    results = load_results(folder)
    if not results:
        raise SystemExit(f"error: no othello_arms_*.json in {folder}")
    table = comparison(results)
    text = format_table(table)
    print(text)
    atomic.write_text(folder / "othello_arms_table.md", "# OthelloGPT arms\n\n" + text + "\n")
    arms = sorted({a for a, _ in table}, key=list(ARMS).index)
    fig, axes = new_figure(1, len(arms), figsize=(4.5 * len(arms), 3.8), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        shade_training(ax, (1, TRAIN_MOVES), "training range")
        for (a, w), c in table.items():
            if a == arm:
                curve = np.mean(np.stack(c["by_move"]), 0)
                ax.plot(range(1, len(curve) + 1), curve, label=w, lw=1)
        ax.set(title=arm, xlabel="move index", ylabel="legal top-1", ylim=(0, 1.02))
        ax.legend(fontsize=7)
    files = save_figure(fig, folder / "othello_arms")
    return [folder / "othello_arms_table.md", *files]


def main() -> None:
    args = parse_args()
    if args.table:
        for p in write_table(args.results):
            print(f"wrote {p}")
        return
    check_imports(args.wheels)
    run_arms(args)


if __name__ == "__main__":
    main()

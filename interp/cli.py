"""Command line of the analysis side: ``python -m interp eval RUN_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from training import atomic
from training.clitools import Parser, run_cli


def cmd_eval(args) -> int:
    from training import runs
    from training.tasks.set_complement import SetComplementTask

    from .metrics import evaluate_lengths, format_table

    cfg = runs.read_run_config(args.run_dir)
    task = SetComplementTask(cfg.task)
    kinds = ["raw", "averaged"] if args.weights == "both" else [args.weights]
    if cfg.averaging.mode == "none" and "averaged" in kinds and len(kinds) > 1:
        kinds = ["raw"]
    results = {}
    for kind in kinds:
        model = runs.load_run(args.run_dir, weights=kind)
        results[kind] = evaluate_lengths(model, task, sets_per_length=args.sets, seed=args.seed)
    print(format_table(results, metrics=tuple(args.metrics.split(","))))
    if args.json:
        atomic.write_json(args.json, {k: v.to_dict() for k, v in results.items()})
        print(f"wrote {args.json}")
    return 0


def build_parser() -> Parser:
    p = Parser(prog="python -m interp", description="Measure and explain set-complement models by input length.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    e = sub.add_parser("eval", help="per-length TV, KL, ITR, margin, gap and accuracy of a run")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--weights", choices=["raw", "averaged", "both"], default="both")
    e.add_argument("--sets", type=int, default=2048, help="random sets per length (default 2048)")
    e.add_argument("--seed", type=int, default=12345, help="seed of the evaluation sets")
    e.add_argument("--metrics", default="tv,itr,margin,acc", help="comma-separated subset of tv,kl,itr,margin,gap,acc")
    e.add_argument("--json", type=Path, help="also write the per-length metrics to this JSON file")
    e.set_defaults(handler=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        from .metrics import METRICS

        bad = [m for m in args.metrics.split(",") if m not in METRICS]
        if bad:
            print(f"error: unknown metric {bad[0]!r} (choose from {', '.join(METRICS)})", file=sys.stderr)
            return 2
        if args.sets < 1:
            print("error: --sets must be positive", file=sys.stderr)
            return 2
    return run_cli(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())

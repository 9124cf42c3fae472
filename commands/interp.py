"""Command line of the analysis side:
``python -m interp {eval,report,othello-report,othello-positions,sweep-report,study-report,dim-scan}``
(``interp/__main__.py`` and ``wm-interp`` launch it)."""

from __future__ import annotations

import sys
from pathlib import Path

from commands.tools import Parser, add_threads, run_cli
from training import atomic
from training.errors import WorkbenchError


def cmd_eval(args) -> int:
    from training import runs
    from training.metrics import metric_tables
    from training.tasks import registry

    cfg = runs.read_run_config(args.run_dir)
    task_cls = registry.entry(cfg.kind).task_cls
    metrics = tuple(args.metrics.split(",")) if args.metrics else task_cls.table_metrics
    bad = [m for m in metrics if m not in task_cls.metric_names]
    if bad:
        raise WorkbenchError(f"unknown metric {bad[0]!r} (choose from {', '.join(task_cls.metric_names)})")
    names = runs.weight_names(cfg)
    if args.weights == "all":
        weights = names
    elif args.weights == "both":  # raw and the averaging section's weights (the default)
        weights = [w for w in ("raw", "averaged") if w in names]
    else:
        runs.weights_to_load(args.run_dir, cfg, args.weights)  # names a missing one before the task loads
        weights = [args.weights]
    if args.dispersion:
        registry.require(cfg.kind, "set_complement", "--dispersion")
    seed = cfg.train.eval_seed if args.seed is None else args.seed
    task = cfg.make_task()
    # --sets counts examples per length: random sets, or held-out games for Othello
    results, models = {}, {}
    for w in weights:
        model = models[w] = runs.load_run(args.run_dir, weights=w)
        if args.calibrated:
            try:
                metrics_at_t, scale = task.calibrated_evaluate(model, args.sets, seed)
            except NotImplementedError:
                raise WorkbenchError(
                    f"--calibrated needs a task that gives its true next-token distribution; {cfg.kind!r} does not"
                ) from None
            results[f"{w} T={1 / scale:.3g}"] = metrics_at_t
        else:
            results[w] = task.evaluate(model, args.sets, seed)
    if args.calibrated:
        print("T: each model's softmax temperature, fit on held-out in-range inputs (logits divided by T)\n")
    first = next(iter(results.values()))
    print(metric_tables(results, metrics, lengths=first.lengths, index_label=task_cls.index_label))
    if args.dispersion:
        from interp.set_complement.dispersion import dispersion

        print(
            "\ndispersion (normalised attention entropy; s margin(s) / 2 margin(2); s gap(s) / 2 gap(2); "
            "CV of self-displacement per head)"
        )
        for w in weights:
            d = dispersion(models[w], task, args.sets, seed)
            for part, m in d.summary().items():
                print(
                    f"  {w:>10} {part:>8}: entropy {m['norm_entropy']:.4f}  margin law {m['margin_law']:.4f}  "
                    f"gap law {m['gap_law']:.4f}"
                )
            print(f"  {w:>10} self-displacement CV: {[round(c, 4) for layer in d.self_displacement_cv for c in layer]}")
    if args.json:
        atomic.write_json(args.json, {k: v.to_dict() for k, v in results.items()})
        print(f"wrote {args.json}")
    return 0


def cmd_report(args) -> int:
    from interp.set_complement.report import build_report

    if args.sets < 1:
        raise WorkbenchError("--sets must be positive")
    out = args.out or Path(args.run_dir) / "report"
    build_report(args.run_dir, out, sets=args.sets, seed=args.seed, progress=not args.quiet)
    print(f"wrote {out}/README.md, summary.json, per_length.json, figures and attention HTML")
    return 0


def cmd_othello_report(args) -> int:
    from interp.othello.report import build_othello_report

    if args.probe_games < 1 or args.eval_games < 1:
        raise WorkbenchError("--probe-games and --eval-games must be positive")
    out = args.out or Path(args.run_dir) / "othello_report"
    s = build_othello_report(args.run_dir, out, args.probe_games, args.eval_games, progress=not args.quiet)
    for k, per in s["probe_accuracy_in_range_vs_beyond"].items():
        print(
            f"{k:>16}: "
            + "  ".join(f"L{h.split('.')[1]} {v['in_range']:.3f}/{v['beyond']:.3f}" for h, v in per.items())
        )
    print(f"(probe accuracy in range / beyond per layer) wrote {out}/README.md, summary.json and figures")
    return 0


def cmd_sweep_report(args) -> int:
    from interp.analysis.sweep import format_report, sweep_report

    if not (Path(args.sweep_dir) / "sweep.json").is_file():
        raise WorkbenchError(f"{args.sweep_dir} holds no sweep (sweep.json missing)")
    result = sweep_report(args.sweep_dir, args.out)
    print(format_report(result))
    print(f"wrote {args.out or Path(args.sweep_dir) / 'report'}/sweep_report.json and sweep.png")
    return 0


def cmd_study_report(args) -> int:
    from interp.analysis.study_report import format_report, study_report

    if args.boot < 100:
        raise WorkbenchError(f"--boot must be at least 100, got {args.boot}")
    strata = [k for k in args.strata.split(",") if k] if args.strata is not None else None
    result = study_report(args.study_dir, args.out, args.json, n_boot=args.boot, strata=strata)
    print(format_report(result, args.study_dir))
    out = args.out or Path(args.study_dir) / "report"
    print(
        f"wrote {out}/study_report.txt, {args.json or out / 'study_report.json'}, "
        f"{', '.join(Path(f).name for f in result['files'] if f.endswith('.png'))}"
    )
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise WorkbenchError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise WorkbenchError(f"expected positive integers, got {text!r}")
    return values


def cmd_dim_scan(args) -> int:
    from interp.core.visualize import plot_dimension_scan, save_figure
    from training.experiments.dim_scan import dimension_scan

    out = Path(args.out)
    result = dimension_scan(
        _int_list(args.d_models),
        _int_list(args.d_heads),
        out,
        overrides=args.set,
        target_tv=args.target_tv,
        weights=args.weights,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    atomic.write_json(out / "dimension_scan.json", result)
    save_figure(plot_dimension_scan(result), out / "dimension_scan")
    print(f"{'d_model':>8} {'d_head':>7} {'TV in-range':>12} {'TV beyond':>10}")
    for c in result["cells"]:
        beyond = f"{c['tv_beyond']:10.4f}" if c["tv_beyond"] is not None else f"{'-':>10}"
        print(f"{c['d_model']:>8} {c['d_head']:>7} {c['tv_in_range']:12.4f} {beyond}{'  *' if c['reached'] else ''}")
    best = result["smallest"]
    print(
        f"smallest reaching in-range TV <= {args.target_tv}: "
        + (f"d_model={best['d_model']}, d_head={best['d_head']}" if best else "none")
    )
    print(f"wrote {args.out}/dimension_scan.json and dimension_scan.png")
    return 0


def cmd_othello_positions(args) -> int:
    from interp.othello.positions import compare_positions, write_results
    from training.metrics import metric_tables

    if args.games < 1:
        raise WorkbenchError("--games must be positive")
    results = compare_positions(args.run_dir, args.games, progress=not args.quiet)
    print(
        metric_tables(results, ("legal_top1", "itr"), lengths=next(iter(results.values())).lengths, index_label="move")
    )
    out = args.out or Path(args.run_dir) / "positions"
    write_results(results, out)
    print(f"wrote {out}/positions.json and positions.png (.svg)")
    return 0


def build_parser() -> Parser:
    p = Parser(
        prog="python -m interp",
        description="Measure and explain trained models (set complement, OthelloGPT, formal languages) by length.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    e = sub.add_parser("eval", help="per-length TV, KL, ITR, margin, gap and accuracy of a run")
    e.add_argument("run_dir", type=Path)
    e.add_argument(
        "--weights",
        default="both",
        help="raw, averaged, the name of one of the run's averagers, both (raw and averaged; "
        "the default) or all (raw and every average)",
    )
    e.add_argument("--sets", type=int, default=2048, help="random sets per length (default 2048)")
    e.add_argument("--seed", type=int, help="seed of the evaluation sets (default: the run's train.eval_seed)")
    e.add_argument(
        "--metrics",
        help="comma-separated metrics (set task: any of tv,kl,itr,margin,gap,acc, default "
        "tv,itr,margin,acc; Othello: legal_top1,itr,tv, the default)",
    )
    e.add_argument("--json", type=Path, help="also write the per-length metrics to this JSON file")
    e.add_argument(
        "--calibrated",
        action="store_true",
        help="evaluate each model at its own softmax temperature T, fit on held-out in-range inputs "
        "(a model that is only sharper gains nothing)",
    )
    e.add_argument(
        "--dispersion",
        action="store_true",
        help="set task: also print the dispersion measures (attention entropy, margin and gap laws, "
        "self-displacement balance), in range and beyond",
    )
    add_threads(e)
    e.set_defaults(handler=cmd_eval)

    r = sub.add_parser("report", help="all probes on a run: summary.json, figures, attention HTML, README.md")
    r.add_argument("run_dir", type=Path)
    r.add_argument("--out", type=Path, help="report folder (default: RUN_DIR/report)")
    r.add_argument("--sets", type=int, default=1024, help="random sets per length (default 1024)")
    r.add_argument("--seed", type=int, help="seed of the probe sets (default: the run's train.eval_seed)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads(r)
    r.set_defaults(handler=cmd_report)

    o = sub.add_parser(
        "othello-report", help="OthelloGPT run: board probes by layer and move index, controls, legality, boards"
    )
    o.add_argument("run_dir", type=Path)
    o.add_argument("--out", type=Path, help="report folder (default: RUN_DIR/othello_report)")
    o.add_argument("--probe-games", type=int, default=2000, help="training games the probes are fit on")
    o.add_argument("--eval-games", type=int, default=1000, help="held-out games the probes are scored on")
    o.add_argument("--quiet", action="store_true")
    add_threads(o)
    o.set_defaults(handler=cmd_othello_report)

    op = sub.add_parser(
        "othello-positions",
        help="OthelloGPT with learned positions: legality beyond training with untrained position rows "
        "replaced by trained ones of the same parity, the opposite parity, or their mean",
    )
    op.add_argument("run_dir", type=Path)
    op.add_argument("--out", type=Path, help="default: RUN_DIR/positions")
    op.add_argument("--games", type=int, default=1000, help="held-out games (default 1000)")
    op.add_argument("--quiet", action="store_true")
    add_threads(op)
    op.set_defaults(handler=cmd_othello_positions)

    sr = sub.add_parser("sweep-report", help="best metrics per variant, effects with bootstrap CIs, verdicts, plots")
    sr.add_argument("sweep_dir", type=Path)
    sr.add_argument("--out", type=Path, help="default: SWEEP_DIR/report")
    sr.set_defaults(handler=cmd_sweep_report)

    ss = sub.add_parser(
        "study-report",
        help="paired study: effects with cluster intervals (t, or the bootstrap the study file names), Holm, "
        "verdicts, power, plots",
    )
    ss.add_argument("study_dir", type=Path, help="folder of python -m training study")
    ss.add_argument("--out", type=Path, help="folder for the report and figures (default: STUDY_DIR/report)")
    ss.add_argument(
        "--json", type=Path, help="write every effect, interval and verdict here (default: OUT/study_report.json)"
    )
    ss.add_argument(
        "--boot", type=int, default=10000, help="bootstrap resamples, where a study uses the bootstrap (default 10000)"
    )
    ss.add_argument(
        "--strata",
        metavar="KEY[,KEY]",
        help="resample configs within strata of these sampled choice parameters (e.g. model.n_heads); "
        "post hoc unless the study file balanced over them; an empty string turns strata off",
    )
    ss.set_defaults(handler=cmd_study_report)

    d = sub.add_parser("dim-scan", help="train across d_model x d_head; smallest widths reaching a target in-range TV")
    d.add_argument("--out", type=Path, required=True, help="folder for the runs and dimension_scan.json/.png")
    d.add_argument("--d-models", default="4,8,16,32", help="comma-separated d_model values (default 4,8,16,32)")
    d.add_argument("--d-heads", default="4,8,16,32", help="comma-separated d_head values (default 4,8,16,32)")
    d.add_argument("--target-tv", type=float, default=0.05, help="in-range TV to reach (default 0.05)")
    d.add_argument("--weights", choices=["raw", "averaged"], default="raw")
    d.add_argument("--overwrite", action="store_true", help="retrain cells whose folder holds a run of another config")
    d.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override the demo config, e.g. --set train.steps=2000",
    )
    d.add_argument("--quiet", action="store_true")
    add_threads(d)
    d.set_defaults(handler=cmd_dim_scan)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "sets", 1) < 1:
        print("error: --sets must be positive", file=sys.stderr)
        return 2
    return run_cli(
        args.handler, args, interrupted="interrupted (every file written so far is complete: writes are atomic)"
    )


if __name__ == "__main__":
    sys.exit(main())

"""Command line of the training side:
``python -m training {demo,train,resume,othello-data,othello,othello-compare,sweep,study,config}``
(``training/__main__.py`` and ``wm-train`` launch it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from commands.tools import Parser, add_threads, run_cli
from training import atomic, runs
from training.config import RunConfig, load_config, preset_path
from training.errors import WorkbenchError

INTERRUPTED = "interrupted; the last checkpoint is intact"
PRESETS = ["demo", "othello_cpu", "othello_full"]
"""The shipped run configs ``train`` and ``config`` can start from."""


def interrupted_message(args) -> str:
    """What Ctrl-C leaves and how to go on, with the actual path."""
    handler = getattr(args, "handler", None)
    if handler in (cmd_train, cmd_othello, cmd_resume):
        run_dir = args.run_dir if handler is cmd_resume else args.out
        return f"{INTERRUPTED} (resume with: python -m training resume {run_dir})"
    if handler is cmd_demo:
        return f"{INTERRUPTED} (run the same demo command again: finished variants are reused, the others resume)"
    if handler is cmd_suite:
        folder = args.resume or args.out
        return f"{INTERRUPTED} (resume with: python -m training suite --resume {folder}; finished runs are kept)"
    return INTERRUPTED


def cmd_train(args) -> int:
    if args.config and args.preset:
        raise WorkbenchError("give --config or --preset, not both")
    cfg = load_config(args.config or (preset_path(args.preset) if args.preset else None), args.set)
    run_dir = runs.create_run_dir(args.out, cfg, overwrite=args.overwrite)
    return _train(cfg, run_dir, args.quiet)


def cmd_resume(args) -> int:
    run_dir = Path(args.run_dir)
    cfg = runs.read_run_config(run_dir)
    return _train(cfg, run_dir, args.quiet)


def _train(cfg: RunConfig, run_dir: Path, quiet: bool) -> int:
    from training.metrics import metric_tables
    from training.tasks import registry
    from training.trainer import train

    result = train(cfg, run_dir, progress=not quiet)
    task_cls = registry.entry(cfg.kind).task_cls
    print(metric_tables(result.final, task_cls.table_metrics, index_label=task_cls.index_label))
    if result.start_step:
        print(
            f"done: {result.step} steps, {result.train_seconds:.1f} s of training in all "
            f"(this call: steps {result.start_step}..{result.step}, {result.seconds:.1f} s); run saved in {run_dir}"
        )
    else:
        print(f"done: {result.step} steps in {result.seconds:.1f} s; run saved in {run_dir}")
    return 0


def cmd_demo(args) -> int:
    from interp.core.visualize import plot_metrics, save_figure
    from training.experiments.demo import run_demo, summary_text, write_demo

    out = Path(args.out)
    result = run_demo(out, overwrite=args.overwrite, overrides=args.set, base=args.config, progress=not args.quiet)
    write_demo(result, out)
    shown, _ = result.deduped()
    save_figure(
        plot_metrics(
            shown, metrics=("tv", "itr"), title="Set complement: length generalization (dashed: averaged weights)"
        ),
        out / "demo",
    )
    print(result.header())
    print()
    print(result.tables())
    print(f"\n{summary_text(result)}")
    print(
        f"wrote {out}/demo_table.txt, {out}/demo_results.json, {out}/demo.png (.svg) and one run directory per variant"
    )
    return 0


def cmd_config(args) -> int:
    cfg = load_config(preset_path(args.preset) if args.preset else None, args.set)
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def cmd_othello_data(args) -> int:
    from training.tasks.othello.data import generate_dataset

    meta = generate_dataset(
        args.out,
        args.games,
        seed=args.seed,
        chunk=args.chunk,
        workers=args.workers,
        dedup=args.dedup,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"wrote {meta['count']} games to {args.out}/games.npy (sha256 {meta['sha256'][:16]}...)"
        + (f", {meta['duplicates_removed']} duplicates removed" if args.dedup else "")
    )
    return 0


def cmd_othello(args) -> int:
    from training.tasks.othello.checkpoints import othello_config

    cfg = othello_config(args.preset, args.data, args.set)
    cfg.make_task()  # a missing or corrupt dataset fails before the run directory is created
    run_dir = runs.create_run_dir(args.out, cfg, overwrite=args.overwrite)
    return _train(cfg, run_dir, args.quiet)


def cmd_othello_compare(args) -> int:
    from interp.core.visualize import plot_metrics, save_figure
    from training.experiments.othello_compare import TABLE_METRICS, compare
    from training.metrics import metric_tables

    out = Path(args.out)
    results = compare(args.preset, args.data, out, args.what, args.set, args.overwrite, progress=not args.quiet)
    tables = metric_tables(results, TABLE_METRICS)
    print(tables)
    atomic.write_text(out / "compare_table.txt", tables + "\n")
    atomic.write_json(out / "compare_results.json", {k: v.to_dict() for k, v in results.items()})
    save_figure(
        plot_metrics(
            results,
            metrics=TABLE_METRICS,
            xlabel="move index",
            title=f"OthelloGPT, {args.what}: by move index (shaded: training range)",
        ),
        out / "compare",
    )
    print(f"wrote {args.out}/compare_table.txt, compare_results.json, compare.png")
    return 0


def cmd_sweep(args) -> int:
    from training.experiments.sweep import run_sweep

    if args.resume:
        out = args.resume
        space = None
    else:
        if args.out is None:
            raise WorkbenchError("give --out DIR for a new sweep, or --resume DIR")
        out = args.out
        space = args.space or preset_path("sweep_quick" if args.quick else "sweep_default")
    s = run_sweep(
        out, space, storage=args.storage, workers=args.workers, resume=args.resume is not None, progress=not args.quiet
    )
    print(f"completed trials: {s['completed']}, failed: {s['failed']}")
    for f in s["failures"]:
        print(f"  trial {f['number']} failed: {f['error']}")
    if s["best"]:
        print(
            f"best trial {s['best']['number']}: beyond-range TV {s['best']['value']:.4f} "
            f"with {json.dumps(s['best']['params'])}"
        )
    return 0


def cmd_study(args) -> int:
    from interp.analysis.mechanism import study_measures
    from training.experiments.study import run_study

    if args.resume:
        out, spec = args.resume, None
    else:
        if args.out is None:
            raise WorkbenchError("give --out DIR for a new study, or --resume DIR")
        out, spec = args.out, args.spec or preset_path("study_quick" if args.quick else "study_default")
    s = run_study(
        out,
        spec,
        storage=args.storage,
        workers=args.workers,
        resume=args.resume is not None,
        progress=not args.quiet,
        measures=study_measures,
        threads=args.threads,
        compile=args.compile,
        scale=args.scale,
        fixed=args.set,
    )
    print(
        f"completed configs: {s['completed']} of {s['n_configs']} ({s['arms']} arms), "
        f"failed configs: {s['failed_configs']}"
    )
    for f in s["failures"]:
        print(f"  config {f['config']} failed: {f['error']}")
    for arm, n in s["failed_arms"].items():
        print(f"  failed arms with {arm}: {n}")
    print(f"next: python -m interp study-report {out}")
    return 0


def cmd_suite(args) -> int:
    from interp.analysis.suite_report import plot_suite
    from interp.core.visualize import save_figure
    from training.experiments.suite import RESULTS, TABLE, run_suite

    if args.resume:
        out, spec = args.resume, None
    else:
        if args.out is None:
            raise WorkbenchError("give --out DIR for a new suite, or --resume DIR")
        out, spec = args.out, args.spec or preset_path("formal_suite")
    result = run_suite(out, spec, workers=args.workers, threads=args.threads or 1, progress=not args.quiet)
    save_figure(plot_suite(result), Path(out) / "suite_accuracy")
    print((Path(out) / TABLE).read_text())
    for f in result["failures"]:
        print(f"  {f['job']['language']} {f['job']['positional']} seed {f['job']['seed']} failed: {f['error']}")
    print(f"wrote {out}/{RESULTS}, {TABLE}, suite_accuracy.png ({result['run_seconds']:.0f} s of training in runs)")
    return 0


def build_parser() -> Parser:
    p = Parser(
        prog="python -m training",
        description="Train HookedTransformers with dropout and EMA/BEMA on a registered task (set complement, "
        "OthelloGPT, formal languages), alone or in sweeps, studies and the formal-language suite.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def common(sp, config=True):
        if config:
            sp.add_argument(
                "--config",
                type=Path,
                help="JSON config file (a run's config.json works too); default: built-in defaults",
            )
            sp.add_argument(
                "--set",
                action="extend",
                nargs="+",
                default=[],
                metavar="KEY=VALUE",
                help="override config values, e.g. --set train.lr=1e-3 train.steps=2000 (repeatable)",
            )
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        add_threads(sp)

    d = sub.add_parser("demo", help="train baseline / dropout / EMA / BEMA / dropout+BEMA and compare them by length")
    d.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default: runs/demo)")
    d.add_argument("--overwrite", action="store_true", help="replace existing variant runs instead of resuming them")
    common(d)
    d.set_defaults(handler=cmd_demo)

    t = sub.add_parser("train", help="train one run into a new run directory")
    t.add_argument("--out", type=Path, required=True, help="run directory to create")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    t.add_argument(
        "--preset",
        choices=PRESETS,
        help="start from a shipped config (demo: the demo's converging set-complement model) instead of the "
        "built-in defaults",
    )
    common(t)
    t.set_defaults(handler=cmd_train)

    r = sub.add_parser("resume", help="continue a run from its last checkpoint")
    r.add_argument("run_dir", type=Path)
    common(r, config=False)
    r.set_defaults(handler=cmd_resume)

    o = sub.add_parser(
        "othello-data", help="generate games of uniformly random legal Othello moves (int8 [N, 60] .npy)"
    )
    o.add_argument("--games", type=int, required=True, help="number of games")
    o.add_argument("--out", type=Path, required=True, help="dataset folder (games.npy, games.json)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--chunk", type=int, default=100_000, help="games per chunk (the unit of work and of resume)")
    o.add_argument("--workers", type=int, default=2, help="worker processes (the output does not depend on it)")
    o.add_argument("--dedup", action="store_true", help="drop repeated games, keeping first occurrences")
    o.add_argument("--overwrite", action="store_true", help="replace an existing games.npy")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.set_defaults(handler=cmd_othello_data)

    for name, handler, text in (
        ("othello", cmd_othello, "train OthelloGPT (preset cpu or full) on a games dataset"),
        (
            "othello-compare",
            cmd_othello_compare,
            "train none/EMA/BEMA (or positional variants) at equal budget and seed",
        ),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--preset", choices=["cpu", "full"], default="cpu")
        sp.add_argument("--data", type=Path, required=True, help="dataset folder from othello-data")
        sp.add_argument(
            "--out", type=Path, required=True, help="run directory (othello) or folder of runs (othello-compare)"
        )
        sp.add_argument("--overwrite", action="store_true")
        sp.add_argument(
            "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="override a config value"
        )
        sp.add_argument("--quiet", action="store_true")
        add_threads(sp)
        if name == "othello-compare":
            sp.add_argument(
                "--what",
                choices=["averaging", "positional"],
                default="averaging",
                help="averaging: none / EMA / BEMA; positional: learned / rotary / none",
            )
        sp.set_defaults(handler=handler)

    w = sub.add_parser("sweep", help="random hyperparameter search (Optuna; SQLite by default, PostgreSQL to share)")
    w.add_argument("--out", type=Path, help="sweep folder (study.db, sweep.json, trials/)")
    w.add_argument("--space", type=Path, help="search-space JSON (default: training/configs/sweep_default.json)")
    w.add_argument("--quick", action="store_true", help="the small quick space (about 2 minutes)")
    w.add_argument(
        "--storage", help="database URL, e.g. postgresql://user:pass@host/db (default: SQLite in the folder)"
    )
    w.add_argument("--workers", type=int, default=1, help="local worker processes")
    w.add_argument("--resume", type=Path, metavar="DIR", help="continue the sweep in DIR")
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(handler=cmd_sweep)

    st = sub.add_parser(
        "study", help="the paired study: configs x seeds x dropout x target, every averager on every arm"
    )
    st.add_argument("--out", type=Path, help="study folder (study.json, study.db, runs/)")
    st.add_argument(
        "--spec",
        type=Path,
        help="study file (default: training/configs/study_default.json; "
        "training/configs/study_remedies.json compares the remedies beyond the study)",
    )
    st.add_argument("--quick", action="store_true", help="the small quick study (about 2 minutes)")
    st.add_argument(
        "--storage", help="database URL, e.g. postgresql://user:pass@host/db (default: SQLite in the folder)"
    )
    st.add_argument(
        "--workers",
        type=int,
        default=2,
        help="local worker processes, each training whole configs (default 2; docs/benchmarks.md measures what "
        "a second worker gains)",
    )
    st.add_argument("--threads", type=int, help="threads per worker (default: the cores shared out among the workers)")
    st.add_argument(
        "--compile",
        action="store_true",
        help="compile each ensemble's step (train.compile=true in every arm; results equal up to dropout's draws; "
        "docs/study.md gives the measured gain)",
    )
    st.add_argument(
        "--scale",
        metavar="NAME",
        help="run the study file at one of its scales (e.g. 'gpu' in study_othello.json: the full-size model, "
        "data and steps; docs/othello_study.md)",
    )
    st.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="add fixed settings after the study file's own, e.g. formal.language=parity with "
        "training/configs/study_formal.json (a new study only)",
    )
    st.add_argument(
        "--resume", type=Path, metavar="DIR", help="continue the study in DIR (a killed worker's config is retried)"
    )
    st.add_argument("--quiet", action="store_true")
    st.set_defaults(handler=cmd_study)

    fs = sub.add_parser(
        "suite",
        help="the formal-language suite: every language, with and without positions, a few seeds, by length bin",
    )
    fs.add_argument("--out", type=Path, help="suite folder (suite.json, suite_table.md, runs/)")
    fs.add_argument("--spec", type=Path, help="suite file (default: training/configs/formal_suite.json)")
    fs.add_argument("--workers", type=int, default=2, help="worker processes, each training whole runs (default 2)")
    fs.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    fs.add_argument("--resume", type=Path, metavar="DIR", help="continue the suite in DIR (finished runs are kept)")
    fs.add_argument("--quiet", action="store_true")
    fs.set_defaults(handler=cmd_suite)

    c = sub.add_parser("config", help="print a config as JSON, to edit and pass to --config")
    c.add_argument(
        "--preset",
        choices=PRESETS,
        help="start from a shipped config instead of the defaults",
    )
    c.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="override a value")
    c.set_defaults(handler=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.handler, args, interrupted=interrupted_message(args))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m interp report RUN_DIR``: every probe on a trained run, written as a report folder.

The folder holds ``summary.json`` (the figures a notebook or a person needs), PNG and SVG plots
(metrics, entropy and displacement against length, interventions, patching), offline attention
HTML for a few example sets, and a ``README.md`` that links them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from training import atomic, runs
from training.tasks.set_complement import SetComplementTask

from .attention import attention_entropy
from .displacement import displacement_by_length
from .interventions import evaluate_interventions
from .metrics import evaluate_lengths
from .patching import patch_swap
from .visualize import attention_html, plot_displacement, plot_entropy, plot_metrics, plot_patching


def _at(series_rows, length, key):
    return next(r[key] for r in series_rows if r["length"] == length)


def build_report(run_dir: str | Path, out: str | Path | None = None, sets: int = 1024, seed: int = 12345, progress: bool = True) -> dict:
    run_dir = Path(run_dir)
    cfg = runs.read_run_config(run_dir)
    out = Path(out) if out else run_dir / "report"
    task = SetComplementTask(cfg.task)
    kinds = ["raw", "averaged"] if cfg.averaging.mode != "none" else ["raw"]
    models = {k: runs.load_run(run_dir, k) for k in kinds}
    main = models[kinds[-1]]
    lo, hi = cfg.task.train_min_len, cfg.task.train_max_len
    L = cfg.task.max_eval_len
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=6, desc="report", disable=not progress)

    metrics = {k: evaluate_lengths(m, task, sets_per_length=sets, seed=seed) for k, m in models.items()}
    steps.update()
    entropy = {k: attention_entropy(m, task, sets_per_length=sets, seed=seed) for k, m in models.items()}
    steps.update()
    disp = {k: displacement_by_length(m, task, sets_per_length=sets, seed=seed) for k, m in models.items()}
    steps.update()
    interventions = evaluate_interventions(models["raw"], task, sets_per_length=sets, seed=seed)
    steps.update()
    patch_lengths = sorted({hi, min(L, 2 * hi)})
    patches = {s: patch_swap(main, task, length=s, n=min(sets, 256), swap_position=0, seed=seed) for s in patch_lengths}
    steps.update()

    figures = []
    figures += plot_metrics(metrics, out / "metrics_vs_length", title=f"{run_dir.name}: metrics against length")
    figures += plot_entropy(entropy, out / "entropy_vs_length", title=f"{run_dir.name}: attention entropy (last position)")
    figures += plot_displacement(disp, out / "displacement_vs_length", title=f"{run_dir.name}: logit gap vs (2/s) gap(2)")
    with_avg = {f"raw + {k}" if k != "none" else "raw": v for k, v in interventions.items()}
    if "averaged" in metrics:
        with_avg["averaged (avg)"] = metrics["averaged"]
    figures += plot_metrics(with_avg, out / "interventions", metrics=("tv", "itr"), title="test-time interventions")
    gen = torch.Generator().manual_seed(seed)
    example = task.sample_batch(1, max_len=L, generator=gen)
    for s, res in patches.items():
        figures += plot_patching(res, out / f"patching_len{s}")
    html = []
    for s in sorted({hi, (hi + L) // 2, L}):
        path = attention_html(main, example.tokens[0, : s + task.offset], out / f"attention_len{s}.html", bos=cfg.task.bos,
                              title=f"{run_dir.name} ({kinds[-1]} weights): a set of {s} items")
        html.append(path)
    steps.update()
    steps.close()

    summary = {
        "run_dir": str(run_dir),
        "weights": kinds,
        "sets_per_length": sets,
        "train_range": [lo, hi],
        "max_len": L,
        "metrics": {k: m.summary() for k, m in metrics.items()},
        "interventions": {k: m.summary() for k, m in interventions.items()},
        "attention": {
            k: [{"layer": r["layer"], "head": r["head"], "length": r["length"], "entropy": r["entropy_mean"],
                 "norm_entropy": r["norm_entropy_mean"]} for r in st.rows if r["length"] in (1, 2, hi, L)]
            for k, st in entropy.items()
        },
        "displacement": {
            k: {
                "gap_at_2": _at(d.rows, 2, "gap") if L >= 2 else None,
                "gap_at_train_max": _at(d.rows, hi, "gap"),
                "theory_gap_at_train_max": _at(d.rows, hi, "theory_gap"),
                "gap_at_max": _at(d.rows, L, "gap"),
                "theory_gap_at_max": _at(d.rows, L, "theory_gap"),
                "balance": [{key: b[key] for key in ("what", "layer", "head", "mean", "std", "cv")} for b in d.balance],
                "max_decomposition_error": d.max_decomposition_error,
            }
            for k, d in disp.items()
        },
        "patching": {str(s): {"clean_ld": r.clean_ld, "corrupted_ld": r.corrupted_ld,
                              "head_out_max": r.head_out.max().item(), "resid_pre_at_swap": r.resid_pre[:, r.swap_position].tolist()}
                     for s, r in patches.items()},
        "files": sorted(p.name for p in figures + html),
    }
    atomic.write_json(out / "summary.json", summary)
    atomic.write_json(out / "per_length.json", {
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
        "interventions": {k: m.to_dict() for k, m in interventions.items()},
        "attention": {k: st.to_dict() for k, st in entropy.items()},
        "displacement": {k: d.to_dict() for k, d in disp.items()},
        "patching": {str(s): r.to_dict() for s, r in patches.items()},
    })
    atomic.write_text(out / "README.md", _readme(run_dir, summary, patches, html))
    return summary


def _readme(run_dir, summary, patches, html) -> str:
    lines = [f"# Report: {run_dir.name}", "", f"Run: `{run_dir}`; {summary['sets_per_length']} random sets per length; "
             f"training lengths {summary['train_range'][0]}..{summary['train_range'][1]}, evaluated up to {summary['max_len']}.", "",
             "| weights / intervention | TV in range | TV beyond | ITR in range | ITR beyond |", "|---|---|---|---|---|"]
    rows = {**{k: v for k, v in summary["metrics"].items()}, **{f"raw + {k}": v for k, v in summary["interventions"].items() if k != "none"}}
    for name, s in rows.items():
        ir, be = s.get("in_range", {}), s.get("beyond", {})
        lines.append(f"| {name} | {ir.get('tv', float('nan')):.4f} | {be.get('tv', float('nan')):.4f} | "
                     f"{ir.get('itr', float('nan')):.2e} | {be.get('itr', float('nan')):.2e} |")
    lines += ["", "Logit gap against the balanced theory (2/s) gap(2):", ""]
    for k, d in summary["displacement"].items():
        lines.append(f"- {k}: gap(2) = {d['gap_at_2']:.3f}; at the longest length {d['gap_at_max']:.3f} vs {d['theory_gap_at_max']:.3f} "
                     f"predicted; decomposition error {d['max_decomposition_error']:.1e}")
    lines += ["", "Figures:", "", "- [metrics against length](metrics_vs_length.png)", "- [attention entropy](entropy_vs_length.png)",
              "- [logit displacement](displacement_vs_length.png)", "- [interventions](interventions.png)"]
    lines += [f"- [patching at length {s}](patching_len{s}.png)" for s in patches]
    lines += ["", "Attention views (open in a browser; they work offline):", ""]
    lines += [f"- [{p.stem}]({p.name})" for p in html]
    lines += ["", "All numbers: `summary.json`; every length: `per_length.json`.", ""]
    return "\n".join(lines)

"""``python -m interp report RUN_DIR``: every probe on a trained run, written as a report folder.

The folder holds ``summary.json`` (the figures a notebook or a person needs), PNG and SVG plots
(metrics, entropy and displacement against length, interventions, patching), offline attention
HTML for a few example sets, and a ``README.md`` that links them.

Every set of weights the run saves is measured: raw, and each average (the ``averaging`` section's
'averaged', or every named averager). The mechanism checks for a remedy (Post-Norm, scalable
softmax, output rescaling: the model options are in ``summary.json``) are the dispersion measures
per set of weights: attention entropy, the s * margin(s) and s * gap(s) laws, and the balance (CV)
of each token's self-displacement; the decompositions read Post-Norm and output-rescaled models
through their frozen norms (``interp/core/readout.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.core.patching import PatchingResult, patch_swap
from interp.core.visualize import (
    attention_html,
    plot_displacement,
    plot_entropy,
    plot_metrics,
    plot_patching,
    save_figure,
)
from interp.set_complement.dispersion import Dispersion, dispersion_from
from interp.set_complement.displacement import DisplacementStats, displacement_by_length
from interp.set_complement.interventions import evaluate_interventions
from interp.set_complement.probes import AttentionStats, attention_entropy
from training import atomic, runs
from training.metrics import LengthMetrics
from training.tasks import registry
from training.tasks.set_complement.metrics import evaluate_lengths
from training.tasks.set_complement.task import SetComplementTask


def _at(series_rows, length, key):
    return next((r[key] for r in series_rows if r["length"] == length), None)


@dataclass
class SetReport:
    """Every probe's result on one set-complement run, before any of it is drawn or written."""

    run_dir: Path
    weights: list[str]
    """Weights measured: raw, and averaged when the run averages."""
    sets: int
    train_range: tuple[int, int]
    max_len: int
    bos: bool
    metrics: dict[str, LengthMetrics]
    entropy: dict[str, AttentionStats]
    displacement: dict[str, DisplacementStats]
    interventions: dict[str, LengthMetrics]
    patches: dict[int, PatchingResult]
    options: dict
    """The model's workbench options (norm position, scalable softmax, output rescaling)."""
    patched: str
    """The weights that patching and the attention views use."""

    @property
    def mechanism(self) -> dict[str, Dispersion]:
        return {k: dispersion_from(self.metrics[k], self.entropy[k], self.displacement[k]) for k in self.weights}

    def summary(self, files: list[str]) -> dict:
        lo, hi = self.train_range
        L = self.max_len
        return {
            "run_dir": str(self.run_dir),
            "weights": self.weights,
            "model_options": self.options,
            "patched_weights": self.patched,
            "sets_per_length": self.sets,
            "train_range": [lo, hi],
            "max_len": L,
            "metrics": {k: m.summary() for k, m in self.metrics.items()},
            "interventions": {k: m.summary() for k, m in self.interventions.items()},
            "attention": {
                k: [
                    {
                        "layer": r["layer"],
                        "head": r["head"],
                        "length": r["length"],
                        "entropy": r["entropy_mean"],
                        "norm_entropy": r["norm_entropy_mean"],
                    }
                    for r in st.rows
                    if r["length"] in (1, 2, hi, L)
                ]
                for k, st in self.entropy.items()
            },
            "displacement": {
                k: {
                    "gap_at_2": _at(d.rows, 2, "gap"),
                    "gap_at_train_max": _at(d.rows, hi, "gap"),
                    "theory_gap_at_train_max": _at(d.rows, hi, "theory_gap"),
                    "gap_at_max": _at(d.rows, L, "gap"),
                    "theory_gap_at_max": _at(d.rows, L, "theory_gap"),
                    "balance": [
                        {key: b[key] for key in ("what", "layer", "head", "mean", "std", "cv")} for b in d.balance
                    ],
                    "max_decomposition_error": d.max_decomposition_error,
                }
                for k, d in self.displacement.items()
            },
            "mechanism": {
                k: {**d.summary(), "self_displacement_cv": d.self_displacement_cv} for k, d in self.mechanism.items()
            },
            "patching": {
                str(s): {
                    "clean_ld": r.clean_ld,
                    "corrupted_ld": r.corrupted_ld,
                    "head_out_max": r.head_out.max().item(),
                    "resid_pre_at_swap": r.resid_pre[:, r.swap_position].tolist(),
                }
                for s, r in self.patches.items()
            },
            "files": files,
        }

    def per_length(self) -> dict:
        return {
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "interventions": {k: m.to_dict() for k, m in self.interventions.items()},
            "attention": {k: st.to_dict() for k, st in self.entropy.items()},
            "displacement": {k: d.to_dict() for k, d in self.displacement.items()},
            "patching": {str(s): r.to_dict() for s, r in self.patches.items()},
        }


def collect_report(run_dir: str | Path, sets: int = 1024, seed: int | None = None, progress: bool = True):
    """Run every probe on a set-complement run (on the sets of ``seed``, by default the run's own
    ``train.eval_seed``); returns the report and the models it measured."""
    run_dir = Path(run_dir)
    cfg = runs.read_run_config(run_dir)
    seed = cfg.train.eval_seed if seed is None else seed
    registry.require(cfg.kind, "set_complement", "report")
    task = SetComplementTask(cfg.task)
    weights = runs.weight_names(cfg)
    models = {w: runs.load_run(run_dir, w) for w in weights}
    patched = "averaged" if "averaged" in models else "raw"  # the legacy single average, else raw
    main = models[patched]
    hi, L = cfg.task.train_max_len, cfg.task.max_eval_len
    steps = tqdm(total=5, desc="report", disable=not progress)
    metrics = {k: evaluate_lengths(m, task, n=sets, seed=seed) for k, m in models.items()}
    steps.update()
    entropy = {k: attention_entropy(m, task, n=sets, seed=seed) for k, m in models.items()}
    steps.update()
    disp = {k: displacement_by_length(m, task, n=sets, seed=seed) for k, m in models.items()}
    steps.update()
    interventions = evaluate_interventions(models["raw"], task, n=sets, seed=seed)
    steps.update()
    patch_lengths = sorted({hi, min(L, 2 * hi)})
    patches = {
        s: patch_swap(main, task, length=s, n=min(sets, 256), swap_position=0, seed=seed, progress=progress)
        for s in patch_lengths
    }
    steps.update()
    steps.close()
    report = SetReport(
        run_dir,
        weights,
        sets,
        (cfg.task.train_min_len, hi),
        L,
        cfg.task.bos,
        metrics,
        entropy,
        disp,
        interventions,
        patches,
        dict(getattr(main, "workbench_options", {})),
        patched,
    )
    return report, main, task


def build_report(
    run_dir: str | Path, out: str | Path | None = None, sets: int = 1024, seed: int | None = None, progress: bool = True
) -> dict:
    """Measure (``collect_report``), then write figures, attention HTML, JSON and a README into ``out``."""
    out = Path(out) if out else Path(run_dir) / "report"
    cfg = runs.read_run_config(run_dir)
    registry.require(cfg.kind, "set_complement", "report")  # before any folder is made
    runs.require_weights(run_dir, runs.weight_names(cfg))
    seed = cfg.train.eval_seed if seed is None else seed
    out.mkdir(parents=True, exist_ok=True)  # an unwritable place fails before minutes of probing
    report, main, task = collect_report(run_dir, sets, seed, progress)
    name = report.run_dir.name
    figures = save_figure(
        plot_metrics(report.metrics, title=f"{name}: metrics against length"), out / "metrics_vs_length"
    )
    figures += save_figure(
        plot_entropy(report.entropy, title=f"{name}: attention entropy (last position)"), out / "entropy_vs_length"
    )
    figures += save_figure(
        plot_displacement(report.displacement, title=f"{name}: logit gap vs (2/s) gap(2)"),
        out / "displacement_vs_length",
    )
    with_avg = {f"raw + {k}" if k != "none" else "raw": v for k, v in report.interventions.items()}
    if "averaged" in report.metrics:
        with_avg["averaged (avg)"] = report.metrics["averaged"]
    figures += save_figure(
        plot_metrics(with_avg, metrics=("tv", "itr"), title="test-time interventions"), out / "interventions"
    )
    for s, res in report.patches.items():
        figures += save_figure(plot_patching(res), out / f"patching_len{s}")
    L, hi = report.max_len, report.train_range[1]
    example = task.sample_batch(1, max_len=L, generator=torch.Generator().manual_seed(seed))
    html = []
    for s in sorted({hi, (hi + L) // 2, L}):
        path = attention_html(
            main,
            example.tokens[0, : s + task.offset],
            out / f"attention_len{s}.html",
            bos=report.bos,
            title=f"{name} ({report.patched} weights): a set of {s} items",
        )
        html.append(path)
    summary = report.summary(sorted(p.name for p in figures + html))
    atomic.write_json(out / "summary.json", summary)
    atomic.write_json(out / "per_length.json", report.per_length())
    atomic.write_text(out / "README.md", _readme(report.run_dir, summary, report.patches, html))
    return summary


def _readme(run_dir, summary, patches, html) -> str:
    lines = [
        f"# Report: {run_dir.name}",
        "",
        f"Run: `{run_dir}`; {summary['sets_per_length']} random sets per length; "
        f"training lengths {summary['train_range'][0]}..{summary['train_range'][1]}, "
        f"evaluated up to {summary['max_len']}.",
        "",
        "| weights / intervention | TV in range | TV beyond | ITR in range | ITR beyond |",
        "|---|---|---|---|---|",
    ]
    rows = {
        **{k: v for k, v in summary["metrics"].items()},
        **{f"raw + {k}": v for k, v in summary["interventions"].items() if k != "none"},
    }
    for name, s in rows.items():
        ir, be = s.get("in_range", {}), s.get("beyond", {})
        lines.append(
            f"| {name} | {ir.get('tv', float('nan')):.4f} | {be.get('tv', float('nan')):.4f} | "
            f"{ir.get('itr', float('nan')):.2e} | {be.get('itr', float('nan')):.2e} |"
        )
    lines += ["", "Logit gap against the balanced theory (2/s) gap(2):", ""]
    for k, d in summary["displacement"].items():
        if d["gap_at_2"] is None:  # v = 2: a set of one item is the only length, nothing to compare
            lines.append(f"- {k}: only length 1 exists (v = 2); decomposition error {d['max_decomposition_error']:.1e}")
            continue
        lines.append(
            f"- {k}: gap(2) = {d['gap_at_2']:.3f}; "
            f"at the longest length {d['gap_at_max']:.3f} vs {d['theory_gap_at_max']:.3f} "
            f"predicted; decomposition error {d['max_decomposition_error']:.1e}"
        )
    options = ", ".join(f"{k} = {v}" for k, v in summary["model_options"].items()) or "none"
    lines += [
        "",
        f"Mechanism checks (model options: {options}): normalised attention entropy of the last position "
        "(mean over heads), the margin and gap laws s x(s) / (2 x(2)) (1 = the balanced 1/s decay), and the "
        "CV of each token's self-displacement (0 = balanced), in range and beyond:",
        "",
        "| weights | entropy in range | entropy beyond | margin law beyond | gap law beyond | self-displacement CV |",
        "|---|---|---|---|---|---|",
    ]
    for k, m in summary["mechanism"].items():
        ir, be = m.get("in_range", {}), m.get("beyond", {})
        cvs = [c for layer in m["self_displacement_cv"] for c in layer]
        lines.append(
            f"| {k} | {ir.get('norm_entropy', float('nan')):.3f} | {be.get('norm_entropy', float('nan')):.3f} | "
            f"{be.get('margin_law', float('nan')):.3f} | {be.get('gap_law', float('nan')):.3f} | "
            f"{sum(cvs) / len(cvs) if cvs else float('nan'):.3f} |"
        )
    lines += [
        "",
        "Figures:",
        "",
        "- [metrics against length](metrics_vs_length.png)",
        "- [attention entropy](entropy_vs_length.png)",
        "- [logit displacement](displacement_vs_length.png)",
        "- [interventions](interventions.png)",
    ]
    lines += [f"- [patching at length {s}](patching_len{s}.png)" for s in patches]
    lines += ["", "Attention views (open in a browser; they work offline):", ""]
    lines += [f"- [{p.stem}]({p.name})" for p in html]
    lines += ["", "All numbers: `summary.json`; every length: `per_length.json`.", ""]
    return "\n".join(lines)

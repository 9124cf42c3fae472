"""``python -m interp othello-report RUN_DIR``: legality and board-state probes of an OthelloGPT run.

Probes are fit on positions inside the training range only (move indices 1..train_max_moves) of
training games and scored on held-out games at every move index, so the accuracy beyond the
training range is a real test of whether the board representation extends to longer inputs.
Controls: the same probe on a randomly initialised model of the same shape, and on shuffled labels.
A side-to-move probe (who plays next, passes included) tests the parity explanation of the
collapse past the training length: if the model loses whose turn it is beyond move 30, this
probe's accuracy falls there; the side-to-move edit then asks whether the model plays the other
side's moves when its turn reading is flipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.core.visualize import attention_html, finish, new_figure, save_figure, shade_training
from interp.othello.board_probe import ProbeAccuracy, board_labels, fit_board_probe, probe_accuracy
from interp.othello.intervention import intervene, plot_intervention
from training import atomic, runs
from training.metrics import LengthMetrics
from training.models import build_model
from training.scoped import eval_mode
from training.tasks import registry
from training.tasks.othello.engine import TOKEN_TO_SQUARE, squares_to_tokens
from training.tasks.othello.task import N_CTX


@dataclass
class OthelloReport:
    """Everything ``build_othello_report`` measures, before any of it is drawn or written."""

    run_dir: Path
    weights: str
    positional: str
    train_max_moves: int
    probe_games: int
    eval_games: int
    legal: LengthMetrics
    accuracy: dict[str, ProbeAccuracy]
    """relative, absolute, side to move, random model, shuffled labels."""
    best: str
    """The hook where the relative probe reads the board best."""
    edits: dict[str, dict]

    @property
    def hooks(self) -> list[str]:
        return list(self.accuracy["relative"].by_layer)

    def summary(self, files: list[str]) -> dict:
        hi = self.train_max_moves
        return {
            "run_dir": str(self.run_dir),
            "weights": self.weights,
            "positional": self.positional,
            "train_max_moves": hi,
            "probe_games": self.probe_games,
            "eval_games": self.eval_games,
            "best_layer": self.best,
            "legal": self.legal.summary(),
            "probe_accuracy_by_layer": {k: a.by_layer for k, a in self.accuracy.items()},
            "probe_accuracy_in_range_vs_beyond": {
                k: {
                    h: {"in_range": float(np.mean(a.by_move[h][:hi])), "beyond": float(np.mean(a.by_move[h][hi:]))}
                    for h in self.hooks
                }
                for k, a in self.accuracy.items()
            },
            "interventions": self.edits,
            "files": files,
        }


def collect_othello_report(run_dir, probe_games: int = 2000, eval_games: int = 1000, progress: bool = True):
    """Legality, board probes with their controls, and probe-direction edits of an Othello run;
    returns the report and the model and held-out games it was measured on."""
    run_dir = Path(run_dir)
    cfg = runs.read_run_config(run_dir)
    registry.require(cfg.kind, "othello", "othello-report")
    task = cfg.make_task()
    weights = "averaged" if "averaged" in cfg.averaging_configs() else "raw"
    model = runs.load_run(run_dir, weights)
    hi = cfg.othello.train_max_moves
    train_games = np.asarray(task.games[: min(probe_games, task.n_train)])
    val_games = np.asarray(task.games[task.n_train : task.n_train + min(eval_games, cfg.othello.val_games)])
    steps = tqdm(total=4, desc="othello report", disable=not progress)

    legal = task.evaluate(model, n=len(val_games))
    steps.update()
    fit = dict(positions=(0, hi - 1))
    relative = fit_board_probe(model, train_games, "relative", **fit)  # fit once: scored, then used for the edits
    side = fit_board_probe(model, train_games, "side", **fit)
    acc = {
        "relative": probe_accuracy(model, relative, val_games),
        "absolute": probe_accuracy(model, fit_board_probe(model, train_games, "absolute", **fit), val_games),
        "side to move": probe_accuracy(model, side, val_games),
    }
    steps.update()
    d_vocab, d_vocab_out = cfg.vocab()
    random_model = build_model(cfg.model, d_vocab, d_vocab_out, cfg.n_ctx(), seed=cfg.train.seed + 1).eval()
    acc["random model"] = probe_accuracy(
        random_model, fit_board_probe(random_model, train_games, "relative", **fit), val_games
    )
    acc["shuffled labels"] = probe_accuracy(
        model, fit_board_probe(model, train_games, "relative", shuffle_labels=True, **fit), val_games
    )
    steps.update()
    best = max(acc["relative"].by_layer, key=acc["relative"].by_layer.get)
    edits, results = {}, {}
    for m in sorted({max(1, hi // 2), min(N_CTX - 1, hi + (N_CTX - hi) // 2)}):
        for dst in ("theirs", "empty"):
            r = intervene(model, relative, val_games, m, best, dst=dst)
            edits[f"move {m}, mine->{dst}"] = r.summary()
            results[(m, dst)] = r
        r = intervene(model, side, val_games, m, best)
        edits[f"move {m}, side to move"] = r.summary()
        results[(m, "side")] = r
    steps.update()
    steps.close()
    report = OthelloReport(
        run_dir, weights, cfg.model.positional, hi, len(train_games), len(val_games), legal, acc, best, edits
    )
    return report, model, val_games, results


def plot_probes_and_legality(report: OthelloReport, stem=None):
    """Probe accuracy by layer, the relative probe by move index, and legality by move index."""
    acc, hooks, hi = report.accuracy, report.hooks, report.train_max_moves
    moves = list(range(1, N_CTX + 1))
    fig, axes = new_figure(1, 3, figsize=(17, 4.2))
    for name, a in acc.items():
        style = "--" if name == "side to move" else "-"
        axes[0].plot(range(len(hooks)), [a.by_layer[h] for h in hooks], style, marker="o", label=name)
    axes[0].set(
        xticks=range(len(hooks)),
        xticklabels=[h.split(".")[1] for h in hooks],
        xlabel="layer (resid_post)",
        ylabel="accuracy (all squares; side: one label)",
        title="probe accuracy by layer",
    )
    shade_training(axes[1], (1, hi), "training range")
    for h in hooks:
        axes[1].plot(moves, acc["relative"].by_move[h], label=f"layer {h.split('.')[1]}", alpha=0.8)
    axes[1].plot(moves, acc["random model"].by_move[report.best], "k:", label="random model (same layer)")
    axes[1].plot(moves, acc["side to move"].by_move[report.best], "k--", label="side to move (same layer)")
    axes[1].set(xlabel="move index", ylabel="accuracy", title="relative-board probe by move index")
    shade_training(axes[2], (1, hi), "training range")
    axes[2].plot(report.legal.lengths, report.legal.values["legal_top1"], marker=".", label="top-1 legal")
    axes[2].plot(report.legal.lengths, report.legal.values["itr"], marker=".", label="illegal mass (ITR)")
    axes[2].set(xlabel="move index", title="legal-move prediction by move index")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, stem)


def plot_probe_by_square(report: OthelloReport, stem=None):
    fig, ax = new_figure(figsize=(4.5, 4))
    im = ax.imshow(
        np.array(report.accuracy["relative"].by_square[report.best]).reshape(8, 8), vmin=0.5, vmax=1, cmap="viridis"
    )
    ax.set(title=f"per-square accuracy, layer {report.best.split('.')[1]}", xticks=range(8), yticks=range(8))
    fig.colorbar(im, ax=ax)
    return finish(fig, stem)


def build_othello_report(
    run_dir, out=None, probe_games: int = 2000, eval_games: int = 1000, progress: bool = True
) -> dict:
    """Measure (``collect_othello_report``), then write figures, JSON and a README into ``out``."""
    out = Path(out) if out else Path(run_dir) / "othello_report"
    cfg = runs.read_run_config(run_dir)
    registry.require(cfg.kind, "othello", "othello-report")  # before any folder is made
    runs.require_weights(run_dir, ["raw"])
    out.mkdir(parents=True, exist_ok=True)  # an unwritable place fails before minutes of probing
    report, model, val_games, edits = collect_othello_report(run_dir, probe_games, eval_games, progress)
    figures = save_figure(plot_probes_and_legality(report), out / "probes_and_legality")
    figures += save_figure(plot_probe_by_square(report), out / "probe_by_square")
    figures += save_figure(_board_figure(model, val_games[0], report.train_max_moves), out / "board_predictions")
    for (m, dst), r in edits.items():
        if dst == "theirs":
            figures += save_figure(plot_intervention(r), out / f"intervention_move{m}")
    tokens = torch.from_numpy(squares_to_tokens(val_games[:1, :N_CTX]))[0]
    html = attention_html(model, tokens, out / "attention_game0.html", title=f"{report.run_dir.name}: a held-out game")
    summary = report.summary(sorted(p.name for p in figures + [html]))
    atomic.write_json(out / "summary.json", summary)
    atomic.write_json(
        out / "per_move.json",
        {"legal": report.legal.to_dict(), "probes": {k: a.to_dict() for k, a in report.accuracy.items()}},
    )
    atomic.write_text(out / "README.md", _readme(report, summary))
    return summary


def _readme(report: OthelloReport, summary: dict) -> str:
    lines = [
        f"# OthelloGPT report: {report.run_dir.name}",
        "",
        f"{report.weights} weights, {report.positional} positions, trained on moves 1..{report.train_max_moves}.",
        "",
        "| probe | layer | in range | beyond |",
        "|---|---|---|---|",
    ]
    for k, per in summary["probe_accuracy_in_range_vs_beyond"].items():
        for h, v in per.items():
            lines.append(f"| {k} | {h.split('.')[1]} | {v['in_range']:.4f} | {v['beyond']:.4f} |")
    lg = summary["legal"]
    lines += [
        "",
        f"Top-1 legal: {lg['in_range']['legal_top1']:.4f} in range, "
        f"{lg.get('beyond', {}).get('legal_top1', float('nan')):.4f} beyond.",
        "",
        "- [probes and legality](probes_and_legality.png)",
        "- [per-square accuracy](probe_by_square.png)",
        "- [board predictions](board_predictions.png)",
        "- [attention, one game](attention_game0.html)",
        "",
        "Probe-direction edits at the best layer (mean logit change of moves that became legal / illegal "
        "on the edited board; top-N errors against the edited legal set without and with the edit; for the "
        "side-to-move edit the target set is the other side's legal moves on the same board):",
        "",
    ]
    for k, e in summary["interventions"].items():
        lines.append(
            f"- {k}: newly legal {e['newly_legal_logit_change']:+.3f}, "
            f"newly illegal {e['newly_illegal_logit_change']:+.3f}, "
            f"others {e['unchanged_logit_change']:+.3f}; "
            f"top-N errors {e['topn_errors_before']:.2f} -> {e['topn_errors_after']:.2f}; "
            f"probe reads the edit {e['probe_reads_target']:.2f}"
        )
    lines.append("")
    return "\n".join(lines)


@torch.no_grad()
def _board_figure(model, game: np.ndarray, hi: int, stem=None):
    """True board and the model's next-move probabilities at one in-range and one beyond move."""
    from matplotlib.patches import Circle, Rectangle

    labels = board_labels(game[None, :N_CTX], "absolute")[0]
    tokens = torch.from_numpy(squares_to_tokens(game[None, :N_CTX]))
    with eval_mode(model):
        probs = model(tokens).float().softmax(-1)[0]
    n_moves = int((game >= 0).sum())
    picks = [min(hi, n_moves - 1), min(hi + (N_CTX - hi) // 2, n_moves - 1)]
    legal = board_labels(game[None, :N_CTX], "legal")[0]
    fig, axes = new_figure(1, len(picks), figsize=(5 * len(picks), 4.8))
    for ax, m in zip(np.atleast_1d(axes), picks):
        board = labels[m - 1].reshape(8, 8)
        p = np.zeros(64)
        p[TOKEN_TO_SQUARE[1:]] = probs[m - 1, 1:].numpy()
        ax.imshow(p.reshape(8, 8), cmap="Greens", vmin=0, vmax=max(p.max(), 1e-6))
        for sq in range(64):
            r, c = divmod(sq, 8)
            if board[r, c]:
                ax.add_patch(Circle((c, r), 0.38, color="black" if board[r, c] == 1 else "white", ec="black"))
            if legal[m - 1, sq]:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set(
            title=f"after move {m} ({'in range' if m <= hi else 'beyond'}): green = predicted prob., red = legal",
            xticks=range(8),
            yticks=range(8),
        )
        ax.title.set_fontsize(8)
    return finish(fig, stem)

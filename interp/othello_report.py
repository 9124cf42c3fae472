"""``python -m interp othello-report RUN_DIR``: legality and board-state probes of an OthelloGPT run.

Probes are fit on positions inside the training range only (move indices 1..train_max_moves) of
training games and scored on held-out games at every move index, so the accuracy beyond the
training range is a real test of whether the board representation extends to longer inputs.
Controls: the same probe on a randomly initialised model of the same shape, and on shuffled labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from training import atomic, runs
from training.errors import WorkbenchError
from training.models import build_model
from training.tasks.othello import squares_to_tokens

from .board_intervention import intervene, plot_intervention
from .board_probe import N_CTX, board_labels, fit_board_probe, probe_accuracy
from .visualize import attention_html, plt, save_figure


def _shade(ax, hi):
    ax.axvspan(0.5, hi + 0.5, color="0.9", zorder=0, label="training range")


def build_othello_report(run_dir, out=None, probe_games: int = 2000, eval_games: int = 1000, progress: bool = True) -> dict:
    run_dir = Path(run_dir)
    cfg = runs.read_run_config(run_dir)
    if cfg.kind != "othello":
        raise WorkbenchError(f"{run_dir} is not an Othello run (use python -m interp report)")
    out = Path(out) if out else run_dir / "othello_report"
    out.mkdir(parents=True, exist_ok=True)
    task = cfg.make_task()
    weights = "averaged" if cfg.averaging.mode != "none" else "raw"
    model = runs.load_run(run_dir, weights)
    hi = cfg.othello.train_max_moves
    train_games = np.asarray(task.games[: min(probe_games, task.n_train)])
    val_games = np.asarray(task.games[task.n_train : task.n_train + min(eval_games, cfg.othello.val_games)])
    steps = tqdm(total=5, desc="othello report", disable=not progress)

    legal = task.evaluate(model, n_games=len(val_games))
    steps.update()
    fit = dict(positions=(0, hi - 1))
    acc = {}
    for target in ("relative", "absolute"):
        acc[target] = probe_accuracy(model, fit_board_probe(model, train_games, target, **fit), val_games)
    steps.update()
    d_vocab, d_vocab_out = cfg.vocab()
    random_model = build_model(cfg.model, d_vocab, d_vocab_out, cfg.n_ctx(), seed=cfg.train.seed + 1).eval()
    acc["random model"] = probe_accuracy(random_model, fit_board_probe(random_model, train_games, "relative", **fit), val_games)
    acc["shuffled labels"] = probe_accuracy(model, fit_board_probe(model, train_games, "relative", shuffle_labels=True, **fit), val_games)
    steps.update()

    hooks = list(acc["relative"].by_layer)
    moves = list(range(1, N_CTX + 1))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    for name, a in acc.items():
        axes[0].plot(range(len(hooks)), [a.by_layer[h] for h in hooks], marker="o", label=name)
    axes[0].set(xticks=range(len(hooks)), xticklabels=[h.split(".")[1] for h in hooks], xlabel="layer (resid_post)",
                ylabel="accuracy (all squares)", title="board probe accuracy by layer")
    best = max(hooks, key=lambda h: acc["relative"].by_layer[h])
    _shade(axes[1], hi)
    for h in hooks:
        axes[1].plot(moves, acc["relative"].by_move[h], label=f"layer {h.split('.')[1]}", alpha=0.8)
    axes[1].plot(moves, acc["random model"].by_move[best], "k:", label="random model (same layer)")
    axes[1].set(xlabel="move index", ylabel="accuracy", title="relative-board probe by move index")
    _shade(axes[2], hi)
    axes[2].plot(legal.lengths, legal.values["legal_top1"], marker=".", label="top-1 legal")
    axes[2].plot(legal.lengths, legal.values["itr"], marker=".", label="illegal mass (ITR)")
    axes[2].set(xlabel="move index", title="legal-move prediction by move index")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figures = save_figure(fig, out / "probes_and_legality")

    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(np.array(acc["relative"].by_square[best]).reshape(8, 8), vmin=0.5, vmax=1, cmap="viridis")
    ax.set(title=f"per-square accuracy, layer {best.split('.')[1]}", xticks=range(8), yticks=range(8))
    fig.colorbar(im, ax=ax)
    figures += save_figure(fig, out / "probe_by_square")
    steps.update()

    figures += _board_figure(model, val_games[0], hi, out / "board_predictions")
    probe = fit_board_probe(model, train_games, "relative", **fit)
    edits = {}
    for m in sorted({max(1, hi // 2), min(N_CTX - 1, hi + (N_CTX - hi) // 2)}):
        for dst in ("theirs", "empty"):
            r = intervene(model, probe, val_games, m, best, dst=dst)
            edits[f"move {m}, mine->{dst}"] = r.summary()
            if dst == "theirs":
                figures += plot_intervention(r, out / f"intervention_move{m}")
    tokens = torch.from_numpy(squares_to_tokens(val_games[:1, :N_CTX]))[0]
    html = attention_html(model, tokens, out / "attention_game0.html", title=f"{run_dir.name}: a held-out game")
    steps.update()
    steps.close()

    summary = {
        "run_dir": str(run_dir), "weights": weights, "positional": cfg.model.positional, "train_max_moves": hi,
        "probe_games": len(train_games), "eval_games": len(val_games), "best_layer": best,
        "legal": legal.summary(),
        "probe_accuracy_by_layer": {k: a.by_layer for k, a in acc.items()},
        "probe_accuracy_in_range_vs_beyond": {
            k: {h: {"in_range": float(np.mean(a.by_move[h][:hi])), "beyond": float(np.mean(a.by_move[h][hi:]))} for h in hooks}
            for k, a in acc.items()
        },
        "interventions": edits,
        "files": sorted(p.name for p in figures + [html]),
    }
    atomic.write_json(out / "summary.json", summary)
    atomic.write_json(out / "per_move.json", {"legal": legal.to_dict(), "probes": {k: a.to_dict() for k, a in acc.items()}})
    lines = [f"# OthelloGPT report: {run_dir.name}", "", f"{weights} weights, {cfg.model.positional} positions, trained on moves 1..{hi}.", "",
             "| probe | layer | in range | beyond |", "|---|---|---|---|"]
    for k, per in summary["probe_accuracy_in_range_vs_beyond"].items():
        for h, v in per.items():
            lines.append(f"| {k} | {h.split('.')[1]} | {v['in_range']:.4f} | {v['beyond']:.4f} |")
    lg = summary["legal"]
    lines += ["", f"Top-1 legal: {lg['in_range']['legal_top1']:.4f} in range, {lg.get('beyond', {}).get('legal_top1', float('nan')):.4f} beyond.", "",
              "- [probes and legality](probes_and_legality.png)", "- [per-square accuracy](probe_by_square.png)",
              "- [board predictions](board_predictions.png)", "- [attention, one game](attention_game0.html)", "",
              "Probe-direction edits at the best layer (mean logit change of moves that became legal / illegal "
              "on the edited board; top-N errors against the edited legal set without and with the edit):", ""]
    for k, e in edits.items():
        lines.append(f"- {k}: newly legal {e['newly_legal_logit_change']:+.3f}, newly illegal {e['newly_illegal_logit_change']:+.3f}, "
                     f"others {e['unchanged_logit_change']:+.3f}; top-N errors {e['topn_errors_before']:.2f} -> {e['topn_errors_after']:.2f}; "
                     f"probe reads the edit {e['probe_reads_target']:.2f}")
    lines.append("")
    atomic.write_text(out / "README.md", "\n".join(lines))
    return summary


@torch.no_grad()
def _board_figure(model, game: np.ndarray, hi: int, stem) -> list:
    """True board and the model's next-move probabilities at one in-range and one beyond move."""
    labels = board_labels(game[None, :N_CTX], "absolute")[0]
    tokens = torch.from_numpy(squares_to_tokens(game[None, :N_CTX]))
    probs = model(tokens).float().softmax(-1)[0]
    from training.tasks.othello import TOKEN_TO_SQUARE

    n_moves = int((game >= 0).sum())
    picks = [min(hi, n_moves - 1), min(hi + (N_CTX - hi) // 2, n_moves - 1)]
    legal = board_labels(game[None, :N_CTX], "legal")[0]
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks), 4.8))
    for ax, m in zip(np.atleast_1d(axes), picks):
        board = labels[m - 1].reshape(8, 8)
        p = np.zeros(64)
        p[TOKEN_TO_SQUARE[1:]] = probs[m - 1, 1:].numpy()
        ax.imshow(p.reshape(8, 8), cmap="Greens", vmin=0, vmax=max(p.max(), 1e-6))
        for sq in range(64):
            r, c = divmod(sq, 8)
            if board[r, c]:
                ax.add_patch(plt.Circle((c, r), 0.38, color="black" if board[r, c] == 1 else "white", ec="black"))
            if legal[m - 1, sq]:
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set(title=f"after move {m} ({'in range' if m <= hi else 'beyond'}): green = predicted prob., red = legal",
               xticks=range(8), yticks=range(8))
        ax.title.set_fontsize(8)
    return save_figure(fig, stem)

"""Why OthelloGPT with learned positions fails past its training length: transplant trained position
embeddings into the untrained slots and measure legality again.

A model trained on moves 1..T never updates ``W_pos[T:]``, so those rows keep their random
initialisation. Whose turn it is alternates with the move index, and a model may read it off the
position embedding. Each variant replaces every untrained row ``i >= T`` by a trained one:

- ``same_parity``: the last trained row with the parity of ``i`` (``T-2`` or ``T-1``): keeps
  whose-turn, loses the exact move count;
- ``opposite_parity``: the last trained row of the other parity: the control for the above;
- ``mean``: the mean of the trained rows: no parity at all.

If ``same_parity`` restores legality beyond ``T`` and ``opposite_parity`` does not, the model
needs the parity carried by its position embedding, and the untrained rows are what is missing.
Rows below ``T`` are never changed, so (with causal attention) in-range predictions stay exact.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from training import atomic, runs
from training.errors import WorkbenchError
from training.models import tied_position_rows
from training.tasks import registry

VARIANTS = ("original", "same_parity", "opposite_parity", "mean")


def source_rows(n_ctx: int, trained: int, variant: str) -> list[int | None]:
    """For each position, the row of ``W_pos`` it takes: itself, a trained row, or None (the mean)."""
    if variant not in VARIANTS:
        raise WorkbenchError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    if not 2 <= trained <= n_ctx:
        raise WorkbenchError(f"need 2 <= trained positions <= n_ctx={n_ctx}, got {trained}")
    tied = tied_position_rows(n_ctx, trained).tolist()  # the same-parity row, as model.tie_positions_from trains it
    rows: list[int | None] = list(range(trained))
    for i in range(trained, n_ctx):
        same = tied[i]
        rows.append(
            {"original": i, "same_parity": same, "opposite_parity": (2 * trained - 3) - same, "mean": None}[variant]
        )
    return rows


def transplant(model, trained: int, variant: str):
    """A copy of ``model`` whose untrained position rows are replaced as ``variant`` says."""
    if not hasattr(model, "W_pos") or model.cfg.positional_embedding_type != "standard":
        raise WorkbenchError("the model has no learned position embeddings (positional 'learned' only)")
    out = copy.deepcopy(model)
    W = model.W_pos.detach()
    mean = W[:trained].mean(0)
    with torch.no_grad():
        for i, src in enumerate(source_rows(W.shape[0], trained, variant)):
            out.W_pos[i] = mean if src is None else W[src]
    return out


def compare_positions(run_dir, n_games: int = 1000, progress: bool = True) -> dict:
    """Legality per move index of every variant on the run's held-out games."""
    from tqdm.auto import tqdm

    cfg = runs.read_run_config(run_dir)
    registry.require(cfg.kind, "othello", "othello-positions")
    if cfg.model.positional != "learned":
        raise WorkbenchError(f"{run_dir} uses {cfg.model.positional!r} positions; the transplant needs learned ones")
    task = cfg.make_task()
    model = runs.load_run(run_dir, "averaged" if "averaged" in cfg.averaging_configs() else "raw")
    trained = cfg.othello.train_max_moves
    out = {}
    for variant in tqdm(VARIANTS, desc="position variants", disable=not progress):
        out[variant] = task.evaluate(transplant(model, trained, variant), n_games)
    return out


def write_results(results: dict, out: Path) -> list[Path]:
    from interp.core.visualize import plot_metrics, save_figure

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "positions.json", {k: v.to_dict() for k, v in results.items()})
    return save_figure(
        plot_metrics(
            results,
            metrics=("legal_top1", "itr"),
            xlabel="move index",
            title="untrained position rows replaced by trained ones",
        ),
        out / "positions",
    )

"""The mechanism measures the paired study records per arm, for whichever task it runs on.

The study (``training/experiments/study``) measures each arm's outcomes through the ``Task``
interface; the mechanism measures are probes, so they live here, and the command line passes
``study_measures`` in. It gives every task the dispersion measure the study is about, attention
entropy by length (``norm_entropy``: entropy over log of the attended positions, averaged over
layers, heads and the lengths in range or beyond, from ``attention_by_index`` on the task's own
probe inputs), and adds a task's own measures where ``_task_measures`` has them: the set task's margin and gap
laws and self-displacement CV (``interp/set_complement/dispersion.py``); Othello's side-to-move
probe (``side_acc``: does the model still know whose move it is past the training length?).
"""

from __future__ import annotations

from typing import Callable

from interp.core.attention import attention_by_index


def entropy_measures(model, task, n: int = 512, seed: int = 0) -> dict:
    """Normalised attention entropy in range and beyond (mean over layers, heads and indices);
    nothing for a task that gives no probe inputs (``Task.probe_batches``)."""
    try:
        att = attention_by_index(model, task, n=n, seed=seed)
    except NotImplementedError:
        return {"by_range": {}, "model": {}}
    lo, hi = att.train_range
    out = {}
    for part, keep in (("in_range", lambda i: lo <= i <= hi), ("beyond", lambda i: i > hi)):
        cols = [k for k, i in enumerate(att.index) if keep(i)]
        if cols:
            out[part] = {"norm_entropy": float(att.norm_entropy[..., cols].double().mean())}
    return {"by_range": out, "model": {}}


def _set_measures(model, task, n, seed) -> dict:
    from interp.set_complement.dispersion import study_measures as set_study_measures

    return set_study_measures(model, task, n, seed)


def side_to_move_measures(model, task, n: int = 512, seed: int = 0) -> dict:
    """Accuracy of a linear side-to-move probe on the last layer's residual stream, in range and
    beyond (``side_acc``, mean over the move indices some game reached).

    The probe is fit in closed form on the in-range positions of the first ``n`` training games
    and scored on the first ``n`` held-out games (``interp/othello/board_probe.py``). Who moves
    next is the parity of the move index except after a pass, so a model that keeps it past move
    ``train_max_moves`` still tells its positions apart there. ``seed`` is unused: the games are
    the dataset's."""
    import numpy as np

    from interp.othello.board_probe import fit_board_probe, probe_accuracy

    lo, hi = task.shape(task.cfg).train_range
    hook = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    train_games = np.asarray(task.games[: min(n, task.n_train)])
    val_games = np.asarray(task.games[task.n_train : task.n_train + min(n, task.cfg.val_games)])
    probe = fit_board_probe(model, train_games, "side", hooks=[hook], positions=(lo - 1, hi - 1))
    acc = probe_accuracy(model, probe, val_games)
    out = {}
    for part, keep in (("in_range", lambda i: lo <= i <= hi), ("beyond", lambda i: i > hi)):
        values = [a for i, (a, g) in enumerate(zip(acc.by_move[hook], acc.games_by_move), 1) if keep(i) and g > 0]
        if values:
            out[part] = {"side_acc": float(np.mean(values))}
    return out


def _othello_measures(model, task, n, seed) -> dict:
    out = entropy_measures(model, task, n, seed)
    for part, values in side_to_move_measures(model, task, n, seed).items():
        out["by_range"].setdefault(part, {}).update(values)
    return out


def _task_measures() -> dict[type, Callable]:
    from training.tasks.othello.task import OthelloTask
    from training.tasks.set_complement.task import SetComplementTask

    return {SetComplementTask: _set_measures, OthelloTask: _othello_measures}


def study_measures(model, task, n: int = 512, seed: int = 0) -> dict:
    """The study's mechanism measures of one model: the task's own (``_task_measures``), else
    attention entropy by length (``entropy_measures``). ``by_range`` holds per-part summaries,
    ``model`` whole-model numbers."""
    for cls, measure in _task_measures().items():
        if isinstance(task, cls):
            return measure(model, task, n, seed)
    return entropy_measures(model, task, n, seed)

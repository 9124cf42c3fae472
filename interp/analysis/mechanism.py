"""The mechanism measures the paired study records per arm, for whichever task it runs on.

The study (``training/experiments/study``) measures each arm's outcomes through the ``Task``
interface; the mechanism measures are probes, so they live here, and the command line passes
``study_measures`` in. It gives every task the dispersion measure the study is about, attention
entropy by length (``norm_entropy``: entropy over log of the attended positions, averaged over
layers, heads and the lengths in range or beyond, from ``attention_by_index`` on the task's own
probe inputs), and adds a task's own measures where this file's ``TASK_MEASURES`` has them (the
set task's margin and gap laws and self-displacement CV, ``interp/set_complement/dispersion.py``).
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


def _task_measures() -> dict[type, Callable]:
    from training.tasks.set_complement.task import SetComplementTask

    return {SetComplementTask: _set_measures}


def study_measures(model, task, n: int = 512, seed: int = 0) -> dict:
    """The study's mechanism measures of one model: the task's own (``_task_measures``), else
    attention entropy by length (``entropy_measures``). ``by_range`` holds per-part summaries,
    ``model`` whole-model numbers."""
    for cls, measure in _task_measures().items():
        if isinstance(task, cls):
            return measure(model, task, n, seed)
    return entropy_measures(model, task, n, seed)

"""Tasks: each is a small class behind the ``Task`` interface (``base.py``), found by its config's
``kind`` in ``registry.py``. A task is one package or file here plus one registry line:

- ``set_complement/``: see a set, predict the uniform distribution over the rest (``task.py``),
  its per-length metrics (``metrics.py``) and its temperature fit (``calibration.py``);
- ``othello/``: OthelloGPT's next-move task (``task.py``) on the bitboard engine (``engine.py``, its
  torch twin ``engine_torch.py`` and a slow ``reference.py``), synthetic games (``data.py``) and
  the published checkpoints (``checkpoints.py``);
- ``calibration.py``: the temperature fit every task with a known true distribution shares.

Imports are lazy so that numpy-only users (the Othello data workers) do not import torch."""

_EXPORTS = {"SetComplementBatch", "SetComplementConfig", "SetComplementTask"}


def __getattr__(name):
    if name in _EXPORTS:
        from training.tasks.set_complement import task

        return getattr(task, name)
    raise AttributeError(name)


__all__ = sorted(_EXPORTS)

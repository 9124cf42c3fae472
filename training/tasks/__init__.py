"""Tasks: each is a small class with ``sample_batch``, its own ``loss`` and exact targets.

Imports are lazy so that numpy-only users (the Othello data workers) do not import torch."""

_EXPORTS = {"SetComplementBatch", "SetComplementConfig", "SetComplementTask"}


def __getattr__(name):
    if name in _EXPORTS:
        from . import set_complement

        return getattr(set_complement, name)
    raise AttributeError(name)


__all__ = sorted(_EXPORTS)

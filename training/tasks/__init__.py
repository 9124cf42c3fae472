"""Tasks: each is a small class with ``sample_batch``, its own ``loss`` and exact targets."""

from .set_complement import SetComplementBatch, SetComplementConfig, SetComplementTask

__all__ = ["SetComplementBatch", "SetComplementConfig", "SetComplementTask"]

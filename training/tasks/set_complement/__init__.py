"""The set complement task: ``task.py`` (batches, loss, targets), ``metrics.py`` (per-length
evaluation) and ``calibration.py`` (one temperature per model, on held-out in-range sets)."""

from training.tasks.set_complement.task import BOS_TOKEN, SetComplementBatch, SetComplementConfig, SetComplementTask

__all__ = ["BOS_TOKEN", "SetComplementBatch", "SetComplementConfig", "SetComplementTask"]

"""Fixed-seed batches of random sets for every length at once, shared by all probes.

Re-exported from ``training/tasks/set_complement_eval.py``, where the evaluation uses them too, so
that a probe and the trainer's evaluation see the very same sets for the same seed.
"""

from training.scoped import model_device
from training.tasks.set_complement_eval import set_batches

__all__ = ["model_device", "set_batches"]

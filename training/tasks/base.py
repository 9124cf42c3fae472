"""The interface every task implements, in the spirit of DeepMind's ``GeneralizationTask``.

A task says what the model sees (vocabulary sizes, context length, training range), draws
training batches, scores them (``loss``), and evaluates a model at every length it defines
(``evaluate``), returning a ``LengthMetrics``: set sizes for the set complement task, move indices
for OthelloGPT. The trainer, the experiments and the command lines only talk to this interface;
``training/tasks/registry.py`` maps a config's ``kind`` to the task class and its config section.

``shape(cfg)`` is a classmethod so that a run's model can be built, and a config validated,
without constructing the task (for Othello that would memory-map and check the dataset).

What the paired study (``training/experiments/study/``) asks of a task, so that it never asks
which task it has: the loss-only field it varies as its target axis (``target_field``, with
``target_values``; 'sampled' is a noisy draw from the true next-token distribution, 'exact' that
distribution itself), the metrics it records (``study_metrics``, ``calibrated_metrics``), the name
of the length axis (``index_name``) and calibrated evaluation (``calibrated_evaluate``), defined
for any task that can give its true next-token distribution on fresh in-range inputs
(``calibration_data``). Mechanism measures are probes, so they live in ``interp``
(``interp/analysis/mechanism.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from jaxtyping import Float
from torch import Tensor

from training.metrics import LengthMetrics
from training.scoped import eval_mode, model_device
from training.tasks.calibration import fit_scale

NOISY, NOISE_FREE = "sampled", "exact"
"""The target values every task with a target axis shares: a draw from the true next-token
distribution (noisy), and the distribution itself. The study's noise contrast is their difference."""


@dataclass(frozen=True)
class TaskShape:
    """What a model needs to know about a task to be built for it."""

    d_vocab: int
    d_vocab_out: int
    n_ctx: int
    """Context length the longest evaluated input needs."""
    train_range: tuple[int, int]
    """Shortest and longest length trained on (inclusive)."""
    context_reason: str
    """Why the task needs ``n_ctx``, for the error when a config's model.n_ctx is too small."""


@dataclass
class ProbeBatch:
    """Fixed inputs for probes, with what each position means for the task."""

    tokens: Tensor
    """Model input ``[batch, pos]``."""
    index: Tensor
    """``[pos]``: the length (set size, move index) each position's prediction is about; 0 for a
    position that stands for none (BOS)."""
    live: Tensor
    """``[batch, pos]``: positions to count (False once an OthelloGPT game is over)."""


class Task(ABC):
    """A length-generalization task: batches, loss and per-length evaluation."""

    index_name: str = "length"
    """What a 'length' is for this task, for axis labels ('set length s', 'move index')."""
    index_label: str = "len"
    """Short row label of the per-length text tables."""
    metric_names: tuple[str, ...] = ()
    """Every metric ``evaluate`` reports."""
    table_metrics: tuple[str, ...] = ()
    """The metrics the command lines print by default."""
    report_command: str = "report"
    """The ``python -m interp`` command that writes the full probe report for this task."""
    loss_only_fields: tuple[str, ...] = ()
    """Config fields that change ``loss`` alone, never the batches: runs that differ only in them
    can train side by side in one batched ensemble (``training/ensemble.py``) on the same data."""
    target_field: str | None = None
    """The loss-only field a study varies as its target axis, or None for a task with one loss."""
    target_values: tuple[str, ...] = ()
    """The values ``target_field`` takes ('sampled', 'exact')."""
    study_metrics: tuple[str, ...] = ()
    """Metrics a study records per arm and set of weights, in range and beyond; a study's claims
    are decided on 'tv', so a task in a study reports it (lower is better)."""
    calibrated_metrics: tuple[str, ...] = ()
    """Metrics the study records again at the model's fitted temperature, as ``cal_<name>``."""
    temperature_controls: tuple[str, ...] = ()
    """Calibrated metrics the study also records at two temperatures that see beyond the training
    lengths (``temperature_controls``): one fit on held-out beyond-range inputs, ``oracle_<name>``
    (how much of a gap any single temperature could close), and one per length, ``length_<name>``
    (what is left when even the temperature may follow the length: the shape of the distribution)."""

    @classmethod
    @abstractmethod
    def shape(cls, cfg: Any) -> TaskShape:
        """Vocabulary, context and training range from the task's config section alone."""

    @abstractmethod
    def sample_batch(self, batch_size: int, generator: torch.Generator | None = None, device="cpu"):
        """A training batch; ``batch.tokens`` is the model input."""

    @abstractmethod
    def loss(self, logits: Float[Tensor, "batch pos vocab"], batch) -> Tensor:
        """Scalar training loss of the model's logits on ``batch``."""

    def loss_target(self, batch) -> Tensor | None:
        """What ``loss`` compares the logits with, as a tensor computed from the batch alone, or
        None when the loss has no such target. An ensemble (``training/ensemble.py``) computes it
        once per batch, outside its mapped step, instead of once per member inside it; members
        that differ in loss-only fields get their own task's target for the same batch."""
        return None

    def target_loss(self, logits: Float[Tensor, "batch pos vocab"], batch, target: Tensor) -> Tensor:
        """``loss`` against ``target`` from ``loss_target`` (of this task or of one that differs
        from it only in loss-only fields): equals that task's ``loss``."""
        raise NotImplementedError(f"{type(self).__name__} has no loss target")

    def probe_batches(self, n: int, seed: int = 0, device="cpu") -> Iterator[ProbeBatch]:
        """The evaluation's own fixed inputs (``n`` per length), for probes that aggregate by length
        or move index without asking which task they have."""
        raise NotImplementedError(f"{type(self).__name__} gives no probe batches")

    @abstractmethod
    def evaluate(self, model: torch.nn.Module, n: int, seed: int = 0) -> LengthMetrics:
        """Every metric at every length, from ``n`` examples per length (sets, or held-out games);
        the model's train/eval mode is left as it was. A task with calibrated evaluation also
        takes ``logit_scale`` (multiplies the logits first: 1 / temperature)."""

    def calibration_data(self, n: int, device="cpu") -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Fresh in-range inputs (never the evaluation's) with the true next-token distribution:
        batches of (tokens ``[b, pos]``, p* ``[b, pos, vocab_out]``, which positions count
        ``[b, pos]``, in range and not padding). Tasks that know their true distribution give it."""
        raise NotImplementedError(f"{type(self).__name__} gives no calibration data")

    @torch.no_grad()
    def fit_logit_scale(self, model: torch.nn.Module, n: int = 512) -> float:
        """1 / T minimising the mean KL(p* || softmax(z / T)) over the in-range positions of
        ``calibration_data(n)`` (``calibration.fit_scale``)."""
        device = model_device(model)
        zs, ps = [], []
        with eval_mode(model):
            for tokens, p_star, keep in self.calibration_data(n, device):
                z = model(tokens).float()
                zs.append(z[keep].double())
                ps.append(p_star[keep].double())
        return fit_scale(torch.cat(zs), torch.cat(ps))

    def temperature_evaluations(self, model: torch.nn.Module, n: int, seed: int = 0, fit_n: int = 512) -> dict:
        """The controls of ``temperature_controls``: {'oracle': (LengthMetrics, 1/T),
        'length': (LengthMetrics, [1/T per length])}, each fit on ``fit_n`` held-out inputs and
        evaluated on the evaluation's own ``n``. Tasks that list controls implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no temperature controls")

    def calibrated_evaluate(
        self, model: torch.nn.Module, n: int, seed: int = 0, fit_n: int = 512
    ) -> tuple[LengthMetrics, float]:
        """Every metric at every length at the model's own temperature, fit on ``fit_n`` fresh
        in-range inputs, and that temperature as 1/T. Raises NotImplementedError for a task that
        does not know its true next-token distribution."""
        scale = self.fit_logit_scale(model, fit_n)
        return self.evaluate(model, n, seed, logit_scale=scale), scale

    def calibrated_evaluations(self, model: torch.nn.Module, n: int, seed: int = 0, fit_n: int = 512) -> dict:
        """What the study measures at fitted temperatures: {'cal': ``calibrated_evaluate``} when the
        task has ``calibrated_metrics``, and {'oracle', 'length': ``temperature_evaluations``} when
        it has ``temperature_controls``; each a (LengthMetrics, 1/T). A task whose evaluation can
        score one forward pass at several temperatures overrides this to run the pass once."""
        out = {}
        if self.calibrated_metrics:
            out["cal"] = self.calibrated_evaluate(model, n, seed, fit_n)
        if self.temperature_controls:
            out.update(self.temperature_evaluations(model, n, seed, fit_n))
        return out

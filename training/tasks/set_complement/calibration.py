"""Calibrated metrics of the set complement task: one temperature per model, fit on held-out sets.

Raw TV rewards any sharpening; fitting one softmax temperature per model on held-out in-range sets
(the calibration seed, never the evaluation's), then evaluating every length at it, removes that.
The fit itself is the generic one (``training/tasks/calibration.py``); here are the set task's own
batched inputs for it, which the committed studies were computed with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from training.metrics import LengthMetrics
from training.scoped import eval_mode, model_device
from training.tasks.calibration import CALIBRATION_SEED, fit_scale
from training.tasks.set_complement.metrics import evaluate_lengths, set_batches

if TYPE_CHECKING:
    from training.tasks.set_complement.task import SetComplementTask

__all__ = ["CALIBRATION_SEED", "calibrated_lengths", "fit_logit_scale", "fit_scales_beyond", "temperature_controls"]


@torch.no_grad()
def held_out_logits(
    model: torch.nn.Module, task: "SetComplementTask", n: int, max_len: int, seed: int = CALIBRATION_SEED
) -> tuple[Float[Tensor, "sets length vocab"], Float[Tensor, "sets length vocab"]]:
    """Logits (float64) and the true distribution p* after every prefix of ``n`` held-out sets of
    ``max_len`` items: what every temperature here is fit on."""
    device = model_device(model)
    zs, ps = [], []
    with eval_mode(model):
        for batch in set_batches(task, n, max_len, seed, 1024, device):
            zs.append(task.prefix_logits(model(batch.tokens), batch).double())
            valid = ~task.membership(batch.items, task.v)
            ps.append(valid.double() / valid.sum(-1, keepdim=True))
    return torch.cat(zs), torch.cat(ps)


def fit_logit_scale(
    model: torch.nn.Module,
    task: "SetComplementTask",
    n: int = 512,
    seed: int = CALIBRATION_SEED,
    max_scale: float = 1e3,
    iters: int = 100,
) -> float:
    """The factor beta = 1/T that minimises the mean KL(p* || softmax(beta z)) over the training
    lengths, on ``n`` held-out sets per length (``calibration.fit_scale``)."""
    lo_len, hi_len = task.cfg.train_min_len, task.cfg.train_max_len
    z, p_star = held_out_logits(model, task, n, hi_len, seed)
    in_range = slice(lo_len - 1, hi_len)
    return fit_scale(z[:, in_range].flatten(0, 1), p_star[:, in_range].flatten(0, 1), max_scale, iters)


def calibrated_lengths(
    model: torch.nn.Module,
    task: "SetComplementTask",
    n: int = 2048,
    seed: int = 0,
    fit_n: int = 512,
    fit_seed: int = CALIBRATION_SEED,
) -> tuple[LengthMetrics, float]:
    """Every metric at every length at the model's own best temperature (fit on other sets), and
    that temperature as 1/T."""
    scale = fit_logit_scale(model, task, fit_n, fit_seed)
    return evaluate_lengths(model, task, n, seed=seed, logit_scale=scale), scale


def fit_scales_beyond(
    model: torch.nn.Module,
    task: "SetComplementTask",
    n: int = 512,
    seed: int = CALIBRATION_SEED,
) -> tuple[float, list[float]]:
    """The temperatures that see past the training lengths, on ``n`` held-out sets per length:
    (one 1/T fit on every beyond-range length pooled, the oracle; one 1/T per length
    1..max_eval_len). Each minimises the mean KL(p* || softmax(beta z)) over its positions."""
    max_len, hi_len = task.cfg.max_eval_len, task.cfg.train_max_len
    if max_len <= hi_len:
        raise ValueError("the task evaluates no length beyond its training range")
    z, p_star = held_out_logits(model, task, n, max_len, seed)
    oracle = fit_scale(z[:, hi_len:].flatten(0, 1), p_star[:, hi_len:].flatten(0, 1))
    per_length = [fit_scale(z[:, i], p_star[:, i]) for i in range(max_len)]
    return oracle, per_length


def temperature_controls(
    model: torch.nn.Module, task: "SetComplementTask", n: int = 2048, seed: int = 0, fit_n: int = 512
) -> dict:
    """Every metric at the oracle temperature and at each length's own (``fit_scales_beyond``,
    fit on the calibration seed's sets), evaluated on the evaluation's sets."""
    oracle, per_length = fit_scales_beyond(model, task, fit_n)
    return {
        "oracle": (evaluate_lengths(model, task, n, seed=seed, logit_scale=oracle), oracle),
        "length": (evaluate_lengths(model, task, n, seed=seed, logit_scale=per_length), per_length),
    }

"""Test-time interventions against attention dispersion, applied with hooks (no retraining).

Beyond the study. Each intervention is a list of TransformerLens forward hooks:

- ``log_scale``: multiply the attention scores of a query that attends to ``n`` tokens by
  ``max(1, log n / log n_train)`` (``n_train``: tokens attended at the longest training length),
  so attention sharpens on longer inputs instead of spreading (scalable-softmax style); lengths
  inside the training range are untouched.
- ``temperature``: divide every attention score by a fixed temperature ``T``.
- ``out_rescale``: multiply each layer's attention output at a query attending to ``n`` tokens
  by ``max(1, n / n_train)``, undoing the 1/n compression of uniform attention directly (the aim
  of the study's v2 Post-Norm).

``evaluate_interventions`` returns per-length metrics for each, next to the unmodified model.
"""

from __future__ import annotations

import math

import torch

from interp.core.hooks import require_hooks
from interp.set_complement.probes import LengthMetrics, evaluate_lengths
from training.models import attended, out_rescale_hook
from training.tasks.set_complement.task import SetComplementTask


def log_scale_hooks(model, n_train: int) -> list:
    def hook(scores, hook):  # [batch, head, query, key]
        factor = (torch.log(attended(scores, 2)) / math.log(n_train)).clamp(min=1.0)
        return scores * factor

    return [(f"blocks.{layer}.attn.hook_attn_scores", hook) for layer in range(model.cfg.n_layers)]


def temperature_hooks(model, temperature: float) -> list:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")

    def hook(scores, hook):
        return scores / temperature

    return [(f"blocks.{layer}.attn.hook_attn_scores", hook) for layer in range(model.cfg.n_layers)]


def out_rescale_hooks(model, n_train: int) -> list:
    """The same hook as ``model.out_rescale_len`` trains with, applied at test time only."""
    return [(f"blocks.{layer}.hook_attn_out", out_rescale_hook(n_train)) for layer in range(model.cfg.n_layers)]


def standard_interventions(model, task: SetComplementTask, temperatures=(0.5,)) -> dict[str, list]:
    n_train = task.cfg.train_max_len + task.offset
    out = {"log_scale": log_scale_hooks(model, max(2, n_train))}
    for t in temperatures:
        out[f"temperature_{t:g}"] = temperature_hooks(model, t)
    out["out_rescale"] = out_rescale_hooks(model, n_train)
    return out


def evaluate_interventions(
    model, task: SetComplementTask, interventions: dict[str, list] | None = None, **eval_kwargs
) -> dict[str, LengthMetrics]:
    """Per-length metrics of the model as it is ('none') and under each intervention."""
    interventions = standard_interventions(model, task) if interventions is None else interventions
    for hooks in interventions.values():
        require_hooks(model, [name for name, _ in hooks if isinstance(name, str)])
    results = {"none": evaluate_lengths(model, task, **eval_kwargs)}
    for name, hooks in interventions.items():
        with model.hooks(fwd_hooks=hooks):
            results[name] = evaluate_lengths(model, task, **eval_kwargs)
    return results

"""Direct logit attribution per component, against length or move index.

The final residual stream is a sum of components: every head's output, every MLP's output, the
token embedding, the positional embedding and the summed biases. TransformerLens splits it
(``ActivationCache.get_full_resid_decomposition(apply_ln=True)``, which centres each component and
divides it by the cached final-LayerNorm scale); unembedding each part gives that component's
*direct* contribution to the logits, and the parts add up to the logits exactly. (With a
weighted final LayerNorm, its weight is folded into the unembedding and its bias, with ``b_U``,
into the bias component.) A Post-Norm or output-rescaled model's final stream is not that sum,
so its components are read out through ``interp/core/readout.py`` instead: each carried through every
later norm with frozen scales, the norms' biases joining the bias component. Same labels, and the
parts still add up to the logits.

Each component's logits are then scored by the task's own ``evaluate``, through a stand-in model
(as the logit lens does): the valid-minus-invalid ``gap`` at every set length, or legal-minus-
illegal at every move index on OthelloGPT. The gap is linear in the logits, so the components'
gaps add up to the model's, and a head whose gap collapses past the training length is a head
that stops separating legal from illegal outputs there. The per-source-token split of a head
(which TransformerLens lacks) stays in ``displacement.decompose_logits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from training.scoped import eval_mode


@torch.no_grad()
def component_logits(
    model, tokens: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, "component batch pos vocab"], list[str]]:
    """Each component's direct contribution to the logits, and the components' labels
    (``L{l}H{h}``, ``{l}_mlp_out``, ``embed``, ``pos_embed``, ``bias``); they sum to the logits."""
    from training.models import additive_readout_problem

    if additive_readout_problem(model) is not None:
        return _readout_components(model, tokens)
    _, cache = model.run_with_cache(tokens)
    norm = model.cfg.normalization_type
    if norm not in (None, "LN", "LNPre"):
        raise ValueError(f"direct logit attribution supports LN, LNPre or no final norm, not {norm}")
    stack, labels = cache.get_full_resid_decomposition(
        expand_neurons=False, apply_ln=norm is not None, return_labels=True
    )
    W_U, const = model.W_U, model.b_U
    if norm == "LN":
        W_U = model.ln_final.w[:, None] * model.W_U
        const = const + model.ln_final.b @ model.W_U
    logits = stack @ W_U
    if "bias" not in labels:  # no biases in the stream: the constant is a component of its own
        logits = torch.cat([logits, torch.zeros_like(logits[:1])])
        labels = [*labels, "bias"]
    logits[labels.index("bias")] += const
    return logits, labels


def _readout_components(
    model, tokens: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, "component batch pos vocab"], list[str]]:
    """``component_logits`` through the frozen-scale readout, in TransformerLens's label order."""
    from interp.core.readout import EMBED, Readout, attn_point, mlp_point

    cfg = model.cfg
    _, cache = model.run_with_cache(tokens)
    R = Readout(model, cache, slice(None))
    parts, labels = [], []
    for layer in range(cfg.n_layers):
        result = torch.einsum("bphd,hdm->bphm", cache[f"blocks.{layer}.attn.hook_z"], model.W_O[layer])
        per_head = R.unembed(result, attn_point(layer))  # [b, pos, head, vocab]
        for h in range(cfg.n_heads):
            parts.append(R.scaled(per_head[:, :, h], attn_point(layer)))
            labels.append(f"L{layer}H{h}")
    if not cfg.attn_only:
        for layer in range(cfg.n_layers):
            parts.append(R.logits(cache[f"blocks.{layer}.hook_mlp_out"], mlp_point(layer)))
            labels.append(f"{layer}_mlp_out")
    parts.append(R.logits(cache["hook_embed"], EMBED))
    labels.append("embed")
    if "hook_pos_embed" in cache.cache_dict:
        parts.append(R.logits(cache["hook_pos_embed"], EMBED))
        labels.append("pos_embed")
    parts.append(R.bias())
    labels.append("bias")
    return torch.stack(parts), labels


class ComponentModel(torch.nn.Module):
    """``model``'s logits through one component only: a stand-in model for ``task.evaluate``."""

    def __init__(self, model, label: str):
        super().__init__()
        self.model, self.label = model, label

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
        logits, labels = component_logits(self.model, tokens)
        if self.label not in labels:
            raise ValueError(f"no component {self.label!r}; the model has {', '.join(labels)}")
        return logits[labels.index(self.label)]


@dataclass
class Attribution:
    """``values[c, i]``: component ``labels[c]``'s direct contribution to ``metric`` at ``index[i]``."""

    labels: list[str]
    index: list[int]
    index_name: str
    train_range: tuple[int, int]
    metric: str
    values: Float[Tensor, "component index"]

    def of(self, label: str) -> Float[Tensor, " index"]:
        return self.values[self.labels.index(label)]

    def to_dict(self) -> dict:
        return {
            "labels": self.labels,
            "index": self.index,
            "index_name": self.index_name,
            "train_range": list(self.train_range),
            "metric": self.metric,
            "values": self.values.tolist(),
        }


def labels_of(model) -> list[str]:
    """The component labels of ``model`` (from a one-token forward pass)."""
    with eval_mode(model):
        return component_logits(model, torch.zeros(1, 1, dtype=torch.long, device=model.W_U.device))[1]


def component_attribution(model, task, n: int = 256, seed: int = 0, metric: str = "gap") -> Attribution:
    """Every component's direct contribution to the task's ``metric`` (a linear one: ``gap``) at
    every length or move index, on the evaluation's own fixed data."""
    if metric not in task.metric_names:
        raise ValueError(f"{type(task).__name__} has no metric {metric!r} (it has {', '.join(task.metric_names)})")
    labels = labels_of(model)
    rows, first = [], None
    for label in labels:
        m = task.evaluate(ComponentModel(model, label), n, seed)
        first = first or m
        rows.append(m.values[metric])
    return Attribution(labels, first.lengths, task.index_name, tuple(first.train_range), metric, torch.tensor(rows))


def plot_attribution(result: Attribution, stem=None, top: int = 8, title: str | None = None):
    """The ``top`` components by largest contribution, against length or move index."""
    from interp.core.visualize import finish, new_figure, shade_training

    order = result.values.abs().amax(1).argsort(descending=True)[:top].tolist()
    fig, ax = new_figure(figsize=(8, 4.2))
    for c in order:
        ax.plot(result.index, result.values[c].tolist(), marker=".", lw=1, label=result.labels[c])
    shade_training(ax, result.train_range)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(
        xlabel=result.index_name,
        ylabel=f"direct contribution to {result.metric}",
        title=title or f"direct logit attribution per component ({result.metric})",
    )
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return finish(fig, stem)

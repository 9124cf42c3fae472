"""Checking what a probe is asked for against the model before it runs: hooks, layers, heads,
positions and a probe's width.

A probe asked for ``blocks.5.hook_resid_post`` on a one-layer model used to fail with a KeyError
from deep inside ``ActivationCache``; a layer out of range with an IndexError; a position past the
input silently wrapped. Each check here names the problem and what the model has.
"""

from __future__ import annotations

from training.errors import WorkbenchError


def require_hooks(model, names: list[str] | tuple[str, ...]) -> None:
    """One-line WorkbenchError unless every name is a hook point of ``model``.

    Objects without TransformerLens's ``hook_dict`` (test doubles that fake ``run_with_cache``)
    are not checked."""
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:
        return
    for name in names:
        if not isinstance(name, str) or name not in hook_dict:
            n = model.cfg.n_layers
            layers = "layer 0" if n == 1 else f"layers 0..{n - 1}"
            raise WorkbenchError(
                f"{name!r} is not a hook of this model ({n} layer{'s' if n != 1 else ''}: {layers}; "
                f"for example 'blocks.{n - 1}.hook_resid_post')"
            )


def require_layer(model, layer: int, head: int | None = None) -> None:
    """One-line WorkbenchError unless ``layer`` (and ``head``) exist in ``model``."""
    n, h = model.cfg.n_layers, model.cfg.n_heads
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise WorkbenchError(f"layer {layer!r} is not in this model (layers 0..{n - 1})")
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < h):
        raise WorkbenchError(f"head {head!r} is not in layer {layer} (heads 0..{h - 1})")


def require_position(position: int, n_positions: int) -> int:
    """The index of ``position`` (negative counts from the end) in an input of ``n_positions``,
    or a one-line WorkbenchError when it lies outside: never a silent wrap-around."""
    if isinstance(position, bool) or not isinstance(position, int) or not -n_positions <= position < n_positions:
        raise WorkbenchError(f"position {position!r} is outside an input of {n_positions} positions")
    return position % n_positions


def require_width(model, width: int, what: str) -> None:
    """One-line WorkbenchError unless ``what`` (fit on some model) reads vectors of this model's width."""
    if width != model.cfg.d_model:
        raise WorkbenchError(f"{what} reads d_model {width}, this model has d_model {model.cfg.d_model}")

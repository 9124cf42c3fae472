"""Checking hook names against a model before a probe caches them.

A probe asked for ``blocks.5.hook_resid_post`` on a one-layer model used to fail with a KeyError
from deep inside ``ActivationCache``. ``require_hooks`` names the bad hook and what the model has.
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

"""Scoped state: everything the workbench switches on a model or on the process is put back after.

Notebook users call our probes and trainers on their own models in their own process, so nothing
may change behind their back:

- ``eval_mode(model)``: run in eval mode (dropout hooks off), then restore the model's own mode;
- ``deterministic_algorithms(flag)``: torch's process-wide deterministic-kernel switch, restored;
- ``forked_rng(device)``: the global CPU (and CUDA) generators, restored after seeding them;
- ``optuna_quiet()``: Optuna's logging verbosity and experimental-feature warnings, restored.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (models here live on one device)."""
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model.eval()`` for the block, then the model's previous train/eval mode again.

    Restores module by module, so a model whose submodules were in mixed modes gets them back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, warn_only: bool = False) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled, warn_only=...)`` for the block only."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def cuda_devices() -> list[int]:
    """Every CUDA device whose generator ``torch.manual_seed`` reseeds (none without CUDA)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def forked_rng() -> Iterator[None]:
    """Save the global CPU and CUDA generator states; restore them after the block.

    ``torch.manual_seed`` inside the block reseeds every CUDA device too, so all are forked."""
    with torch.random.fork_rng(devices=cuda_devices()):
        yield


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna at WARNING verbosity without its experimental-feature warnings, for the block only."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            # heartbeats are marked experimental in Optuna; we rely on them knowingly
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)``, put back on exit (a one-worker study or sweep runs in the
    caller's process, which keeps its own thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""The package face: ``interp`` re-exports its main functions (the very objects of their modules),
and the set task hides its off-by-one between item tokens and output indices."""

import importlib

import pytest
import torch

import interp
from training.errors import ConfigError
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask


def test_every_export_is_the_module_object():
    assert interp.__all__ and "patch_swap" in interp.__all__ and "evaluate_lengths" in dir(interp)
    for name in interp.__all__:
        module = importlib.import_module(interp._EXPORTS[name])
        assert getattr(interp, name) is getattr(module, name), name
    with pytest.raises(AttributeError):
        interp.no_such_probe  # noqa: B018


def test_items_and_output_indices():
    task = SetComplementTask(SetComplementConfig(v=8, train_max_len=3))
    batch = task.sample_batch(4, generator=torch.Generator().manual_seed(0))
    # the batch's items are the output indices of its item tokens, and back
    assert torch.equal(task.token_to_output(batch.tokens), batch.items)
    assert torch.equal(task.output_to_token(batch.items), batch.tokens)
    with pytest.raises(ConfigError, match="BOS"):
        task.token_to_output(torch.tensor([0, 3]))

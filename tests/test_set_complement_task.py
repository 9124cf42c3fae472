"""The task's data and targets against hand-computed values and the definition of the task."""

import math

import pytest
import torch

from training.errors import ConfigError
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask


def test_batch_is_prefixes_of_permutations():
    task = SetComplementTask(SetComplementConfig(v=10, train_max_len=6))
    g = torch.Generator().manual_seed(0)
    b = task.sample_batch(500, generator=g)
    assert b.tokens.shape == (500, 6) and b.items.shape == (500, 6)
    assert torch.equal(b.tokens, b.items + 1)
    assert b.tokens.min() >= 1 and b.tokens.max() <= 10
    full = torch.cat([b.items, b.next_item[:, -1:]], dim=1)
    assert all(len(set(row.tolist())) == 7 for row in full), "items of a permutation are distinct"
    assert torch.equal(b.next_item[:, :-1], b.items[:, 1:])


def test_bos_is_prepended_and_shifts_positions():
    task = SetComplementTask(SetComplementConfig(v=6, bos=True, train_max_len=3))
    b = task.sample_batch(4, generator=torch.Generator().manual_seed(1))
    assert b.tokens.shape == (4, 4) and (b.tokens[:, 0] == 0).all()
    assert task.position_of_length(1) == 1 and task.context_needed(5) == 6


def test_first_item_is_uniform():
    task = SetComplementTask(SetComplementConfig(v=5, train_max_len=2))
    b = task.sample_batch(50_000, generator=torch.Generator().manual_seed(2))
    freq = torch.bincount(b.items[:, 0], minlength=5).float() / 50_000
    assert torch.allclose(freq, torch.full((5,), 0.2), atol=0.01)


def test_exact_target_by_hand():
    task = SetComplementTask(SetComplementConfig(v=4, train_max_len=3))
    items = torch.tensor([[2, 0, 3]])
    expected = torch.tensor([[[1 / 3, 1 / 3, 0, 1 / 3], [0, 1 / 2, 0, 1 / 2], [0, 1, 0, 0]]])
    assert torch.allclose(task.exact_target(items), expected)


def test_loss_closed_forms():
    cfg = SetComplementConfig(v=8, train_max_len=5)
    task = SetComplementTask(cfg)
    b = task.sample_batch(64, generator=torch.Generator().manual_seed(3))
    zeros = torch.zeros(64, 5, 8)
    # Uniform logits: cross-entropy log(v) whatever the target.
    assert task.loss(zeros, b).item() == pytest.approx(math.log(8), abs=1e-6)
    # Exact targets, logits = log p*: the loss is the entropy of p*, mean over s of log(v - s).
    exact = SetComplementTask(SetComplementConfig(v=8, train_max_len=5, target="exact"))
    logits = torch.where(task.exact_target(b.items) > 0, 0.0, -1e9)
    want = sum(math.log(8 - s) for s in range(1, 6)) / 5
    assert exact.loss(logits, b).item() == pytest.approx(want, abs=1e-5)


def test_loss_respects_train_min_len():
    task = SetComplementTask(SetComplementConfig(v=8, train_min_len=3, train_max_len=5, target="exact"))
    b = task.sample_batch(16, generator=torch.Generator().manual_seed(4))
    logits = torch.where(task.exact_target(b.items) > 0, 0.0, -1e9)
    want = sum(math.log(8 - s) for s in range(3, 6)) / 3
    assert task.loss(logits, b).item() == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(v=1, train_max_len=1), "task.v"),
        (dict(v=8, train_max_len=8), "train_max_len"),
        (dict(v=8, train_max_len=3, eval_max_len=8), "eval_max_len"),
        (dict(v=8, train_min_len=4, train_max_len=3), "train_min_len"),
    ],
)
def test_bad_task_configs(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        SetComplementTask(SetComplementConfig(**kwargs))

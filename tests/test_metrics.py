"""Length metrics against hand-computed values and closed forms for known models."""

import math

import pytest
import torch

from interp.set_complement.probes import LengthMetrics, complement_metrics, evaluate_lengths
from training.models import ModelConfig, build_model
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask


def test_metrics_by_hand():
    # p = [0.1, 0.3, 0.3, 0.3], set = {item 0}: p* = [0, 1/3, 1/3, 1/3].
    logits = torch.log(torch.tensor([[0.1, 0.3, 0.3, 0.3]]))
    members = torch.tensor([[True, False, False, False]])
    m = {k: v.item() for k, v in complement_metrics(logits, members).items()}
    assert m["tv"] == pytest.approx(0.1, abs=1e-6)
    assert m["itr"] == pytest.approx(0.1, abs=1e-6)
    assert m["kl"] == pytest.approx(math.log(10 / 9), abs=1e-6)
    assert m["margin"] == pytest.approx(math.log(3), abs=1e-6)
    assert m["gap"] == pytest.approx(math.log(3), abs=1e-6)
    assert m["acc"] == 1.0


def test_margin_and_accuracy_when_support_is_wrong():
    logits = torch.tensor([[2.0, 1.0, 3.0, 0.0]])
    members = torch.tensor([[True, False, False, True]])
    m = complement_metrics(logits, members)
    assert m["margin"].item() == pytest.approx(1.0 - 2.0)
    assert m["gap"].item() == pytest.approx(2.0 - 1.0)
    assert m["acc"].item() == 0.0


class UniformModel(torch.nn.Module):
    """Zero logits: p is uniform over all v items."""

    def __init__(self, v):
        super().__init__()
        self.v = v
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, self.v) + 0 * self.dummy


class OracleModel(UniformModel):
    """Logits 0 on unseen items and -1e4 on items already in the prefix: p = p* exactly."""

    def forward(self, tokens):
        seen = torch.nn.functional.one_hot(tokens - 1, self.v).cumsum(1).bool()
        return torch.where(seen, -1e4, 0.0)


def test_uniform_model_closed_form():
    v = 10
    task = SetComplementTask(SetComplementConfig(v=v, train_max_len=4))
    res = evaluate_lengths(UniformModel(v), task, n=64)
    assert res.lengths == list(range(1, v))
    for s in res.lengths:
        at = res.at(s)
        assert at["itr"] == pytest.approx(s / v, abs=1e-6)
        assert at["tv"] == pytest.approx(s / v, abs=1e-6)
        assert at["kl"] == pytest.approx(math.log(v / (v - s)), abs=1e-5)
        assert at["margin"] == 0 and at["acc"] == 0 and at["gap"] == 0


def test_oracle_model_is_perfect_and_summaries_split_ranges():
    task = SetComplementTask(SetComplementConfig(v=12, train_max_len=5))
    res = evaluate_lengths(OracleModel(12), task, n=100, batch_size=33)
    assert max(res.values["tv"]) < 1e-6 and min(res.values["acc"]) == 1.0
    assert min(res.values["margin"]) == pytest.approx(1e4)
    summ = res.summary()
    assert set(summ) == {"in_range", "beyond"}
    back = LengthMetrics.from_dict(res.to_dict())
    assert back.values == res.values and back.train_range == (1, 5)


def test_one_pass_equals_evaluating_each_set_on_its_own():
    """Causality: the logits at the s-th item equal those of the s-item sequence alone."""
    task = SetComplementTask(SetComplementConfig(v=9, train_max_len=3))
    model = build_model(ModelConfig(d_model=16, d_head=8, n_heads=2, positional="learned"), 10, 9, 8, seed=1).eval()
    b = task.sample_batch(5, max_len=8, generator=torch.Generator().manual_seed(0))
    full = model(b.tokens)
    for s in range(1, 9):
        alone = model(b.tokens[:, :s])[:, -1]
        assert torch.allclose(full[:, s - 1], alone, atol=1e-5)


def test_fixed_seed_gives_identical_results():
    task = SetComplementTask(SetComplementConfig(v=8, train_max_len=3))
    model = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 7, seed=0)
    a = evaluate_lengths(model, task, n=50, seed=3)
    b = evaluate_lengths(model, task, n=50, seed=3, batch_size=7)
    assert a.values["tv"] == pytest.approx(b.values["tv"], abs=1e-6)

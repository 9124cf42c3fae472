"""The shared training loop against a recording stepper: which steps it checks, evaluates and
checkpoints at, the losses it hands over, and that it stops when nothing is left to train."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from training.loop import NAN_CHECK_EVERY, run_steps


class Recorder:
    """A stepper whose loss at step k is k (one member) or [k, 2k] (two), recording every call."""

    def __init__(self, members: int = 1, checkpoints: bool = True, stop_at: int | None = None):
        self.step, self.members, self.checkpoints, self.stop_at = 0, members, checkpoints, stop_at
        self.watched, self.evals, self.ckpts = [], [], []

    def running(self) -> bool:
        return self.stop_at is None or self.step < self.stop_at

    def train_step(self) -> torch.Tensor:
        self.step += 1
        k = float(self.step)
        return torch.tensor(k) if self.members == 1 else torch.tensor([k, 2 * k])

    def watch(self, window, loss):
        self.watched.append((self.step, window.clone()))
        return f"loss={float(loss.flatten()[0]):.1f}"

    def log_eval(self, loss_sum, count, t0):
        self.evals.append((self.step, loss_sum.clone(), count))
        return f" eval@{self.step}"

    def checkpoint(self):
        self.ckpts.append(self.step)


class Bar:
    def __init__(self):
        self.n, self.postfix = 0, []

    def update(self, k):
        self.n += k

    def set_postfix_str(self, text, refresh=True):
        self.postfix.append(text)


def test_cadence_and_the_losses_handed_over():
    tcfg = SimpleNamespace(steps=25, eval_every=12, checkpoint_every=8)
    st, bar = Recorder(), Bar()
    run_steps(st, tcfg, end=25, bar=bar, t0=0.0)
    assert bar.n == 25 and st.step == 25
    # checks every 10 steps, at every evaluation (12, 24, and the last step) and checkpoint (8, 16, 24, 25)
    assert [s for s, _ in st.watched] == [8, 10, 12, 16, 20, 24, 25]
    assert NAN_CHECK_EVERY == 10
    # each window sums the losses since the previous check: steps 9..10 are 9 + 10
    windows = dict(st.watched)
    assert float(windows[10]) == 19 and float(windows[8]) == sum(range(1, 9)) and float(windows[25]) == 25
    # evaluations get the sum and count of losses since the previous evaluation
    assert [(s, float(x), n) for s, x, n in st.evals] == [(12, 78, 12), (24, sum(range(13, 25)), 12), (25, 25, 1)]
    assert st.ckpts == [8, 16, 24, 25]
    assert bar.postfix[-1] == "loss=25.0 eval@24"  # the latest evaluation's text follows the loss


def test_an_ensemble_without_checkpoints_stops_when_nothing_runs():
    tcfg = SimpleNamespace(steps=30, eval_every=10, checkpoint_every=5)
    st = Recorder(members=2, checkpoints=False, stop_at=13)
    run_steps(st, tcfg, end=30, bar=Bar(), t0=0.0)
    assert st.step == 13 and st.ckpts == []
    assert [s for s, _ in st.watched] == [10]  # no checkpoint steps without checkpoints
    assert torch.equal(st.evals[0][1], torch.tensor([55.0, 110.0]))  # one loss per member


def test_stop_after_ends_early_with_a_checkpoint():
    tcfg = SimpleNamespace(steps=30, eval_every=10, checkpoint_every=10)
    st = Recorder()
    run_steps(st, tcfg, end=7, bar=Bar(), t0=0.0)
    assert st.step == 7 and st.ckpts == [7] and st.evals == []

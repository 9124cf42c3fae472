"""The one training loop: step, watch the loss, evaluate, checkpoint, for one run or an ensemble.

What is trained is a *stepper*: ``training/trainer.py``'s ``Trainer`` (one model, with
checkpoints and resume) or ``training/ensemble.py``'s ``EnsembleTrainer`` (many runs of one shape
as one vmapped model, without checkpoints). Each step returns its loss: a scalar, or one per
member. Every ``NAN_CHECK_EVERY`` steps (and at each evaluation and checkpoint) the loop hands the
window of losses since the last check to the stepper, one host sync per window instead of per
step: the single trainer stops on a non-finite loss, the ensemble marks that member failed and
goes on with the others. Every ``eval_every`` steps the stepper evaluates and logs with the mean
loss since the last evaluation; every ``checkpoint_every`` steps a stepper that keeps
checkpoints writes one.
"""

from __future__ import annotations

from typing import Protocol

import torch

NAN_CHECK_EVERY = 10
"""Steps between host syncs that check the loss is finite."""


class Stepper(Protocol):
    step: int
    checkpoints: bool
    """Whether ``checkpoint`` is called (every ``checkpoint_every`` steps and at the end)."""

    def running(self) -> bool:
        """False once nothing is left to train (every member of an ensemble failed)."""

    def train_step(self) -> torch.Tensor:
        """One optimizer step; its loss (a scalar, or one per member)."""

    def watch(self, window: torch.Tensor, loss: torch.Tensor) -> str | None:
        """Check the losses summed since the last check; the progress bar's text, or None."""

    def log_eval(self, loss_sum: torch.Tensor, count: int, t0: float) -> str:
        """Evaluate and log with the mean of the last ``count`` losses; text for the progress bar."""

    def checkpoint(self) -> None:
        """Write a checkpoint of the current step."""


def run_steps(stepper: Stepper, tcfg, end: int, bar, t0: float) -> None:
    """Step ``stepper`` until step ``end`` (or until it stops running), with ``tcfg``'s evaluation
    and checkpoint cadence (an evaluation also at ``tcfg.steps``, a checkpoint also at ``end``)."""
    loss_sum = window = None
    count, latest_eval = 0, ""
    while stepper.step < end and stepper.running():
        loss = stepper.train_step()
        if loss_sum is None:
            loss_sum, window = torch.zeros_like(loss), torch.zeros_like(loss)
        loss_sum += loss
        window += loss
        count += 1
        at_eval = stepper.step % tcfg.eval_every == 0 or stepper.step == tcfg.steps
        at_ckpt = stepper.checkpoints and (stepper.step % tcfg.checkpoint_every == 0 or stepper.step == end)
        if stepper.step % NAN_CHECK_EVERY == 0 or at_eval or at_ckpt:
            shown = stepper.watch(window, loss)
            window.zero_()
            if shown is not None:
                bar.set_postfix_str(f"{shown}{latest_eval}", refresh=False)
        bar.update(1)
        if at_eval:
            latest_eval = stepper.log_eval(loss_sum, count, t0)
            loss_sum.zero_()
            count = 0
        if at_ckpt:
            stepper.checkpoint()

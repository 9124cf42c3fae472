"""The study's FLOP count (training/experiments/study/cost.py) against a hand count of the
set-complement model's matmuls, and its evaluation cadence against the training loop's own."""

from __future__ import annotations

import torch

from training.config import preset_path
from training.experiments.study import arm_config, arms, draw_configs, load_spec
from training.experiments.study.cost import config_flops, evaluations_per_run
from training.loop import run_steps


def _quick():
    return load_spec(preset_path("study_quick"))


def test_training_flops_match_a_hand_count():
    """A one-layer attention-only model, per token of a T-token training input: Q, K, V (3 x 2 d h d_head),
    the output (2 h d_head d), the unembedding (2 d v) and the scores and pattern times V
    (2 x 2 T h d_head); the backward pass costs twice the forward (every matmul input needs a
    gradient: the residual's through W_E, the scores' through Q and K)."""
    spec = _quick()
    values = draw_configs(spec)[0]
    cfg = arm_config(spec, values, arms(spec)[0])
    m, d = cfg.model, cfg.model.d_model
    assert cfg.task.bos is False
    T = cfg.task.train_max_len  # a training input: the largest training set, no BOS
    h, dh, v = m.n_heads, m.d_head, cfg.vocab()[1]
    assert (m.n_layers, m.attn_only) == (1, True)
    per_token = 3 * 2 * d * h * dh + 2 * h * dh * d + 2 * d * v + 2 * 2 * T * h * dh
    expected = 3 * per_token * T * cfg.train.batch_size * len(arms(spec)) * cfg.train.steps
    got = config_flops(spec, values)
    assert got.train == expected
    assert got.evaluate > 0 and got.measure > 0


def test_evaluation_count_scales_with_sets_and_weights():
    """Doubling the final and periodic evaluation sets doubles the evaluation FLOPs; one averager
    fewer removes a quarter of them (raw + 3 averages -> raw + 2)."""
    spec = _quick()
    values = draw_configs(spec)[0]
    base = config_flops(spec, values).evaluate
    doubled = {**spec, "fixed": spec["fixed"] + ["train.eval_sets=128", "train.final_eval_sets=512"]}
    assert config_flops(doubled, values).evaluate == 2 * base
    fewer = {**spec, "averagers": spec["averagers"][:2]}
    assert config_flops(fewer, values).evaluate * 4 == base * 3


def test_the_last_steps_evaluation_is_counted_once_as_the_final_one():
    """With one evaluation, at the last step, only the final evaluation's sets cost anything: the
    loop does not evaluate ``eval_sets`` there as well (test_ensemble checks the loop's calls)."""
    spec = _quick()
    values = draw_configs(spec)[0]
    steps = arm_config(spec, values, arms(spec)[0]).train.steps
    once = {**spec, "fixed": spec["fixed"] + [f"train.eval_every={steps}"]}
    more_sets = {**once, "fixed": once["fixed"] + ["train.eval_sets=999"]}
    assert config_flops(more_sets, values).evaluate == config_flops(once, values).evaluate > 0


class _Counter:
    """A stepper that counts the loop's evaluations."""

    checkpoints = False

    def __init__(self):
        self.step, self.evals = 0, 0

    def running(self):
        return True

    def train_step(self):
        self.step += 1
        return torch.zeros(())

    def watch(self, window, loss):
        return None

    def log_eval(self, loss_sum, count, t0):
        self.evals += 1
        return ""

    def checkpoint(self):
        pass


class _Bar:
    def update(self, n):
        pass

    def set_postfix_str(self, s, refresh=False):
        pass


def test_evaluations_per_run_is_the_loops_count():
    class T:
        pass

    for steps, every in [(3000, 3000), (3000, 1000), (1000, 300), (7, 10), (10, 1)]:
        tcfg = T()
        tcfg.steps, tcfg.eval_every, tcfg.checkpoint_every = steps, every, 10**9
        stepper = _Counter()
        run_steps(stepper, tcfg, steps, _Bar(), 0.0)
        assert evaluations_per_run(steps, every) == stepper.evals, (steps, every)

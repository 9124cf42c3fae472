"""What a study costs in floating-point operations, counted on the study's own code.

A study's compute bound is its arithmetic divided by the machine's best matmul rate
(``benchmarks/study_bound.py``). The arithmetic is not estimated from a formula here: PyTorch's
``FlopCounterMode`` counts the matrix products (``mm``, ``bmm``, ``addmm``, attention) that one real
ensemble step, one evaluation and one arm's measurement execute, on a freshly built model of each
config's shape (the count does not depend on the weights), and the study's design says how often
each runs: ``steps`` ensemble steps per group of arms; per arm and per set of weights (raw and
every average), an evaluation at every ``eval_every`` steps, the final evaluation (at the last
step, which is also the loop's evaluation there) and the study's measurement (calibration,
temperature controls, ``measures``). Elementwise work is not counted: the bound is what the
matmuls alone would take.

Configs that share a shape (model, task, batch size and evaluation sizes) are counted once.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class ConfigFlops:
    """The FLOPs one study config executes, by what executes them."""

    train: int
    """Every ensemble step of every group of arms (forward and backward)."""
    evaluate: int
    """Evaluations during training and the final one, of every arm's raw weights and averages."""
    measure: int
    """The study's measurement of every arm's raw weights and averages."""

    @property
    def total(self) -> int:
        return self.train + self.evaluate + self.measure


def counted(fn: Callable, *args) -> tuple[int, object]:
    """The matmul FLOPs ``fn(*args)`` executes, and what it returns."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    return int(counter.get_total_flops()), out


def evaluations_per_run(steps: int, eval_every: int) -> int:
    """How many evaluations ``training/loop.py`` runs during training: one every ``eval_every``
    steps and one at the last step when that is not already one."""
    return steps // eval_every + (steps % eval_every != 0)


def _shape_key(cfg) -> str:
    """What the count of one step and one arm's evaluation depends on."""
    d = cfg.to_dict()
    t = d["train"]
    kept = {k: t[k] for k in ("batch_size", "eval_sets", "final_eval_sets")}
    return json.dumps({"model": d["model"], "task": d["task"], "train": kept, "kind": cfg.kind}, sort_keys=True)


def shape_flops(members: list, measures: Callable | None, measure_sets: int) -> tuple[int, int, int, int]:
    """(one ensemble step of ``members``, one evaluation during training, the final evaluation,
    the measurement) of one set of weights of their shape, counted on a fresh model."""
    from training.ensemble import EnsembleTrainer
    from training.experiments.study.measure import measure_weights
    from training.models import build_model
    from training.trainer import training_scope

    cfg = members[0]
    t = cfg.train
    with tempfile.TemporaryDirectory() as tmp, training_scope(cfg):
        trainer = EnsembleTrainer(members, [Path(tmp) / f"m{i}" for i in range(len(members))])
        step, _ = counted(trainer.train_step)
        task = cfg.make_task()
        d_vocab, d_vocab_out = cfg.vocab()
        model = build_model(cfg.model, d_vocab, d_vocab_out, cfg.n_ctx(), t.seed).eval()
        periodic, _ = counted(task.evaluate, model, t.eval_sets, t.eval_seed)
        final, metrics = counted(task.evaluate, model, t.final_eval_sets, t.eval_seed)
        measured, _ = counted(measure_weights, model, task, cfg, metrics, measures, measure_sets)
    return step, periodic, final, measured


def config_flops(spec: dict, values: dict, measures: Callable | None = None, cache: dict | None = None) -> ConfigFlops:
    """The FLOPs of one config of ``spec`` (its draw ``values``), every arm included. ``cache``
    (a dict kept across calls) counts each shape once."""
    from training.ensemble import ensemble_key
    from training.experiments.study.design import arm_config, arms

    cache = {} if cache is None else cache
    cfgs = [arm_config(spec, values, arm) for arm in arms(spec)]
    groups: dict[str, list] = {}
    for cfg in cfgs:
        groups.setdefault(json.dumps(ensemble_key(cfg), sort_keys=True), []).append(cfg)
    train = evaluate = measure = 0
    for members in groups.values():
        cfg = members[0]
        key = _shape_key(cfg) + f"|{len(members)}"
        if key not in cache:
            cache[key] = shape_flops(members, measures, spec.get("measure_sets", 512))
        step, periodic, final, measured = cache[key]
        t = cfg.train
        weight_sets = len(members) * (1 + len(cfg.averaging_configs()))
        train += step * t.steps
        # the loop's evaluation at the last step is the final one (trainer.py, ensemble.py)
        evaluate += weight_sets * ((evaluations_per_run(t.steps, t.eval_every) - 1) * periodic + final)
        measure += weight_sets * measured
    return ConfigFlops(train, evaluate, measure)


def study_flops(spec: dict, measures: Callable | None = None, progress: bool = False) -> list[ConfigFlops]:
    """The FLOPs of every config the study file draws, in the study's order."""
    from tqdm.auto import tqdm

    from training.experiments.study.design import draw_configs

    cache: dict = {}
    return [
        config_flops(spec, values, measures, cache)
        for values in tqdm(draw_configs(spec), desc="counting FLOPs", disable=not progress)
    ]

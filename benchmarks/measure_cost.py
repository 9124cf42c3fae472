"""The study's measurement of one set of weights at fitted temperatures, before and after the
changes of issue 26, side by side in one process.

Per set of weights the study fits three kinds of temperature on held-out sets (the model's own,
in range; the oracle, beyond; one per length: 33 fits for the default study's 31 lengths) and
scores the evaluation's sets at each. Before: every fit by 60 bisections of [0, 1000] on the sign
of the KL's slope (one softmax over every held-out position each), and one forward pass over the
evaluation's sets per kind of temperature. After (``Task.calibrated_evaluations``): each fit by
Newton's method inside the same bracket, and one forward pass scored at every temperature. Both
fit on the same held-out logits; the script checks that both give the same metrics (to 1e-9)
before it times them, alternating rounds, best of ``--rounds``.

The model is the default study's smallest shape (d_model 64, 1 head of 64, v 32) trained for
``--steps`` steps on the sampled target, or ``--run DIR``'s raw weights (e.g. a study arm).

    python benchmarks/measure_cost.py [--run DIR] [--steps 1500] [--sets 1024] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import tempfile

import torch
from timing import best_of

from commands.tools import Parser, positive_int, run_script


def before(model, task, n: int, seed: int, fit_n: int = 512) -> dict:
    """The measurement as it was: bisection fits, a forward pass per kind of temperature."""
    from training.tasks.calibration import bisection_scale as bisection
    from training.tasks.set_complement.calibration import held_out_logits
    from training.tasks.set_complement.metrics import evaluate_lengths

    lo, hi, L = task.cfg.train_min_len, task.cfg.train_max_len, task.cfg.max_eval_len
    z, p = held_out_logits(model, task, fit_n, hi)
    scales = {"cal": bisection(z[:, lo - 1 : hi].flatten(0, 1), p[:, lo - 1 : hi].flatten(0, 1))}
    z, p = held_out_logits(model, task, fit_n, L)
    scales["oracle"] = bisection(z[:, hi:].flatten(0, 1), p[:, hi:].flatten(0, 1))
    scales["length"] = [bisection(z[:, i], p[:, i]) for i in range(L)]
    return {k: (evaluate_lengths(model, task, n, seed=seed, logit_scale=s), s) for k, s in scales.items()}


def trained_model(steps: int):
    from training import runs
    from training.config import load_config, preset_path
    from training.trainer import train

    cfg = load_config(preset_path("demo"), ["train.device=cpu", f"train.steps={steps}", "train.eval_every=100000"])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = runs.create_run_dir(f"{tmp}/run", cfg)
        train(cfg, run_dir, progress=False)
        return runs.load_run(run_dir, weights="raw"), cfg.make_task()


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a run directory whose raw weights to measure")
    ap.add_argument("--steps", type=positive_int, default=1500)
    ap.add_argument("--sets", type=positive_int, default=1024, help="evaluation sets per length (the study's 1024)")
    ap.add_argument("--rounds", type=positive_int, default=3)
    ap.add_argument("--threads", type=positive_int, default=1, help="threads (a study worker runs on 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from training import runs

    if args.run:
        model, task = runs.load_run(args.run, weights="raw"), runs.read_run_config(args.run).make_task()
    else:
        model, task = trained_model(args.steps)
    a, b = before(model, task, args.sets, 12345), task.calibrated_evaluations(model, args.sets, 12345)
    worst = max(abs(x - y) for k in a for m in a[k][0].values for x, y in zip(a[k][0].values[m], b[k][0].values[m]))
    print(f"largest metric difference, before vs after: {worst:.1e}")
    assert worst < 1e-9, "the two measurements disagree"
    t = best_of(
        {
            "before": lambda: before(model, task, args.sets, 12345),
            "after": lambda: task.calibrated_evaluations(model, args.sets, 12345),
        },
        args.rounds,
    )
    print(f"one set of weights, {args.sets} sets per length, {args.threads} thread(s), best of {args.rounds}:")
    print(f"  before (bisection, a pass per temperature): {t['before']:.3f} s")
    print(f"  after  (Newton, one pass):                  {t['after']:.3f} s")
    print(f"  speed-up {t['before'] / t['after']:.2f}x")


if __name__ == "__main__":
    run_script(main)

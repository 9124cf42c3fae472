"""How close does a study run to this machine's compute bound?

The bound is the study's matmul arithmetic (counted on the study's own code by
``training/experiments/study/cost.py``: every ensemble step, evaluation and measurement of every
config the study file draws) divided by the best rate this machine reaches on a large matmul,
per core times ``--cores``. The rate is measured here, side by side: fp32 on one thread and on
``--cores`` threads (and bf16 on one thread, for reference), best of ``--repeats`` rounds, since
the bound is what the best case allows. With ``--study-dir`` (a finished study) or ``--seconds``,
the measured study time is printed against the bound as a ratio.

    python benchmarks/study_bound.py [--spec default|quick|FILE] [--study-dir DIR | --seconds S]
                                     [--cores 2] [--size 4096] [--repeats 5]
"""

from __future__ import annotations

import sys
import time

from timing import spec_path

from commands.tools import Parser, positive_int, run_script


def matmul_rate(size: int, threads: int, repeats: int, dtype_name: str = "float32") -> float:
    """FLOP/s of the fastest of ``repeats`` ``size`` x ``size`` matmuls on ``threads`` threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g).to(dtype)
        b = torch.randn(size, size, generator=g).to(dtype)
        torch.mm(a, b)  # first call: allocation, kernel selection
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / best


def study_seconds(study_dir: str) -> float:
    """Wall time of a finished study: its first config's start to its last config's end."""
    from training.experiments.study import open_study

    _, _, study = open_study(study_dir)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def main() -> int:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="default", help="a study preset's short name or a study file")
    ap.add_argument("--study-dir", help="a finished study whose wall time to compare with the bound")
    ap.add_argument("--seconds", type=float, help="a measured study time to compare with the bound")
    ap.add_argument("--cores", type=positive_int, default=2, help="cores the study runs on (default 2)")
    ap.add_argument("--size", type=int, default=4096, help="matmul size for the rate (default 4096)")
    ap.add_argument("--repeats", type=positive_int, default=5)
    args = ap.parse_args()
    if args.size < 64 or (args.seconds is not None and not args.seconds > 0):  # --cores, --repeats: positive_int
        print("error: --size must be at least 64 and --seconds > 0", file=sys.stderr)
        return 2

    import torch

    from interp.analysis.mechanism import study_measures
    from training.errors import WorkbenchError
    from training.experiments.study import load_spec
    from training.experiments.study.cost import study_flops

    # read the study file and the finished study before minutes of measuring, so bad input fails at once
    try:
        spec = load_spec(spec_path(args.spec))
        seconds = study_seconds(args.study_dir) if args.study_dir else args.seconds
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    fp32_1 = matmul_rate(args.size, 1, args.repeats)
    fp32_n = matmul_rate(args.size, args.cores, args.repeats)
    bf16_1 = matmul_rate(args.size, 1, args.repeats, "bfloat16")
    print(f"matmul {args.size}^2, best of {args.repeats}:")
    print(f"  fp32, 1 thread:  {fp32_1 / 1e9:8.1f} GFLOP/s")
    print(f"  fp32, {args.cores} threads: {fp32_n / 1e9:8.1f} GFLOP/s  ({fp32_n / fp32_1:.2f}x one)")
    print(f"  bf16, 1 thread:  {bf16_1 / 1e9:8.1f} GFLOP/s  ({bf16_1 / fp32_1:.2f}x fp32)")

    torch.set_num_threads(1)
    per_config = study_flops(spec, study_measures, progress=True)
    train = sum(c.train for c in per_config)
    evaluate = sum(c.evaluate for c in per_config)
    measure = sum(c.measure for c in per_config)
    total = train + evaluate + measure
    bound = total / (args.cores * fp32_1)
    print(f"study {args.spec}: {len(per_config)} configs, {total / 1e12:.3f} TFLOP of matmuls")
    print(f"  training {train / 1e12:.3f}, evaluation {evaluate / 1e12:.3f}, measurement {measure / 1e12:.3f}")
    print(f"compute bound on {args.cores} cores (fp32, {args.cores} x one core's rate): {bound:.1f} s")
    if seconds is not None:
        print(f"measured study: {seconds:.0f} s ({seconds / 60:.1f} min), ratio to the bound {seconds / bound:.2f}x")
    return 0


if __name__ == "__main__":
    run_script(main)

"""Completed trials per hour of the quick search space with 1 and with 2 local workers.

Both sweeps run the same quick space (``training/configs/sweep_quick.json``) to the same number of
completed trials, on SQLite, one after the other in this process; each worker gets cores/workers
torch threads. Prints trials/hour for each and the 2-worker / 1-worker ratio.

    python benchmarks/sweep_throughput.py [--trials 6]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from commands.tools import Parser, positive_int, run_script
from training.config import preset_path  # noqa: E402
from training.experiments.sweep import run_sweep  # noqa: E402


def rate(workers: int, trials: int) -> tuple[float, int]:
    space = json.loads(preset_path("sweep_quick").read_text())
    space["n_trials"] = trials
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "space.json").write_text(json.dumps(space))
        t0 = time.perf_counter()
        s = run_sweep(Path(tmp) / "sw", Path(tmp) / "space.json", workers=workers, progress=False)
        return s["completed"] / (time.perf_counter() - t0) * 3600, s["completed"]


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=positive_int, default=6)
    args = ap.parse_args()
    one, n1 = rate(1, args.trials)
    two, n2 = rate(2, args.trials)
    print(f"1 worker:  {one:8.0f} completed trials/hour ({n1} trials)")
    print(f"2 workers: {two:8.0f} completed trials/hour ({n2} trials)")
    print(f"ratio 2/1: {two / one:.2f}")


if __name__ == "__main__":
    run_script(main)

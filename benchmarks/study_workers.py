"""Configs per minute of the paired study with 1 and with 2 worker processes, side by side.

Workers are spawned once and stay alive across configs (Optuna's loop runs inside each), so a
worker pays its start-up (spawn, imports, opening the storage) once per study, not per config.
Each round runs a fresh study of ``--configs`` configs of the quick study's design with
``--steps`` steps (8 arms per config as one ensemble), first with one worker on all threads, then
with two workers on half the threads each. Target: 2 workers at least 1.8x one.

    python benchmarks/study_workers.py [--configs 6] [--steps 600] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def study_seconds(workers: int, configs: int, steps: int) -> float:
    from training.config import preset_path
    from training.experiments.study import load_spec, run_study

    spec = load_spec(preset_path("study_quick"))
    spec["fixed"] = [f for f in spec["fixed"] if not f.startswith(("train.steps", "train.eval_every", "train.checkpoint_every"))]
    spec["fixed"] += [f"train.steps={steps}", f"train.eval_every={steps}", f"train.checkpoint_every={steps}"]
    spec["n_configs"] = configs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        result = run_study(Path(tmp) / "study", path, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
    assert result["completed"] == configs, result
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rate = {1: [], 2: []}
    for r in range(args.rounds):
        for w in (1, 2):
            rate[w].append(args.configs / study_seconds(w, args.configs, args.steps) * 60)
        print(f"round {r + 1}: 1 worker {rate[1][-1]:.2f} configs/min, 2 workers {rate[2][-1]:.2f} configs/min, "
              f"ratio {rate[2][-1] / rate[1][-1]:.2f}", flush=True)
    ratio = statistics.median(b / a for a, b in zip(rate[1], rate[2]))
    print(f"ratio 2 workers / 1 worker: {ratio:.2f} (median of rounds; target >= 1.8)")


if __name__ == "__main__":
    main()

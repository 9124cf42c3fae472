"""Games/s of the vectorised Othello generator against a pure-Python per-game generator.

The baseline plays each game with the plain reference engine (one Python object per game, the
way Li et al.'s generator works), in this process. The vectorised generator runs through
``generate_dataset`` with 1 and 2 worker processes, writing a real dataset to a temporary folder.
Target: at least 100,000 games/s on 2 cores (20M games in under 5 minutes).

    python benchmarks/othello_datagen.py [--games 2000000] [--baseline-games 300]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from commands.tools import Parser, positive_int, run_script
from training.tasks.othello.data import generate_dataset  # noqa: E402
from training.tasks.othello.reference import RefGame  # noqa: E402


def python_games(n: int, seed: int = 0) -> float:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    for _ in range(n):
        g = RefGame()
        while not g.over:
            g.play(rng.choice(g.legal()))
    return n / (time.perf_counter() - t0)


def vectorised(n: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(tmp, n, seed=0, workers=workers, progress=False)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--games", type=positive_int, default=2_000_000)
    ap.add_argument("--baseline-games", type=positive_int, default=300)
    args = ap.parse_args()
    base = python_games(args.baseline_games)
    one = vectorised(args.games // 2, 1)
    two = vectorised(args.games, 2)
    print(f"pure-Python per-game generator: {base:10.0f} games/s (1 core)")
    print(f"vectorised, 1 worker:           {one:10.0f} games/s ({one / base:.0f}x)")
    print(f"vectorised, 2 workers:          {two:10.0f} games/s ({two / base:.0f}x; target >= 100,000)")
    print(f"20M games at this rate: {20_000_000 / two / 60:.1f} min")


if __name__ == "__main__":
    run_script(main)

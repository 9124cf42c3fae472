"""Is a study slower because of the code or because of the machine? Two commits, side by side.

Runs a reduced study (the study file with fewer configs and fewer steps) with the code of an older
commit and with the working tree, alternating rounds in this machine's same minutes, so that the
machine's drift falls on both alike. The older commit is checked out in a temporary
``git worktree`` and run with this interpreter (the same packages). Prints each round's wall time
and the ratio working tree / old commit; then whether the two trained the same weights (compared
file by file), since a speed-up that changed the training would not be the same study.

    python benchmarks/study_commits.py f8d30b5 [--spec default] [--configs 2] [--steps 600] [--rounds 2]

Both commits must read the reduced study file (its ``fixed`` list with the step counts replaced,
and ``n_configs``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import spec_path

from commands.tools import Parser, positive_int, run_script

ROOT = Path(__file__).resolve().parent.parent


def reduced_spec(spec: dict, configs: int, steps: int) -> dict:
    """The study file with ``configs`` configs and ``steps`` steps (one evaluation, at the end)."""
    from training.experiments.study import with_steps

    return {**with_steps(spec, steps), "n_configs": configs}


def run_study(code: Path, spec: Path, out: Path) -> float:
    """Wall seconds of ``python -m training study`` with the code in ``code``."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "training", "study", "--spec", str(spec), "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, cwd=code, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"study failed in {code}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def same_weights(a: Path, b: Path) -> tuple[int, int]:
    """(identical, total) weight files of two study folders, tensor by tensor."""
    from safetensors.torch import load_file

    files = sorted(a.glob("runs/*/*/weights_*.safetensors"))
    same = 0
    for f in files:
        x, y = load_file(f), load_file(b / f.relative_to(a))
        same += x.keys() == y.keys() and all(bool((x[k] == y[k]).all()) for k in x)
    return same, len(files)


def main() -> None:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="the older commit (anything git rev-parse reads)")
    ap.add_argument("--spec", default="default", help="study preset name or study file (default: default)")
    ap.add_argument("--configs", type=positive_int, default=2)
    ap.add_argument("--steps", type=positive_int, default=600)
    ap.add_argument("--rounds", type=positive_int, default=2)
    args = ap.parse_args()
    git = ["git", "rev-parse", "--verify", args.old + "^{commit}"]
    rev = subprocess.run(git, cwd=ROOT, capture_output=True, text=True)
    if rev.returncode != 0:
        sys.exit(f"not a commit: {args.old}")
    spec = json.loads(spec_path(args.spec).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "spec.json").write_text(json.dumps(reduced_spec(spec, args.configs, args.steps), indent=1))
        old_tree = tmp / "old"
        add = ["git", "worktree", "add", "--detach", "-q", str(old_tree), rev.stdout.strip()]
        subprocess.run(add, cwd=ROOT, check=True)
        try:
            trees = {"old commit": old_tree, "working tree": ROOT}
            times: dict[str, list[float]] = {name: [] for name in trees}
            for r in range(args.rounds):
                for name, code in trees.items():
                    out = tmp / f"{name.split()[0]}{r}"
                    times[name].append(run_study(code, tmp / "spec.json", out))
                ratio = times["working tree"][-1] / times["old commit"][-1]
                line = ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items())
                print(f"round {r + 1}: {line}, ratio {ratio:.3f}", flush=True)
            same, total = same_weights(tmp / "old0", tmp / "working0")
            print(f"weights identical in {same} of {total} files (round 1)")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)


if __name__ == "__main__":
    run_script(main)

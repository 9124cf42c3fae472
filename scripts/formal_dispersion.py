"""Do the languages that fail beyond the training length disperse their attention more?

    python scripts/formal_dispersion.py runs/formal_suite [--positional none] [--words 16]
                                        [--json docs/results/formal_suite/dispersion.json]

For every run of the suite (``python -m training suite``) with the given positional encoding, the
normalised attention entropy of every head (``interp.core.attention.attention_by_index``: entropy
over log of the attended positions, 1 = uniform) on the evaluation words, averaged over layers and
heads and over the prefix lengths in range and beyond, and its growth (beyond minus in range).
Per language, the mean over seeds next to the word accuracy beyond (the mean of the bins past the
training length), and the Spearman rank correlation across languages of accuracy beyond with
each dispersion measure, with a two-sided permutation p-value (20,000 random pairings). The
output feeds docs/formal_languages.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from commands.tools import Parser, check_outputs, run_script
from training import atomic


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # average ranks of ties
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def spearman(a, b) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def permutation_p(a, b, n: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of a Spearman correlation: the share of random pairings of ``b`` with
    ``a`` whose correlation is at least as far from 0 (plus one, so it is never 0)."""
    rng = np.random.default_rng(seed)
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    observed = abs(np.corrcoef(ra, rb)[0, 1])
    hits = sum(abs(np.corrcoef(ra, rng.permutation(rb))[0, 1]) >= observed - 1e-12 for _ in range(n))
    return (hits + 1) / (n + 1)


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite_dir", type=Path)
    p.add_argument("--positional", default="none")
    p.add_argument("--words", type=int, default=16, help="evaluation words per length (default 16)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    check_outputs(args)
    torch.set_num_threads(1)
    from interp.core.attention import attention_by_index
    from training import runs

    result_path = args.suite_dir / "suite.json"
    if not result_path.is_file():
        print(f"error: {result_path} not found (run python -m training suite first)", file=sys.stderr)
        return 2
    suite = json.loads(result_path.read_text())
    spec = suite["spec"]
    rows = {}
    for language in spec["languages"]:
        per_seed = []
        for seed in spec["seeds"]:
            run = args.suite_dir / "runs" / language / f"{args.positional}-seed{seed}"
            cfg = runs.read_run_config(run)
            model = runs.load_run(run, "raw")
            att = attention_by_index(model, cfg.make_task(), n=args.words, seed=cfg.train.eval_seed)
            lo, hi = att.train_range
            ne = att.norm_entropy.double().mean(dim=(0, 1))  # [index]
            idx = torch.tensor(att.index)
            inside, beyond = float(ne[idx <= hi].mean()), float(ne[idx > hi].mean())
            per_seed.append((inside, beyond))
        cell = suite["languages"][language][args.positional]
        inside, beyond = np.mean(per_seed, axis=0)
        rows[language] = {
            "norm_entropy_in_range": inside,
            "norm_entropy_beyond": beyond,
            "growth": beyond - inside,
            "word_acc_beyond": float(np.mean(cell["word_acc"][1:])),
            "word_acc_in_range": float(cell["word_acc"][0]),
        }
    acc = [r["word_acc_beyond"] for r in rows.values()]
    out = {
        "positional": args.positional,
        "languages": rows,
        "spearman_acc_beyond_vs": {
            k: {
                "rho": spearman(acc, [r[k] for r in rows.values()]),
                "p": permutation_p(acc, [r[k] for r in rows.values()]),
            }
            for k in ("norm_entropy_beyond", "growth")
        },
    }
    print(f"{'language':16s} {'H in':>7s} {'H beyond':>9s} {'growth':>8s} {'acc in':>7s} {'acc beyond':>10s}")
    for language, r in rows.items():
        print(
            f"{language:16s} {r['norm_entropy_in_range']:7.3f} {r['norm_entropy_beyond']:9.3f} {r['growth']:+8.3f} "
            f"{r['word_acc_in_range']:7.3f} {r['word_acc_beyond']:10.3f}"
        )
    print("Spearman correlation of accuracy beyond with:", json.dumps(out["spearman_acc_beyond_vs"]))
    if args.json:
        atomic.write_text(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)

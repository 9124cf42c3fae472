"""The formal-language suite's figure: word accuracy per language, positional encoding and length bin.

Reads what ``python -m training suite`` wrote (``suite.json``, ``training/experiments/suite.py``):
one row per language, one column per positional encoding and bin, the colour and the number the
mean word accuracy over seeds (the paper's measure: every position's valid set right).
"""

from __future__ import annotations

import matplotlib
import numpy as np

from interp.core.visualize import new_figure


def plot_suite(result: dict):
    """A heatmap of mean word accuracy (%); grey where a language has no finished run."""
    spec, summary = result["spec"], result["languages"]
    bins = [f"{lo}-{hi}" for lo, hi in spec["bins"]]
    cols = [(p, i) for p in spec["positional"] for i in range(len(bins))]
    grid = np.full((len(spec["languages"]), len(cols)), np.nan)
    for r, language in enumerate(spec["languages"]):
        for c, (p, i) in enumerate(cols):
            cell = summary.get(language, {}).get(p)
            if cell is not None:
                grid[r, c] = 100 * cell["word_acc"][i]
    fig, ax = new_figure(figsize=(1.1 * len(cols) + 2.5, 0.38 * len(spec["languages"]) + 1.5))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (r, c), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(cols)), [f"{p}\n{bins[i]}" for p, i in cols], fontsize=7)
    ax.set_yticks(range(len(spec["languages"])), spec["languages"], fontsize=8)
    ax.set_title("word accuracy (%) by word-length bin; columns: positional encoding, bin", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return fig

"""Figures and offline attention views.

- ``attention_html``: circuitsvis ``attention_heads`` for one input, written as a standalone HTML
  file with the bundled JavaScript inlined (``local_src``), so it renders offline. The CDN form
  (``str(html)``) renders blank without a network, and the notebook display probes the network on
  every render, so nothing here ever displays.
- matplotlib figures: metrics, attention entropy and logit displacement against length (training
  range shaded, theory curves dashed), patching heatmaps, and the dimension scan. Every plot
  function returns its ``Figure``; given ``stem`` it also writes ``stem.png`` and ``stem.svg``.

Figures are detached from pyplot's figure manager as soon as they are made (``new_figure``): a
script that draws many never accumulates open figures, and in Jupyter a figure shows inline
exactly once, as the cell's value (or with ``display(fig)``), never twice. No backend is chosen
here: matplotlib's own choice (inline in Jupyter, Agg without a display) is left alone.
"""

from __future__ import annotations

import html as html_lib
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from training import atomic
from training.scoped import eval_mode, model_device


def new_figure(*args, **kwargs):
    """``plt.subplots(*args, **kwargs)``, with the figure detached from pyplot (see above)."""
    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)
    return fig, axes


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    fig.tight_layout()
    for ext in ("png", "svg"):
        path = stem.with_suffix(f".{ext}")
        atomic.write_with(path, lambda p, ext=ext: fig.savefig(p, format=ext, dpi=120, bbox_inches="tight"))
        paths.append(path)
    return paths


def finish(fig, stem: str | Path | None):
    """Save ``fig`` when a ``stem`` is given; the figure either way."""
    if stem is not None:
        save_figure(fig, stem)
    return fig


def token_labels(tokens: torch.Tensor, bos: bool) -> list[str]:
    return [("BOS" if (bos and i == 0) else str(int(t))) for i, t in enumerate(tokens.tolist())]


def _write_html(view, path: str | Path, title: str) -> Path:
    """A standalone, offline page around a circuitsvis view (its script inlined: ``local_src``)."""
    doc = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
        + html_lib.escape(title)
        + "</title></head><body>\n<h3>"
        + html_lib.escape(title)
        + "</h3>\n"
        + view.local_src
        + "\n</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, doc)
    return path


@torch.no_grad()
def attention_html(
    model,
    tokens: torch.Tensor,
    path: str | Path,
    bos: bool = False,
    title: str | None = None,
    *,
    cache=None,
    pattern: torch.Tensor | None = None,
) -> Path:
    """Standalone, offline HTML of every head's attention pattern for one token sequence.

    The patterns come from ``pattern`` (``[layer, head, dest, src]`` or ``[head, dest, src]``), else
    from ``cache`` (an ``ActivationCache``; its first sequence), else from running ``model`` (which
    may then be None for the other two)."""
    import circuitsvis as cv

    tokens = tokens.reshape(-1)
    if pattern is None:
        if cache is None:
            tokens_in = tokens.reshape(1, -1).to(model_device(model))
            names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
            with eval_mode(model):
                _, cache = model.run_with_cache(tokens_in, names_filter=lambda n: n in names)
        layers = sorted(int(n.split(".")[1]) for n in cache.cache_dict if n.endswith("attn.hook_pattern"))
        if not layers:
            raise ValueError("the cache holds no attention pattern (hook_pattern)")
        pattern = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"][0] for layer in layers])
    pattern = pattern.detach().cpu()
    if pattern.ndim == 3:
        pattern = pattern[None]
    n_layers, n_heads = pattern.shape[:2]
    if pattern.shape[-1] != len(tokens):
        raise ValueError(f"the pattern covers {pattern.shape[-1]} positions but there are {len(tokens)} tokens")
    head_names = [f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)]
    view = cv.attention.attention_heads(
        attention=pattern.reshape(n_layers * n_heads, *pattern.shape[2:]),
        tokens=token_labels(tokens, bos),
        attention_head_names=head_names,
    )
    return _write_html(view, path, title or "attention patterns")


@torch.no_grad()
def displacement_html(
    model, tokens: torch.Tensor, path: str | Path, bos: bool = False, title: str | None = None
) -> Path:
    """Standalone, offline HTML of one set as coloured tokens: each source token's own logit
    displacement at the last position, summed over heads (``decompose_logits``; negative = the
    model pushes that member down, as it should)."""
    import circuitsvis as cv

    from interp.set_complement.displacement import decompose_logits

    tokens = tokens.reshape(1, -1).to(model_device(model))
    parts = decompose_logits(model, tokens, position=-1)
    heads = parts.heads[0].sum((0, 1))  # [key, vocab]
    offset = 1 if bos else 0
    items = tokens[0, offset:] - 1  # output index of each item token
    own = heads[torch.arange(offset, tokens.shape[1]), items].cpu()
    values = torch.cat([torch.zeros(offset), own]).tolist()
    view = cv.tokens.colored_tokens(tokens=token_labels(tokens[0], bos), values=values)
    return _write_html(view, path, title or "each member's own logit displacement at the last position")


def shade_training(ax, train_range, label: str = "training lengths"):
    """Grey band over the lengths (or move indices) trained on."""
    lo, hi = train_range
    ax.axvspan(lo - 0.5, hi + 0.5, color="0.9", zorder=0, label=label)


def plot_metrics(
    results: dict,
    stem=None,
    metrics=("tv", "itr", "margin"),
    title: str = "metrics against length",
    xlabel: str = "set length s",
):
    """One panel per metric, one line per named ``LengthMetrics``."""
    fig, axes = new_figure(1, len(metrics), figsize=(5 * len(metrics), 4))
    axes = [axes] if len(metrics) == 1 else axes
    first = next(iter(results.values()))
    for ax, m in zip(axes, metrics):
        shade_training(ax, first.train_range)
        for name, res in results.items():
            ax.plot(res.lengths, res.values[m], marker=".", label=name, linestyle="--" if "avg" in name else "-")
        ax.set(xlabel=xlabel, title=m)
        if m in ("tv", "itr", "kl"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    fig.suptitle(title)
    return finish(fig, stem)


def plot_entropy(stats: dict, stem=None, title: str = "attention entropy against length"):
    """Entropy per head against length for each named ``AttentionStats``, with uniform attention."""
    first = next(iter(stats.values()))
    fig, axes = new_figure(1, first.n_layers, figsize=(5.5 * first.n_layers, 4), squeeze=False)
    for layer in range(first.n_layers):
        ax = axes[0, layer]
        shade_training(ax, first.train_range)
        ax.plot(first.lengths, first.series(layer, 0, "uniform_entropy"), "k:", label="uniform (log n)")
        for name, st in stats.items():
            for head in range(st.n_heads):
                ax.plot(st.lengths, st.series(layer, head), marker=".", label=f"{name} L{layer}H{head}")
        ax.set(xlabel="set length s", ylabel="entropy (nats)", title=f"layer {layer}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return finish(fig, stem)


def plot_displacement(stats: dict, stem=None, title: str = "logit gap against length"):
    """Measured valid-minus-invalid gap, its head part, and the balanced theory's curve."""
    fig, axes = new_figure(1, 2, figsize=(11, 4))
    first = next(iter(stats.values()))
    lengths = [r["length"] for r in first.rows]
    for ax in axes:
        shade_training(ax, first.train_range)
    for name, st in stats.items():
        (line,) = axes[0].plot(lengths, st.series("gap"), marker=".", label=f"{name}: gap")
        axes[0].plot(lengths, st.series("theory_gap"), "--", color=line.get_color(), label=f"{name}: (2/s) gap(2)")
        axes[1].plot(lengths, st.series("heads_invalid"), marker=".", color=line.get_color(), label=f"{name}: invalid")
        axes[1].plot(lengths, st.series("heads_valid"), marker="x", color=line.get_color(), label=f"{name}: valid")
    axes[0].set(xlabel="set length s", ylabel="mean valid - mean invalid logit", yscale="log", title="logit gap")
    axes[1].set(xlabel="set length s", ylabel="mean head displacement", title="attention displacement by token class")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return finish(fig, stem)


def plot_patching(result, stem=None, labels: list[str] | None = None, title: str | None = None):
    """Heatmaps of recovery: per (layer.head, position) and per (layer, position)."""
    heads = result.head_out  # [layer, pos, head]
    n_layers, n_pos, n_heads = heads.shape
    grid = heads.permute(0, 2, 1).reshape(n_layers * n_heads, n_pos)
    fig, axes = new_figure(1, 2, figsize=(max(8, 0.5 * n_pos * 2), 2 + 0.5 * n_layers * n_heads))
    for ax, data, ylabels, name in (
        (axes[0], grid, [f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)], "head output"),
        (axes[1], result.resid_pre, [f"L{layer}" for layer in range(n_layers)], "resid_pre"),
    ):
        im = ax.imshow(data.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        ax.set_yticks(range(len(ylabels)), ylabels)
        ax.set_xticks(range(n_pos), labels or [str(i) for i in range(n_pos)], fontsize=7)
        ax.set(xlabel="position (token)", title=f"patch {name}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(
        title
        or f"recovery of logit[new] - logit[old] (swap at position {result.swap_position}, length {result.length})"
    )
    return finish(fig, stem)


def plot_dimension_scan(result: dict, stem=None):
    """In-range TV over the (d_model, d_head) grid, cells reaching the target outlined."""
    dms, dhs = result["d_models"], result["d_heads"]
    tv = torch.full((len(dms), len(dhs)), float("nan"))
    for c in result["cells"]:
        tv[dms.index(c["d_model"]), dhs.index(c["d_head"])] = c["tv_in_range"]
    fig, ax = new_figure(figsize=(1.2 * len(dhs) + 3, 1.0 * len(dms) + 2))
    im = ax.imshow(tv.numpy(), cmap="viridis_r", aspect="auto")
    for i in range(len(dms)):
        for j in range(len(dhs)):
            val = tv[i, j].item()
            ok = val <= result["target_tv"]
            ax.text(
                j,
                i,
                f"{val:.3f}" + (" *" if ok else ""),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if ok else "black",
            )
    ax.set_xticks(range(len(dhs)), [str(d) for d in dhs])
    ax.set_yticks(range(len(dms)), [str(d) for d in dms])
    ax.set(
        xlabel="d_head",
        ylabel="d_model",
        title=f"in-range TV ({result['weights']} weights); * reaches {result['target_tv']}",
    )
    fig.colorbar(im, ax=ax)
    return finish(fig, stem)

"""Attention by move index on OthelloGPT: dispersion, and whose moves each head reads.

The set task's attention probe measures entropy by set length. Here the "length" is the move
index: at the position holding move ``m`` (the prediction of move ``m + 1``) every head attends over
the ``m`` moves so far. Per layer, head and move index, over held-out games still in play:

- ``norm_entropy``: attention entropy over log m (1 = uniform over the moves so far);
- ``mine``: attention mass on earlier moves made by the side that moves next;
- ``theirs``: attention mass on earlier moves made by the other side.

Whose move each one was comes from the bitboard engine's replay (passes included), not from the
parity of the move index. A head with ``mine`` far from ``theirs`` reads whose turn it is, the
signal the untrained position rows past the training length lose (``docs/othello.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.core.attention import normalised_entropy, pattern_entropy
from training.scoped import eval_mode, model_device
from training.tasks.othello.engine import replay, squares_to_tokens
from training.tasks.othello.task import N_CTX


@dataclass
class OthelloAttention:
    moves: list[int]
    """Move index m = 1..59 of each column."""
    train_max_moves: int
    norm_entropy: Float[Tensor, "layer head move"]
    mine: Float[Tensor, "layer head move"]
    theirs: Float[Tensor, "layer head move"]

    def to_dict(self) -> dict:
        return {
            "moves": self.moves,
            "train_max_moves": self.train_max_moves,
            "norm_entropy": self.norm_entropy.tolist(),
            "mine": self.mine.tolist(),
            "theirs": self.theirs.tolist(),
        }


def mover_masks(
    games: Int[np.ndarray, "games 60"],
) -> tuple[Bool[np.ndarray, "games 59 59"], Bool[np.ndarray, "games 59 59"], Bool[np.ndarray, "games 59"]]:
    """``mine[g, q, k]``: move k (0-based, k <= q) was made by the side to move after move q + 1;
    ``theirs`` likewise for the other side; ``live[g, q]``: the game goes on after move q + 1."""
    st = replay(games)
    made_by = st.player[:, :N_CTX]  # side to move before move k = the side that made it
    next_mover = st.player[:, 1 : N_CTX + 1]  # side to move after move q + 1
    causal = np.tril(np.ones((N_CTX, N_CTX), dtype=bool))[None]
    same = made_by[:, None, :] == next_mover[:, :, None]
    live = st.legal[:, 1 : N_CTX + 1] != 0
    return causal & same, causal & ~same, live


@torch.no_grad()
def othello_attention(
    model, games: Int[np.ndarray, "games 60"], train_max_moves: int = 30, batch_size: int = 250
) -> OthelloAttention:
    """Normalised entropy and my/their-moves attention mass of every head at every move index."""
    games = np.asarray(games)
    device = model_device(model)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    sums = {k: torch.zeros(n_layers, n_heads, N_CTX, dtype=torch.float64) for k in ("ent", "mine", "theirs")}
    count = torch.zeros(N_CTX, dtype=torch.float64)
    n_attended = torch.arange(1, N_CTX + 1, dtype=torch.float64)
    with eval_mode(model):
        for i in range(0, len(games), batch_size):
            g = games[i : i + batch_size]
            mine, theirs, live = (torch.from_numpy(x) for x in mover_masks(g))
            tokens = torch.from_numpy(squares_to_tokens(g[:, :N_CTX])).to(device)
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            w = live.double()[:, None, :]  # [b, 1, q]
            for layer, name in enumerate(names):
                pat = cache[name].double().cpu()  # [b, head, q, k]
                norm = normalised_entropy(pattern_entropy(pat), n_attended)
                sums["ent"][layer] += (norm * w).sum(0)
                sums["mine"][layer] += ((pat * mine[:, None].double()).sum(-1) * w).sum(0)
                sums["theirs"][layer] += ((pat * theirs[:, None].double()).sum(-1) * w).sum(0)
            count += live.double().sum(0)
    c = count.clamp(min=1)
    return OthelloAttention(
        list(range(1, N_CTX + 1)), train_max_moves, sums["ent"] / c, sums["mine"] / c, sums["theirs"] / c
    )


def plot_othello_attention(result: OthelloAttention, stem=None):
    """Per layer: each head's normalised entropy, and its my-minus-their-moves mass, by move index."""
    from interp.core.visualize import finish, new_figure, shade_training

    n_layers, n_heads, _ = result.mine.shape
    fig, axes = new_figure(2, n_layers, figsize=(4.5 * n_layers, 7), squeeze=False)
    for layer in range(n_layers):
        for row, (values, label) in enumerate(
            ((result.norm_entropy, "entropy / log m"), (result.mine - result.theirs, "mass on mine - theirs"))
        ):
            ax = axes[row, layer]
            shade_training(ax, (1, result.train_max_moves), "training range")
            for head in range(n_heads):
                ax.plot(result.moves, values[layer, head].numpy(), label=f"H{head}", lw=1)
            ax.set(xlabel="move index", ylabel=label, title=f"layer {layer}")
            ax.grid(alpha=0.3)
        axes[0, layer].legend(fontsize=6, ncol=2)
    return finish(fig, stem)

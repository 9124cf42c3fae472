"""Edit the board in the residual stream along probe directions and read what the model does.

At one layer and one position, for each game we pick a square of class ``src`` (e.g. *mine*)
and move the residual vector along the probe direction ``w_dst - w_src`` just far enough that the
probe reads class ``dst`` (*theirs* or *empty*) with a margin. The model runs on from there
(``run_with_hooks`` on ``blocks.{L}.hook_resid_post``). We then compare the change of the
next-move logits with the legal set of the *edited* board (computed with the bitboard engine):
moves that became legal should go up, moves that became illegal should go down, and the model's
top-N moves (N = number of legal moves on the edited board) should match the edited legal set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.tasks.othello import BLACK, SQUARE_TO_TOKEN, bits_to_bool, legal_moves, replay, squares_to_tokens

from .board_probe import N_CTX, LinearProbe

CLASS = {"empty": 0, "mine": 1, "theirs": 2}


@dataclass
class InterventionResult:
    layer_hook: str
    move_index: int
    n_games: int
    newly_legal_logit_change: float
    newly_illegal_logit_change: float
    unchanged_logit_change: float
    topn_errors_before: float  # vs the edited board's legal set, without intervention
    topn_errors_after: float  # vs the edited board's legal set, with intervention
    probe_reads_target: float  # fraction of edits the probe now reads as the target class
    squares: list[int]
    edited_legal: np.ndarray
    logits_before: np.ndarray
    logits_after: np.ndarray

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in ("layer_hook", "move_index", "n_games", "newly_legal_logit_change",
                                                "newly_illegal_logit_change", "unchanged_logit_change", "topn_errors_before",
                                                "topn_errors_after", "probe_reads_target")}


def edited_legal_sets(games: np.ndarray, move_index: int, squares: np.ndarray, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Legal-move masks ``[G, 64]`` for the side to move after ``move_index`` moves, on the real
    board and on the board with each game's square changed from the mover's disc to ``dst``."""
    st = replay(games[:, :move_index])
    black, white, player = st.black[:, move_index], st.white[:, move_index], st.player[:, move_index]
    own = np.where(player == BLACK, black, white)
    opp = np.where(player == BLACK, white, black)
    bit = np.uint64(1) << squares.astype(np.uint64)
    own2 = own & ~bit
    opp2 = opp | bit if dst == "theirs" else opp
    return bits_to_bool(legal_moves(own, opp)), bits_to_bool(legal_moves(own2, opp2))


@torch.no_grad()
def intervene(model, probe: LinearProbe, games: np.ndarray, move_index: int, layer_hook: str,
              src: str = "mine", dst: str = "theirs", margin: float = 1.0, seed: int = 0) -> InterventionResult:
    """Flip one ``src`` square per game to ``dst`` at ``layer_hook`` after ``move_index`` moves."""
    if probe.target != "relative":
        raise ValueError("interventions need a 'relative' (empty/mine/theirs) probe")
    if src != "mine" or dst not in ("theirs", "empty"):
        raise ValueError("supported edits: mine -> theirs, mine -> empty")
    model.eval()
    games = np.asarray(games)
    keep = (games >= 0).sum(1) > move_index  # the game goes on after this move
    games = games[keep]
    from .board_probe import board_labels

    labels = board_labels(games[:, :N_CTX], "relative")[:, move_index - 1]  # [G, 64]
    rng = np.random.default_rng(seed)
    has = labels == CLASS[src]
    games, labels, has = games[has.any(1)], labels[has.any(1)], has[has.any(1)]
    keys = np.where(has, rng.random(has.shape), -1.0)
    squares = keys.argmax(1)  # one uniformly chosen src square per game
    legal_before, legal_after = edited_legal_sets(games, move_index, squares, dst)

    device = next(model.parameters()).device
    tokens = torch.from_numpy(squares_to_tokens(games[:, :N_CTX])).to(device)
    pos = move_index - 1
    W = probe.weights[layer_hook].to(device)
    C = probe.n_classes
    sq = torch.from_numpy(squares).to(device)
    cols = lambda c: sq * C + c  # noqa: E731
    w_dst = W[:-1, cols(CLASS[dst])].T  # [G, d]
    w_src = W[:-1, cols(CLASS[src])].T
    u = w_dst - w_src
    read = {}

    def hook(x, hook):
        v = x[:, pos]
        scores = (v @ W[:-1] + W[-1]).view(len(v), 64, C)[torch.arange(len(v)), sq]  # [G, C]
        # Smallest step t along u so that dst beats every other class k by `margin`:
        # (s_dst - s_k) + t * (w_dst - w_k) . u >= margin, for each k with a positive slope.
        t = torch.zeros(len(v), device=v.device)
        for k in range(C):
            if k == CLASS[dst]:
                continue
            w_k = W[:-1, cols(k)].T
            slope = ((w_dst - w_k) * u).sum(-1)
            need = (margin - (scores[:, CLASS[dst]] - scores[:, k])) / slope.clamp(min=1e-12)
            t = torch.maximum(t, torch.where(slope > 0, need, torch.zeros_like(need)))
        x = x.clone()
        x[:, pos] = v + t[:, None] * u
        new = (x[:, pos] @ W[:-1] + W[-1]).view(len(v), 64, C)[torch.arange(len(v)), sq].argmax(-1)
        read["ok"] = (new == CLASS[dst]).float().mean().item()
        return x

    before = model(tokens)[:, pos].float()
    after = model.run_with_hooks(tokens, fwd_hooks=[(layer_hook, hook)])[:, pos].float()
    tok = SQUARE_TO_TOKEN
    playable = tok >= 0

    def to_squares(logits):
        out = torch.full((len(logits), 64), float("nan"), device=logits.device)
        out[:, torch.from_numpy(np.flatnonzero(playable)).to(device)] = logits[:, torch.from_numpy(tok[playable]).to(device)]
        return out.cpu().numpy()

    lb, la = to_squares(before), to_squares(after)
    delta = la - lb
    newly_legal = legal_after & ~legal_before
    newly_illegal = legal_before & ~legal_after
    same = playable[None] & ~newly_legal & ~newly_illegal

    def mean(mask):
        return float(np.nanmean(delta[mask])) if mask.any() else float("nan")

    def topn_errors(logits):
        """Mismatches between the model's top-N moves and the edited legal set (N = its size)."""
        n = legal_after.sum(1, keepdims=True)
        rank = np.argsort(np.argsort(-np.nan_to_num(logits, nan=-np.inf), axis=1), axis=1)
        top = rank < n
        return float(((top ^ legal_after).sum(1) / 2).mean())

    return InterventionResult(layer_hook, move_index, len(games), mean(newly_legal), mean(newly_illegal), mean(same),
                              topn_errors(lb), topn_errors(la), read.get("ok", float("nan")), squares.tolist(),
                              legal_after, lb, la)


def plot_intervention(result: InterventionResult, stem, game: int = 0) -> list:
    """Logit change of every move on the 8x8 board for one game: the edited square is marked x and
    the moves legal on the edited board are outlined green."""
    from .visualize import plt, save_figure

    delta = (result.logits_after - result.logits_before)[game].reshape(8, 8)
    lim = max(np.nanmax(np.abs(delta)), 1e-6)
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    im = ax.imshow(np.nan_to_num(delta), cmap="RdBu", vmin=-lim, vmax=lim)
    r0, c0 = divmod(result.squares[game], 8)
    ax.text(c0, r0, "x", ha="center", va="center", fontsize=14)
    after = result.edited_legal[game]
    for sq in range(64):
        r, c = divmod(sq, 8)
        if after[sq]:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="green", lw=1.5))
    ax.set(title=f"logit change after the edit ({result.layer_hook}, move {result.move_index})\n"
                 "x: edited square; green: legal on the edited board", xticks=range(8), yticks=range(8))
    ax.title.set_fontsize(8)
    fig.colorbar(im, ax=ax)
    return save_figure(fig, stem)

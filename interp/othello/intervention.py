"""Edit the board in the residual stream along probe directions and read what the model does.

At one position, for each game we pick a square of class ``src`` (e.g. *mine*) and move the
residual vector along the probe direction ``w_dst - w_src`` just far enough that the probe reads
class ``dst`` (*theirs* or *empty*) with a margin. The model runs on from there (``run_with_hooks``
on ``blocks.{L}.hook_resid_post``). We then compare the change of the next-move logits with the
legal set of the *edited* board (computed with the bitboard engine): moves that became legal
should go up, moves that became illegal should go down, and the model's top-N moves (N = number
of legal moves on the edited board) should match the edited legal set.

- **Several layers at once**: ``layer_hook`` may list hooks; the edit is made at each, with that
  hook's probe, in one forward pass (a later layer edits the already-edited stream).
- **Several move indices**: ``intervene_moves`` runs the same edit at each move index (one
  forward pass per index, every game batched).
- **Side to move**: with a ``side`` probe (who plays next), the edit flips whose turn the model
  reads, and the target legal set is the *other* player's moves on the unchanged board. This tests
  the parity explanation of the collapse past move 30 directly: a model that reads the turn from
  that direction should switch to the opponent's moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.core.hooks import require_hooks
from interp.othello.board_probe import LinearProbe, board_labels
from training.errors import WorkbenchError
from training.scoped import eval_mode, model_device
from training.tasks.othello.engine import BLACK, SQUARE_TO_TOKEN, bits_to_bool, legal_moves, replay, squares_to_tokens
from training.tasks.othello.task import N_CTX

CLASS = {"empty": 0, "mine": 1, "theirs": 2}


@dataclass
class InterventionResult:
    layer_hooks: tuple[str, ...]
    move_index: int
    n_games: int
    newly_legal_logit_change: float
    newly_illegal_logit_change: float
    unchanged_logit_change: float
    topn_errors_before: float  # vs the edited board's legal set, without intervention
    topn_errors_after: float  # vs the edited board's legal set, with intervention
    probe_reads_target: float  # fraction of edits the probe reads as the target class, mean over hooks
    squares: list[int]
    edited_legal: np.ndarray
    logits_before: np.ndarray
    logits_after: np.ndarray
    edit: str = ""
    """What was edited: 'mine -> theirs', 'mine -> empty' or 'side to move'."""

    @property
    def layer_hook(self) -> str:
        return "+".join(self.layer_hooks)

    def summary(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "layer_hook",
                "edit",
                "move_index",
                "n_games",
                "newly_legal_logit_change",
                "newly_illegal_logit_change",
                "unchanged_logit_change",
                "topn_errors_before",
                "topn_errors_after",
                "probe_reads_target",
            )
        }


def mover_boards(games: Int[np.ndarray, "games moves"], move_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bitboards of the side to move and of the other side after ``move_index`` moves, and who
    moves (the engine's player, passes included)."""
    st = replay(games[:, :move_index])
    black, white, player = st.black[:, move_index], st.white[:, move_index], st.player[:, move_index]
    return np.where(player == BLACK, black, white), np.where(player == BLACK, white, black), player


def edited_legal_sets(
    games: Int[np.ndarray, "games moves"], move_index: int, squares: Int[np.ndarray, " games"], dst: str
) -> tuple[Bool[np.ndarray, "games 64"], Bool[np.ndarray, "games 64"]]:
    """Legal-move masks for the side to move after ``move_index`` moves, on the real
    board and on the board with each game's square changed from the mover's disc to ``dst``."""
    own, opp, _ = mover_boards(games, move_index)
    bit = np.uint64(1) << squares.astype(np.uint64)
    own2 = own & ~bit
    opp2 = opp | bit if dst == "theirs" else opp
    return bits_to_bool(legal_moves(own, opp)), bits_to_bool(legal_moves(own2, opp2))


def side_swapped_legal_sets(
    games: Int[np.ndarray, "games moves"], move_index: int
) -> tuple[Bool[np.ndarray, "games 64"], Bool[np.ndarray, "games 64"]]:
    """Legal-move masks after ``move_index`` moves for the side to move, and for the other side
    on the same board (what a model that misreads the turn would play)."""
    own, opp, _ = mover_boards(games, move_index)
    return bits_to_bool(legal_moves(own, opp)), bits_to_bool(legal_moves(opp, own))


def pick_edits(
    games: Int[np.ndarray, "games moves"], move_index: int, src: str = "mine", seed: int = 0
) -> tuple[Int[np.ndarray, "kept moves"], Int[np.ndarray, " kept"]]:
    """Games that go on after ``move_index`` moves and hold a ``src`` disc then, with one uniformly
    chosen ``src`` square each."""
    games = np.asarray(games)
    games = games[(games >= 0).sum(1) > move_index]  # the game goes on after this move
    labels = board_labels(games[:, :N_CTX], "relative")[:, move_index - 1]  # [G, 64]
    has = labels == CLASS[src]
    games, has = games[has.any(1)], has[has.any(1)]
    keys = np.where(has, np.random.default_rng(seed).random(has.shape), -1.0)
    return games, keys.argmax(1)


def edit_hook(
    W: Float[Tensor, "d_model_plus_1 cols"],
    n_classes: int,
    pos: int,
    squares: Int[Tensor, " games"],
    src: Int[Tensor, " games"],
    dst: Int[Tensor, " games"],
    margin: float,
    read: dict,
    key: str = "ok",
):
    """A forward hook moving each game's residual vector at ``pos`` along ``w_dst - w_src`` of its
    square (classes per game), just far enough that the probe reads ``dst`` by ``margin`` over
    every other class; ``read[key]`` records the fraction of edits the probe then reads as ``dst``."""
    C = n_classes
    w_dst = W[:-1, squares * C + dst].T  # [G, d]
    u = w_dst - W[:-1, squares * C + src].T
    rows = torch.arange(len(squares), device=squares.device)

    def square_scores(v):
        return (v @ W[:-1] + W[-1]).view(len(v), -1, C)[rows, squares]  # [G, C]

    def hook(x, hook):
        v = x[:, pos]
        scores = square_scores(v)
        s_dst = scores.gather(1, dst[:, None]).squeeze(1)
        # Smallest step t along u so that dst beats every other class k by `margin`:
        # (s_dst - s_k) + t * (w_dst - w_k) . u >= margin, for each k with a positive slope.
        t = torch.zeros(len(v), device=v.device)
        for k in range(C):  # over the few classes, not over games
            slope = ((w_dst - W[:-1, squares * C + k].T) * u).sum(-1)
            need = (margin - (s_dst - scores[:, k])) / slope.clamp(min=1e-12)
            t = torch.maximum(t, torch.where((slope > 0) & (dst != k), need, torch.zeros_like(need)))
        x = x.clone()
        x[:, pos] = v + t[:, None] * u
        read[key] = (square_scores(x[:, pos]).argmax(-1) == dst).float().mean().item()
        return x

    return hook


def logits_by_square(logits: Float[Tensor, "games vocab"]) -> Float[np.ndarray, "games 64"]:
    """Next-move logits on the board's squares (NaN on the four centre squares)."""
    playable = SQUARE_TO_TOKEN >= 0
    out = torch.full((len(logits), 64), float("nan"), device=logits.device)
    idx = torch.from_numpy(np.flatnonzero(playable)).to(logits.device)
    out[:, idx] = logits[:, torch.from_numpy(SQUARE_TO_TOKEN[playable]).to(logits.device)]
    return out.cpu().numpy()


def topn_errors(logits: Float[np.ndarray, "games 64"], legal: Bool[np.ndarray, "games 64"]) -> float:
    """Mean mismatches between the model's top-N moves and a legal set (N = its size)."""
    n = legal.sum(1, keepdims=True)
    rank = np.argsort(np.argsort(-np.nan_to_num(logits, nan=-np.inf), axis=1), axis=1)
    return float((((rank < n) ^ legal).sum(1) / 2).mean())


@torch.no_grad()
def intervene(
    model,
    probe: LinearProbe,
    games: np.ndarray,
    move_index: int,
    layer_hook: str | Sequence[str],
    src: str = "mine",
    dst: str = "theirs",
    margin: float = 1.0,
    seed: int = 0,
) -> InterventionResult:
    """Flip one ``src`` square per game to ``dst`` after ``move_index`` moves, at each of
    ``layer_hook`` (one hook or several); with a ``side`` probe, flip whose turn it is instead
    (``src``/``dst`` are then ignored)."""
    hooks = (layer_hook,) if isinstance(layer_hook, str) else tuple(layer_hook)
    if not hooks:
        raise ValueError("give at least one layer hook")
    if probe.target not in ("relative", "side"):
        raise ValueError("interventions need a 'relative' (empty/mine/theirs) or a 'side' (side to move) probe")
    if probe.target == "relative" and (src != "mine" or dst not in ("theirs", "empty")):
        raise ValueError("supported edits: mine -> theirs, mine -> empty")
    require_hooks(model, list(hooks))
    missing = [h for h in hooks if h not in probe.weights]
    if missing:
        raise WorkbenchError(f"the probe has no weights for {missing[0]!r} (it was fit on {', '.join(probe.weights)})")
    device = model_device(model)
    if probe.target == "side":
        games = np.asarray(games)
        games = games[(games >= 0).sum(1) > move_index]  # the game goes on after this move
        legal_before, legal_after = side_swapped_legal_sets(games, move_index)
        squares = np.zeros(len(games), dtype=np.int64)
        # the side probe's class: 0 black, 1 white (board_labels' "side" order)
        mover = torch.from_numpy((mover_boards(games, move_index)[2] != BLACK).astype(np.int64)).to(device)
        src_c, dst_c, edit = mover, 1 - mover, "side to move"
    else:
        games, squares = pick_edits(games, move_index, src, seed)
        legal_before, legal_after = edited_legal_sets(games, move_index, squares, dst)
        src_c = torch.full((len(games),), CLASS[src], device=device)
        dst_c, edit = torch.full((len(games),), CLASS[dst], device=device), f"{src} -> {dst}"
    tokens = torch.from_numpy(squares_to_tokens(games[:, :N_CTX])).to(device)
    pos = move_index - 1
    read: dict = {}
    sq = torch.from_numpy(squares).to(device)
    fwd = [
        (h, edit_hook(probe.weights[h].to(device), probe.n_classes, pos, sq, src_c, dst_c, margin, read, key=h))
        for h in hooks
    ]
    with eval_mode(model):
        lb = logits_by_square(model(tokens)[:, pos].float())
        la = logits_by_square(model.run_with_hooks(tokens, fwd_hooks=fwd)[:, pos].float())
    delta = la - lb
    newly_legal = legal_after & ~legal_before
    newly_illegal = legal_before & ~legal_after
    same = (SQUARE_TO_TOKEN >= 0)[None] & ~newly_legal & ~newly_illegal

    def mean(mask):
        return float(np.nanmean(delta[mask])) if mask.any() else float("nan")

    reads = float(np.mean([read[h] for h in hooks])) if len(read) == len(hooks) else float("nan")
    return InterventionResult(
        hooks,
        move_index,
        len(games),
        mean(newly_legal),
        mean(newly_illegal),
        mean(same),
        topn_errors(lb, legal_after),
        topn_errors(la, legal_after),
        reads,
        squares.tolist(),
        legal_after,
        lb,
        la,
        edit,
    )


def intervene_moves(
    model, probe: LinearProbe, games: np.ndarray, move_indices: Sequence[int], layer_hook: str | Sequence[str], **kwargs
) -> list[InterventionResult]:
    """``intervene`` at each of ``move_indices`` (for example 20..40 across the training length),
    same edit, hooks and margin; one result per move index."""
    return [intervene(model, probe, games, m, layer_hook, **kwargs) for m in move_indices]


def plot_intervention(result: InterventionResult, stem=None, game: int = 0):
    """Logit change of every move on the 8x8 board for one game: the edited square is marked x and
    the moves legal on the edited board (after a side-to-move edit: the other side's moves) are
    outlined green. Returns the figure; saved given ``stem``."""
    from matplotlib.patches import Rectangle

    from interp.core.visualize import finish, new_figure

    delta = (result.logits_after - result.logits_before)[game].reshape(8, 8)
    lim = max(np.nanmax(np.abs(delta)), 1e-6)
    fig, ax = new_figure(figsize=(4.8, 4.4))
    im = ax.imshow(np.nan_to_num(delta), cmap="RdBu", vmin=-lim, vmax=lim)
    side = result.edit == "side to move"
    if not side:
        r0, c0 = divmod(result.squares[game], 8)
        ax.text(c0, r0, "x", ha="center", va="center", fontsize=14)
    after = result.edited_legal[game]
    for sq in range(64):
        r, c = divmod(sq, 8)
        if after[sq]:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="green", lw=1.5))
    key = "green: the other side's legal moves" if side else "x: edited square; green: legal on the edited board"
    ax.set(
        title=f"logit change after the edit ({result.layer_hook}, move {result.move_index})\n{key}",
        xticks=range(8),
        yticks=range(8),
    )
    ax.title.set_fontsize(8)
    fig.colorbar(im, ax=ax)
    return finish(fig, stem)

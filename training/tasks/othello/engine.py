"""Vectorised Othello on 64-bit bitboards: every operation acts on whole batches of games.

Conventions (Li et al., Nanda): square = row*8 + col, row 0 at the top; bit ``i`` of a board is
square ``i``. Start: white on 27 and 36, black on 28 and 35; black moves first. A side with no
legal move passes (nothing is written) and the opponent moves again; the game ends when neither
side can move. Move sequences are ``int8`` arrays ``[games, 60]`` of squares, padded with -1.

Legal moves and flips use the standard shift-and-propagate bitboard method along the 8
directions (shifts by 1, 7, 8, 9 with edge masks so that nothing wraps across a row), so a step
costs a fixed number of numpy operations whatever the batch size. There is no Python loop per
game: the only loops are over the 60 move indices, the 8 directions and 6 propagation steps.

Tokens for models (the public OthelloGPT checkpoints): the 60 non-centre squares map to 1..60 in
square order, 0 is padding; ``d_vocab = 61``, ``n_ctx = 59`` (the last move is never an input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Int, Int8, UInt64

from training.errors import WorkbenchError

Boards = UInt64[np.ndarray, "*games"]
"""One 64-bit bitboard per game (bit i = square i)."""

U64 = np.uint64
FULL = U64(0xFFFFFFFFFFFFFFFF)
NOT_A = U64(0xFEFEFEFEFEFEFEFE)  # clears column 0 (after a shift that moved bits to higher columns)
NOT_H = U64(0x7F7F7F7F7F7F7F7F)  # clears column 7
# (shift, mask): +1 east, -1 west, +8 south, -8 north, +9 SE, +7 SW, -7 NE, -9 NW
DIRECTIONS = ((1, NOT_A), (-1, NOT_H), (8, FULL), (-8, FULL), (9, NOT_A), (7, NOT_H), (-7, NOT_A), (-9, NOT_H))
START_BLACK = U64((1 << 28) | (1 << 35))
START_WHITE = U64((1 << 27) | (1 << 36))
BLACK, WHITE = 0, 1
CENTRE = (27, 28, 35, 36)
SQUARE_TO_TOKEN = np.zeros(64, dtype=np.int64)
TOKEN_TO_SQUARE = np.full(61, -1, dtype=np.int64)
_playable = [s for s in range(64) if s not in CENTRE]
SQUARE_TO_TOKEN[_playable] = np.arange(1, 61)
SQUARE_TO_TOKEN[list(CENTRE)] = -1
TOKEN_TO_SQUARE[1:] = _playable
_LOW = {w: U64((1 << w) - 1) for w in (32, 16, 8, 4, 2, 1)}


class IllegalMoveError(WorkbenchError):
    """A move sequence that breaks the rules; names the game and the move index."""


def _shift(x: Boards, d: int, mask: np.uint64) -> Boards:
    return ((x << U64(d)) if d > 0 else (x >> U64(-d))) & mask


def legal_moves(own: Boards, opp: Boards) -> Boards:
    """Bitboard of legal moves for the side owning ``own`` (vectorised over games)."""
    empty = ~(own | opp)
    moves = np.zeros_like(own)
    for d, mask in DIRECTIONS:
        x = _shift(own, d, mask) & opp
        for _ in range(5):
            x |= _shift(x, d, mask) & opp
        moves |= _shift(x, d, mask) & empty
    return moves


def flips(move: Boards, own: Boards, opp: Boards) -> Boards:
    """Bitboard of discs flipped by playing the single-bit ``move`` (0 where ``move`` is 0)."""
    out = np.zeros_like(own)
    for d, mask in DIRECTIONS:
        run = _shift(move, d, mask) & opp
        x = run
        for _ in range(5):
            x = _shift(x, d, mask) & opp
            run |= x
        bracketed = (_shift(run, d, mask) & own) != 0
        out |= np.where(bracketed, run, U64(0))
    return out


def select_bit(x: Boards, rank: Int[np.ndarray, "*games"]) -> Int[np.ndarray, "*games"]:
    """Index of the ``rank``-th (0-based) set bit of each ``x``, by binary search on popcounts."""
    pos = np.zeros(x.shape, dtype=np.int64)
    rank = rank.astype(np.int64)
    for w in (32, 16, 8, 4, 2, 1):
        low = x & _LOW[w]
        c = np.bitwise_count(low).astype(np.int64)
        high = rank >= c
        rank = np.where(high, rank - c, rank)
        x = np.where(high, x >> U64(w), low)
        pos += high * w
    return pos


def bits_to_bool(x: UInt64[np.ndarray, "*shape"]) -> Bool[np.ndarray, "*shape 64"]:
    """Booleans per square, index i = bit i (square i)."""
    b = np.ascontiguousarray(x.astype("<u8")).view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(b, axis=-1, bitorder="little").astype(bool)


def _resolve_passes(black, white, player, done):
    """Own/opp boards and legal moves for the side to move, after passes; marks finished games."""
    own = np.where(player == BLACK, black, white)
    opp = np.where(player == BLACK, white, black)
    legal = legal_moves(own, opp)
    stuck = (legal == 0) & ~done
    if stuck.any():
        player = np.where(stuck, 1 - player, player)
        own, opp = np.where(stuck, opp, own), np.where(stuck, own, opp)
        legal = np.where(stuck, legal_moves(own, opp), legal)
        done = done | (legal == 0)
    return own, opp, legal, player, done


def random_games(n: int, rng: np.random.Generator) -> Int8[np.ndarray, "n 60"]:
    """``n`` games of uniformly random legal moves, as squares padded with -1."""
    # Boards are kept relative to the side to move (own, opp) and swapped after each move:
    # generation needs only the moves, and the swap is free where black/white would cost np.where.
    own = np.full(n, START_BLACK)
    opp = np.full(n, START_WHITE)
    done = np.zeros(n, dtype=bool)
    moves = np.full((n, 60), -1, dtype=np.int8)
    for t in range(60):
        legal = legal_moves(own, opp)
        stuck = (legal == 0) & ~done
        if stuck.any():  # pass: the other side moves again, or the game is over
            own, opp = np.where(stuck, opp, own), np.where(stuck, own, opp)
            legal = np.where(stuck, legal_moves(own, opp), legal)
            done |= legal == 0
            if done.all():
                break
        count = np.bitwise_count(legal).astype(np.int64)
        rank = np.minimum((rng.random(n) * count).astype(np.int64), np.maximum(count - 1, 0))
        square = select_bit(legal, rank)
        move = np.where(done, U64(0), U64(1) << square.astype(np.uint64))
        f = flips(move, own, opp)
        own, opp = opp & ~f, own | move | f  # the opponent is to move next
        moves[:, t] = np.where(done, -1, square)
    return moves


@dataclass
class GameStates:
    """Boards and legality at every point of a batch of games; index ``t`` = after ``t`` moves.

    ``black``, ``white``, ``legal`` are uint64 bitboards ``[games, 61]``; ``player`` is the side
    to move (after passes); ``legal`` its legal moves (0 once the game is over); ``flipped[t]``
    holds the discs flipped by move ``t`` (1-based; ``flipped[:, 0] = 0``)."""

    black: UInt64[np.ndarray, "games T_plus_1"]
    white: UInt64[np.ndarray, "games T_plus_1"]
    player: Int8[np.ndarray, "games T_plus_1"]
    legal: UInt64[np.ndarray, "games T_plus_1"]
    flipped: UInt64[np.ndarray, "games T_plus_1"]
    length: Int[np.ndarray, " games"]


def replay(moves: Int[np.ndarray, "games T"]) -> GameStates:
    """Replay move sequences (``[games, 60]`` squares, -1 padded) and record every state.

    Raises IllegalMoveError naming the first game and move index that break the rules."""
    moves = np.asarray(moves)
    if moves.ndim != 2 or moves.shape[1] > 60:
        raise IllegalMoveError(f"moves must have shape [games, <=60], got {list(moves.shape)}")
    n, T = moves.shape
    bad = (moves < -1) | (moves > 63)
    if bad.any():
        g, t = np.argwhere(bad)[0]
        raise IllegalMoveError(f"game {g}: move {t} is {int(moves[g, t])}, not a square 0..63")
    black = np.full(n, START_BLACK)
    white = np.full(n, START_WHITE)
    player = np.zeros(n, dtype=np.int8)
    done = np.zeros(n, dtype=bool)
    ended = np.zeros(n, dtype=bool)  # padding seen
    out = {k: np.zeros((n, T + 1), dtype=np.uint64) for k in ("black", "white", "legal", "flipped")}
    out_player = np.zeros((n, T + 1), dtype=np.int8)
    length = np.zeros(n, dtype=np.int64)
    for t in range(T + 1):
        own, opp, legal, player, done = _resolve_passes(black, white, player, done)
        out["black"][:, t], out["white"][:, t], out["legal"][:, t] = black, white, legal
        out_player[:, t] = player
        if t == T:
            break
        sq = moves[:, t].astype(np.int64)
        pad = sq < 0
        after_pad = ~pad & ended
        if after_pad.any():
            g = int(np.argmax(after_pad))
            raise IllegalMoveError(f"game {g}: move {t} follows padding (-1)")
        ended |= pad
        move = np.where(pad, U64(0), U64(1) << np.where(pad, 0, sq).astype(np.uint64))
        illegal = ~pad & ((move & legal) == 0)
        if illegal.any():
            g = int(np.argmax(illegal))
            why = "the game is over" if done[g] else "it is not a legal move"
            raise IllegalMoveError(f"game {g}: move {t} (square {int(sq[g])}) is illegal: {why}")
        f = flips(move, own, opp)
        own, opp = own | move | f, opp & ~f
        black = np.where(player == BLACK, own, opp)
        white = np.where(player == BLACK, opp, own)
        out["flipped"][:, t + 1] = f
        player = np.where(pad, player, 1 - player).astype(np.int8)
        length += ~pad
    return GameStates(out["black"], out["white"], out_player, out["legal"], out["flipped"], length)


def board_array(
    black: UInt64[np.ndarray, "*shape"], white: UInt64[np.ndarray, "*shape"]
) -> Int8[np.ndarray, "*shape 64"]:
    """Board per square: 0 empty, 1 black, -1 white."""
    return bits_to_bool(black).astype(np.int8) - bits_to_bool(white).astype(np.int8)


def squares_to_tokens(moves: Int[np.ndarray, "*shape"]) -> Int[np.ndarray, "*shape"]:
    """Squares (-1 padded) to tokens 1..60 (0 = padding); centre squares are an error."""
    moves = np.asarray(moves).astype(np.int64)
    tokens = np.where(moves < 0, 0, SQUARE_TO_TOKEN[np.clip(moves, 0, 63)])
    if (tokens < 0).any():
        raise IllegalMoveError("a centre square (27, 28, 35, 36) cannot be a move")
    return tokens


def tokens_to_squares(tokens: Int[np.ndarray, "*shape"]) -> Int[np.ndarray, "*shape"]:
    """Tokens 0..60 back to squares (-1 for padding)."""
    tokens = np.asarray(tokens).astype(np.int64)
    if (tokens < 0).any() or (tokens > 60).any():
        bad = tokens[(tokens < 0) | (tokens > 60)][0]
        raise IllegalMoveError(f"token {int(bad)} is out of range 0..60")
    return TOKEN_TO_SQUARE[tokens]

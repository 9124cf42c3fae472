"""The Othello game generator in torch (int64 bitboards), so synthetic data can be made on a GPU.

Same rules, conventions and output as ``othello.random_games`` (``int8 [n, 60]`` squares, -1
padded); used by ``gpu/othello_gpu.py``. torch has no unsigned 64-bit shifts, so right
shifts are masked to be logical, and bit counts go through a ``[n, 64]`` bit expansion.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int8, Int64
from torch import Tensor

from training.tasks.othello.engine import DIRECTIONS, START_BLACK, START_WHITE


def _signed(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


# (shift, combined mask as signed int64): the direction's edge mask, and for right shifts the
# mask that clears the sign-extended high bits.
_DIRS = [(d, _signed(int(m) & (((1 << (64 + d)) - 1) if d < 0 else (1 << 64) - 1))) for d, m in DIRECTIONS]


Boards = Int64[Tensor, "*games"]
"""One int64 bitboard per game (bit i = square i)."""


def _shift(x: Boards, d: int, mask: int) -> Boards:
    return ((x << d) if d > 0 else (x >> -d)) & mask


def legal_moves(own: Boards, opp: Boards) -> Boards:
    empty = ~(own | opp)
    moves = torch.zeros_like(own)
    for d, mask in _DIRS:
        x = _shift(own, d, mask) & opp
        for _ in range(5):
            x = x | (_shift(x, d, mask) & opp)
        moves = moves | (_shift(x, d, mask) & empty)
    return moves


def flips(move: Boards, own: Boards, opp: Boards) -> Boards:
    out = torch.zeros_like(own)
    for d, mask in _DIRS:
        run = _shift(move, d, mask) & opp
        x = run
        for _ in range(5):
            x = _shift(x, d, mask) & opp
            run = run | x
        out = out | torch.where((_shift(run, d, mask) & own) != 0, run, torch.zeros_like(run))
    return out


def bits(x: Int64[Tensor, "*shape"]) -> Bool[Tensor, "*shape 64"]:
    """Booleans per square of an int64 bitboard (bit i = square i)."""
    return ((x.unsqueeze(-1) >> torch.arange(64, device=x.device)) & 1).bool()


def random_games(n: int, generator: torch.Generator | None = None, device="cpu") -> Int8[Tensor, "n 60"]:
    """``n`` games of uniformly random legal moves, -1 padded, made on ``device``."""
    own = torch.full((n,), _signed(int(START_BLACK)), dtype=torch.int64, device=device)
    opp = torch.full((n,), _signed(int(START_WHITE)), dtype=torch.int64, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    moves = torch.full((n, 60), -1, dtype=torch.int8, device=device)
    one = torch.ones((), dtype=torch.int64, device=device)
    for t in range(60):
        legal = legal_moves(own, opp)
        stuck = (legal == 0) & ~done
        own, opp = torch.where(stuck, opp, own), torch.where(stuck, own, opp)
        legal = torch.where(stuck, legal_moves(own, opp), legal)
        done = done | (legal == 0)
        b = bits(legal)
        count = b.sum(-1)
        u = torch.rand(n, generator=generator, device=device)
        rank = torch.minimum((u * count).long(), (count - 1).clamp(min=0))
        square = (b.cumsum(-1) > rank.unsqueeze(-1)).int().argmax(-1)
        move = torch.where(done, torch.zeros_like(own), one << square)
        f = flips(move, own, opp)
        own, opp = opp & ~f, own | move | f
        moves[:, t] = torch.where(done, torch.full_like(square, -1), square).to(torch.int8)
    return moves

"""The torch generator follows the same rules as the numpy engine (checked by replay)."""

import numpy as np
import torch

from training.tasks.othello import engine as othello
from training.tasks.othello import engine_torch as othello_torch


def test_torch_legal_moves_and_flips_match_numpy():
    rng = np.random.default_rng(0)
    own = rng.integers(0, 2**64 - 1, 2000, dtype=np.uint64, endpoint=True)
    opp = rng.integers(0, 2**64 - 1, 2000, dtype=np.uint64, endpoint=True) & ~own
    t_own, t_opp = torch.from_numpy(own.view(np.int64)), torch.from_numpy(opp.view(np.int64))
    assert (othello_torch.legal_moves(t_own, t_opp).numpy().view(np.uint64) == othello.legal_moves(own, opp)).all()
    move = np.uint64(1) << rng.integers(0, 64, 2000).astype(np.uint64)
    t_move = torch.from_numpy(move.view(np.int64))
    assert (othello_torch.flips(t_move, t_own, t_opp).numpy().view(np.uint64) == othello.flips(move, own, opp)).all()


def test_torch_games_are_legal_and_random():
    games = othello_torch.random_games(3000, torch.Generator().manual_seed(0)).numpy()
    st = othello.replay(games)  # raises on any illegal move
    assert (st.legal[np.arange(len(games)), st.length] == 0).all()  # every game was played to its end
    first = np.bincount(games[:, 0], minlength=64)[[19, 26, 37, 44]]
    assert first.min() > 650  # the 4 opening moves are equally likely (750 each expected)

"""Attention by move index on Othello models, against a uniform-attention model whose every figure
follows from the games alone (checked with a plain loop over games)."""

import numpy as np
import pytest
import torch

from interp.othello.attention import mover_masks, othello_attention, plot_othello_attention
from training.models import ModelConfig, build_model
from training.tasks.othello.engine import random_games
from training.tasks.othello.reference import RefGame


@pytest.fixture(scope="module")
def games():
    return random_games(80, np.random.default_rng(3))


def _uniform_model():
    model = build_model(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, positional="learned"), 61, 61, 59)
    with torch.no_grad():  # zero queries and keys: every score equal, attention uniform over the past
        for block in model.blocks:
            for p in (block.attn.W_Q, block.attn.W_K, block.attn.b_Q, block.attn.b_K):
                p.zero_()
    return model.train()


def _reference(games):
    """Plain loop: whose move each was (reference engine), uniform attention over moves 1..m."""
    mine = np.zeros(59)
    live = np.zeros(59)
    for g in games:
        game, movers, nexts = RefGame(), [], []
        for sq in g:
            if sq < 0:
                break
            movers.append(game.player)
            game.play(int(sq))
            nexts.append(game.player if game.legal() else None)
        for q in range(min(59, len(movers))):
            if nexts[q] is None:
                continue
            live[q] += 1
            mine[q] += sum(m == nexts[q] for m in movers[: q + 1]) / (q + 1)
    return mine, live


def test_uniform_attention_by_move_index(games):
    model = _uniform_model()
    res = othello_attention(model, games, train_max_moves=20, batch_size=32)
    assert model.training  # given back in its mode
    mine_ref, live = _reference(games)
    seen = live > 0
    assert torch.allclose(res.norm_entropy[:, :, seen], torch.ones(1, dtype=torch.float64), atol=1e-6)
    for layer in range(2):
        for head in range(2):
            assert np.allclose(res.mine[layer, head].numpy()[seen], (mine_ref / np.maximum(live, 1))[seen], atol=1e-6)
            assert np.allclose((res.mine + res.theirs)[layer, head].numpy()[seen], 1.0, atol=1e-6)
    fig = plot_othello_attention(res)
    assert len(fig.axes) == 4


def test_mover_masks_without_passes_follow_parity(games):
    from training.tasks.othello.engine import replay

    mine, theirs, live = mover_masks(games)
    player = replay(games).player
    no_pass = (player[:, 1:32] != player[:, :31]).all(1)  # the side to move alternates for 31 moves
    g = int(np.flatnonzero(no_pass)[0])
    # in a game without passes the next mover after move q+1 made the moves of opposite parity to q
    for q in (0, 5, 30):
        expected = [(k % 2) != (q % 2) for k in range(q + 1)]
        assert mine[g, q, : q + 1].tolist() == expected and not mine[g, q, q + 1 :].any()
        assert (mine[g, q, : q + 1] ^ theirs[g, q, : q + 1]).all()

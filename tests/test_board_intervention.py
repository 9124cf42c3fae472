"""Board edits: the edited legal sets against the reference engine, and the intervention mechanics."""

import numpy as np
import torch

from interp.board_intervention import edited_legal_sets, intervene
from interp.board_probe import fit_board_probe
from training.models import ModelConfig, build_model
from training.tasks.othello import random_games

from .othello_reference import RefGame


def _reference_legal(game, move_index, square, dst):
    ref = RefGame()
    for sq in game[:move_index]:
        ref.play(int(sq))
    r, c = divmod(int(square), 8)
    assert ref.board[r][c] == ref.player  # the edited square holds the mover's disc
    ref.board[r][c] = -ref.player if dst == "theirs" else 0
    return ref._legal_for(ref.player)


def test_edited_legal_sets_match_the_reference_engine():
    games = random_games(60, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for move_index in (5, 20, 35):
        live = games[(games >= 0).sum(1) > move_index]
        squares = []
        for g in live:  # pick a square holding the mover's disc, with the reference engine
            ref = RefGame()
            for sq in g[:move_index]:
                ref.play(int(sq))
            own = [i for i in range(64) if ref.board[i // 8][i % 8] == ref.player]
            squares.append(rng.choice(own))
        squares = np.array(squares)
        for dst in ("theirs", "empty"):
            _, after = edited_legal_sets(live, move_index, squares, dst)
            for g, sq, mask in zip(live, squares, after):
                assert np.flatnonzero(mask).tolist() == _reference_legal(g, move_index, sq, dst)


def test_intervention_mechanics_on_a_small_model():
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, attn_only=False, d_mlp=64, normalization="LN", positional="learned")
    model = build_model(cfg, 61, 61, 59, seed=0)
    games = random_games(300, np.random.default_rng(0))
    probe = fit_board_probe(model, games[:200], "relative", positions=(0, 30))
    res = intervene(model, probe, games[200:], move_index=12, layer_hook="blocks.0.hook_resid_post", dst="theirs")
    assert res.n_games > 50 and res.probe_reads_target > 0.5
    assert np.isfinite([res.newly_legal_logit_change, res.newly_illegal_logit_change, res.topn_errors_after]).all()
    assert res.logits_before.shape == (res.n_games, 64)
    with torch.no_grad():
        same = intervene(model, probe, games[200:], 12, "blocks.0.hook_resid_post", dst="theirs", margin=-1e9)
    assert np.allclose(same.logits_after, same.logits_before, equal_nan=True)  # a zero step changes nothing

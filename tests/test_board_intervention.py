"""Board edits: the edited legal sets against the reference engine, and the intervention mechanics."""

import numpy as np
import pytest
import torch

from interp.othello.board_probe import fit_board_probe
from interp.othello.intervention import edited_legal_sets, intervene
from training.tasks.othello.engine import random_games
from training.tasks.othello.reference import RefGame

from .conftest import small_othello_model


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
    model = small_othello_model()
    games = random_games(300, np.random.default_rng(0))
    probe = fit_board_probe(model, games[:200], "relative", positions=(0, 30))
    res = intervene(model, probe, games[200:], move_index=12, layer_hook="blocks.0.hook_resid_post", dst="theirs")
    assert res.n_games > 50 and res.probe_reads_target > 0.5
    assert np.isfinite([res.newly_legal_logit_change, res.newly_illegal_logit_change, res.topn_errors_after]).all()
    assert res.logits_before.shape == (res.n_games, 64)
    with torch.no_grad():
        same = intervene(model, probe, games[200:], 12, "blocks.0.hook_resid_post", dst="theirs", margin=-1e9)
    assert np.allclose(same.logits_after, same.logits_before, equal_nan=True)  # a zero step changes nothing


def test_side_labels_and_swapped_legal_sets_match_the_reference_engine():
    """Who moves next (passes included) and the other side's legal moves, against the
    reference engine."""
    from interp.othello.board_probe import board_labels
    from interp.othello.intervention import side_swapped_legal_sets

    games = random_games(40, np.random.default_rng(3))
    side = board_labels(games[:, :59], "side")  # [G, 59, 1]
    passes = 0
    for g, labels in zip(games, side):
        ref = RefGame()
        for p, sq in enumerate(g[:59]):
            if sq < 0:
                break
            ref.play(int(sq))
            if ref._legal_for(ref.player):  # the reference names the mover; 1 = black, -1 = white
                assert labels[p, 0] == (0 if ref.player == 1 else 1)
            passes += (labels[p, 0] == labels[p - 1, 0]) if p else 0
    assert passes > 0  # these games do contain passes: the label is not the parity of the index
    for move_index in (10, 30):
        live = games[(games >= 0).sum(1) > move_index]
        mine, other = side_swapped_legal_sets(live, move_index)
        for g, m, o in zip(live, mine, other):
            ref = RefGame()
            for sq in g[:move_index]:
                ref.play(int(sq))
            assert np.flatnonzero(m).tolist() == ref._legal_for(ref.player)
            assert np.flatnonzero(o).tolist() == ref._legal_for(-ref.player)


def test_side_and_multi_layer_interventions_on_a_small_model():
    from interp.othello.board_probe import probe_accuracy
    from interp.othello.intervention import intervene_moves

    model = small_othello_model()
    games = random_games(300, np.random.default_rng(0))
    side = fit_board_probe(model, games[:200], "side", positions=(0, 40))
    assert side.n_squares == 1 and side.direction(
        "blocks.1.hook_resid_post", 0, "white", "black"
    ).norm() == pytest.approx(1)
    acc = probe_accuracy(model, side, games[200:])
    # one square (the side), one accuracy per layer; an untrained model's accuracy has no known value
    assert len(acc.by_square["blocks.0.hook_resid_post"]) == 1
    assert set(acc.by_layer) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    with pytest.raises(ValueError, match="no 8x8 board layout"):
        side.to_grid("blocks.0.hook_resid_post")
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    results = intervene_moves(model, side, games[200:], [10, 20], hooks)
    for res, m in zip(results, (10, 20)):
        assert res.move_index == m and res.layer_hooks == tuple(hooks) and res.edit == "side to move"
        assert res.probe_reads_target > 0.9  # the edit moves each game just past the other side
        assert res.edited_legal.shape == (res.n_games, 64)
    relative = fit_board_probe(model, games[:200], "relative", positions=(0, 30))
    both = intervene(model, relative, games[200:], 12, hooks, dst="empty")
    assert both.layer_hook == "+".join(hooks) and both.probe_reads_target > 0.5
    with torch.no_grad():
        same = intervene(model, side, games[200:], 12, hooks, margin=-1e9)
    assert np.allclose(same.logits_after, same.logits_before, equal_nan=True)

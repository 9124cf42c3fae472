"""The vectorised Othello engine against the plain reference engine on 10,000 random games."""

import numpy as np
import pytest

from training.tasks.othello.engine import (
    BLACK,
    IllegalMoveError,
    bits_to_bool,
    board_array,
    random_games,
    replay,
    select_bit,
    squares_to_tokens,
    tokens_to_squares,
)
from training.tasks.othello.reference import RefGame


def test_start_position_and_first_moves():
    st = replay(np.full((1, 1), -1, dtype=np.int8))
    board = board_array(st.black[:, 0], st.white[:, 0])[0]
    assert [i for i in range(64) if board[i] == 1] == [28, 35]
    assert [i for i in range(64) if board[i] == -1] == [27, 36]
    assert st.player[0, 0] == BLACK
    assert sorted(np.flatnonzero(bits_to_bool(st.legal[:, 0])[0])) == [19, 26, 37, 44]


def test_select_bit_by_hand():
    x = np.array([0b1011000, 1 << 63 | 1, 0xFF00], dtype=np.uint64)
    assert select_bit(x, np.array([0, 1, 7])).tolist() == [3, 63, 15]
    assert select_bit(x, np.array([2, 0, 0])).tolist() == [6, 0, 8]


def test_engine_matches_reference_on_10000_random_games():
    games = random_games(10_000, np.random.default_rng(123))
    st = replay(games)
    legal = bits_to_bool(st.legal)
    boards = board_array(st.black, st.white)
    flipped = bits_to_bool(st.flipped)
    passes = ends = 0
    for g in range(games.shape[0]):
        ref = RefGame()
        n = int((games[g] >= 0).sum())
        assert (games[g, n:] == -1).all()
        for t in range(n + 1):
            assert ref.cells() == boards[g, t].tolist(), (g, t)
            assert ref.legal() == np.flatnonzero(legal[g, t]).tolist(), (g, t)
            assert (1 if st.player[g, t] == BLACK else -1) == ref.player or ref.over, (g, t)
            if t == n:
                break
            before = ref.player
            f = ref.play(int(games[g, t]))
            assert sorted(f) == np.flatnonzero(flipped[g, t + 1]).tolist(), (g, t)
            passes += ref.player == before and not ref.over
        assert ref.over, f"game {g} stopped after {n} moves but the reference game is not over"
        ends += 1
    assert ends == 10_000 and passes > 0  # passes do occur in 10k random games


@pytest.mark.parametrize(
    "seq, words",
    [
        ([19, 19], "game 0: move 1 (square 19) is illegal"),
        ([0], "game 0: move 0 (square 0) is illegal"),
        ([19, -1, 18], "move 2 follows padding"),
        ([64], "not a square"),
    ],
)
def test_illegal_sequences_name_the_move(seq, words):
    moves = np.array([seq], dtype=np.int64)
    with pytest.raises(IllegalMoveError, match=words.replace("(", r"\(").replace(")", r"\)")):
        replay(moves)


def test_move_after_game_over_is_illegal():
    games = random_games(200, np.random.default_rng(5))
    lengths = (games >= 0).sum(1)
    game = games[int(np.argmin(lengths))]  # a game that ended before the board filled
    n = int(lengths.min())
    assert n < 60
    extended = np.concatenate([game[:n], [0]])[None]
    with pytest.raises(IllegalMoveError, match=f"move {n}"):
        replay(extended)


def test_tokenisation_round_trip():
    squares = np.array([[0, 26, 29, 63, -1]])
    tokens = squares_to_tokens(squares)
    assert tokens.tolist() == [[1, 27, 28, 60, 0]]
    assert tokens_to_squares(tokens).tolist() == squares.tolist()
    games = random_games(200, np.random.default_rng(0))
    assert (tokens_to_squares(squares_to_tokens(games)) == games).all()
    with pytest.raises(IllegalMoveError, match="centre"):
        squares_to_tokens(np.array([27]))
    with pytest.raises(IllegalMoveError, match="token 61 is out of range"):
        tokens_to_squares(np.array([61]))

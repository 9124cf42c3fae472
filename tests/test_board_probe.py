"""Board-state probes against a model with a planted linear board feature, with controls."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from interp.othello.board_probe import LinearProbe, board_labels, fit_board_probe, membership_probe, probe_accuracy
from interp.set_complement.theory import balanced_model
from training.tasks.othello.engine import random_games, tokens_to_squares
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

from .conftest import small_othello_model


class Planted(torch.nn.Module):
    """Layer 1's residual stream is a random linear image of the {empty, mine, theirs} board plus
    noise; layer 0's is noise only."""

    def __init__(self, d=160, noise=0.05):  # 64 squares x 2 free dims fit in 160
        super().__init__()
        self.cfg = SimpleNamespace(n_layers=2, d_model=d)
        g = torch.Generator().manual_seed(0)
        self.R = torch.randn(64 * 3, d, generator=g)
        self.noise = noise
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def run_with_cache(self, tokens, names_filter):
        squares = tokens_to_squares(tokens.cpu().numpy())
        labels = torch.from_numpy(board_labels(squares, "relative"))
        onehot = torch.nn.functional.one_hot(labels, 3).reshape(*labels.shape[:2], -1).float()
        planted = onehot @ self.R + self.noise * torch.randn(*labels.shape[:2], self.cfg.d_model)
        cache = {"blocks.0.hook_resid_post": torch.randn_like(planted), "blocks.1.hook_resid_post": planted}
        return None, {k: v for k, v in cache.items() if names_filter(k)}


@pytest.fixture(scope="module")
def games():
    return random_games(600, np.random.default_rng(0))


def test_labels_by_hand():
    labels = board_labels(np.array([[19] + [-1] * 58]), "relative")[0]
    # After black plays 19 (flipping 27), white is to move: white's discs are 'mine' (1).
    assert labels[0, 19] == 2 and labels[0, 27] == 2 and labels[0, 36] == 1 and labels[0, 0] == 0
    absolute = board_labels(np.array([[19] + [-1] * 58]), "absolute")[0]
    assert absolute[0, 19] == 1 and absolute[0, 36] == 2
    flipped = board_labels(np.array([[19] + [-1] * 58]), "flipped")[0]
    assert np.flatnonzero(flipped[0]).tolist() == [27]


def test_planted_feature_is_recovered_and_controls_fail(games, tmp_path):
    model = Planted()
    train, held = games[:400], games[400:]
    probe = fit_board_probe(model, train, "relative")
    acc = probe_accuracy(model, probe, held)
    assert acc.by_layer["blocks.1.hook_resid_post"] > 0.99
    assert acc.by_layer["blocks.0.hook_resid_post"] < 0.75  # noise layer: about the majority rate
    assert len(acc.by_move["blocks.1.hook_resid_post"]) == 59 and len(acc.by_square["blocks.1.hook_resid_post"]) == 64
    assert min(acc.by_move["blocks.1.hook_resid_post"][:50]) > 0.97
    shuffled = fit_board_probe(model, train, "relative", shuffle_labels=True)
    assert probe_accuracy(model, shuffled, held).by_layer["blocks.1.hook_resid_post"] < 0.8
    probe.save(tmp_path / "probe")
    again = LinearProbe.load(tmp_path / "probe")
    x = torch.randn(5, 160)
    assert torch.equal(again.predict("blocks.1.hook_resid_post", x), probe.predict("blocks.1.hook_resid_post", x))
    assert again.target == "relative" and again.meta["hooks"] == probe.meta["hooks"]


def test_random_model_control_sits_between_the_priors_and_the_planted_board(games):
    """A random model's residual stream holds the tokens and positions but no board. Its probe should
    beat each square's most frequent class (which the probe's bias alone reaches), stay below the most
    frequent class per square *and move index* (the most that knowing the move index can give), and
    fall far short of a model that carries the board."""
    model = small_othello_model()
    probe = fit_board_probe(model, games[:300], "relative", positions=(0, 40))
    acc = probe_accuracy(model, probe, games[300:])
    assert set(acc.by_layer) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    train_lab, test_lab = board_labels(games[:300, :59], "relative"), board_labels(games[300:, :59], "relative")
    live_train = np.arange(59)[None, :] < (games[:300] >= 0).sum(1)[:, None]
    live = np.arange(59)[None, :] < (games[300:] >= 0).sum(1)[:, None]

    def score(pred):  # accuracy on the test games' live positions, all squares
        return ((test_lab == pred) & live[..., None]).sum() / (64 * live.sum())

    counts = np.stack([((train_lab == c) & live_train[..., None]) for c in range(3)])  # [3, G, 59, 64]
    per_square = score(counts[:, :, :41].sum((1, 2)).argmax(0)[None, None])
    per_square_and_move = score(counts.sum(1).argmax(0)[None])
    planted = probe_accuracy(Planted(), fit_board_probe(Planted(), games[:300], "relative"), games[300:]).by_layer
    assert per_square < per_square_and_move
    for a in acc.by_layer.values():
        assert per_square < a < per_square_and_move
        assert a < planted["blocks.1.hook_resid_post"] - 0.2


def test_membership_probe_on_the_balanced_model():
    v = 12
    task = SetComplementTask(SetComplementConfig(v=v, train_max_len=4))
    res = membership_probe(balanced_model(v, 2.0, 5.0), task, sets=256)
    assert res["accuracy"][0] == pytest.approx(1.0)
    # never worse than predicting "not a member" everywhere
    assert all(a >= 1 - s / v - 1e-9 for s, a in zip(res["lengths"], res["accuracy"]))

"""Probe directions and layouts against the column arithmetic they replace."""

import pytest
import torch

from interp.othello.board_probe import LinearProbe


def _probe():
    W = torch.randn(17, 64 * 3, generator=torch.Generator().manual_seed(0))
    return LinearProbe({"blocks.0.hook_resid_post": W}, 3, "relative", {})


def test_direction_is_the_normalised_column():
    p, h = _probe(), "blocks.0.hook_resid_post"
    W = p.weights[h]
    square = 8 * 2 + 5  # row c, column 6
    d = p.direction(h, square, "mine")
    col = W[:-1, square * 3 + 1]
    assert torch.allclose(d, col / col.norm()) and d.norm().item() == pytest.approx(1.0)
    diff = W[:-1, square * 3 + 1] - W[:-1, square * 3 + 2]
    assert torch.allclose(p.direction(h, square, "mine", against="theirs"), diff / diff.norm())
    assert torch.allclose(p.direction(h, square, 2), p.direction(h, square, "theirs"))
    with pytest.raises(ValueError, match="no class 'black'"):
        p.direction(h, square, "black")
    with pytest.raises(ValueError, match="square"):
        p.direction(h, 64, "mine")


def test_grid_layout_round_trip():
    p, h = _probe(), "blocks.0.hook_resid_post"
    grid = p.to_grid(h)
    assert grid.shape == (16, 8, 8, 3)
    W = p.weights[h]
    for r, c, k in ((0, 0, 0), (3, 7, 2), (7, 1, 1)):
        assert torch.equal(grid[:, r, c, k], W[:-1, (r * 8 + c) * 3 + k])
        assert p.bias_grid(h)[r, c, k] == W[-1, (r * 8 + c) * 3 + k]
    again = LinearProbe.from_grid({h: grid}, "relative", bias={h: p.bias_grid(h)})
    assert torch.equal(again.weights[h], W) and again.n_classes == 3
    x = torch.randn(5, 16)
    assert torch.equal(again.predict(h, x), p.predict(h, x))
    with pytest.raises(ValueError, match=r"\[d_model, 8, 8, options\]"):
        LinearProbe.from_grid({h: torch.zeros(16, 64, 3)}, "relative")

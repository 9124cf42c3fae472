"""scripts/formal_dispersion.py's statistics against hand-computed values."""

import pytest

from tests.scriptload import load_script

fd = load_script("formal_dispersion")


def test_spearman_matches_the_textbook_formula_and_averages_ties():
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert fd.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties get the mean of their ranks: b's ranks are 0, 1.5, 1.5, 3, Pearson of the ranks by hand
    assert fd.spearman([1, 2, 3, 4], [5, 6, 6, 9]) == pytest.approx(4.5 / (5**0.5 * 4.5**0.5))


def test_permutation_p_of_a_perfect_ranking_is_two_orderings_in_n_factorial():
    # n = 6: only the identity and the reversal reach |rho| = 1, so the exact p is 2 / 720
    p = fd.permutation_p(list(range(6)), list(range(6)), n=20000)
    assert p == pytest.approx(2 / 720, abs=0.0015)
    assert fd.permutation_p([0, 1, 2, 3], [0, 1, 2, 3], n=100) > 1 / 101

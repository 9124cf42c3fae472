"""Interpretability tools for trained set-complement (and Othello) HookedTransformers."""

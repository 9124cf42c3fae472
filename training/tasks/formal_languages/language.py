"""What a formal language must give the workbench, and the vectorised machinery built on it.

A language here is a deterministic automaton run on a whole batch of strings at once: a state
tensor per string (``start``), a step on one symbol per string (``step``), the valid next symbols
of a state (``valid``: every symbol ``x`` such that the prefix followed by ``x`` is still the prefix
of some word, and END when the prefix is itself a word) and ``can_finish`` (some continuation of
exactly ``r`` more symbols ends in a word). From these four, this file draws words of a given
length and lists the valid next symbols after every prefix, for every language alike. Symbols are
ids ``0..n_symbols-1``; END is id ``n_symbols``.

How words are drawn. A word of length ``L`` is built left to right; at each step the next symbol
is uniform over the valid symbols after which the word can still be completed in exactly the
symbols left (``can_finish``). Every length that has a word is therefore populated, whatever the
language's natural length distribution. This conditioning biases which *inputs* are seen (the last
symbols of a Dyck word are forced closers), never the *targets*: the targets after a prefix are
the language's valid set, which does not depend on how the prefix was drawn (``task.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from jaxtyping import Bool, Int
from torch import Tensor


class Language(ABC):
    """A language as a batched deterministic automaton over ``symbols`` (one character each)."""

    name: str
    symbols: str

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def end(self) -> int:
        """The id of END in the valid sets (one past the last symbol)."""
        return len(self.symbols)

    @abstractmethod
    def start(self, batch: int, device="cpu") -> Int[Tensor, "batch k"]:
        """The state of the empty prefix, for ``batch`` strings."""

    @abstractmethod
    def step(self, state: Int[Tensor, "batch k"], symbol: Int[Tensor, " batch"]) -> Int[Tensor, "batch k"]:
        """The state after one more symbol per string (only ever called with valid symbols)."""

    @abstractmethod
    def valid(self, state: Int[Tensor, "batch k"]) -> Bool[Tensor, "batch n_symbols_plus_end"]:
        """The valid next symbols of each state, END last."""

    @abstractmethod
    def can_finish(self, state: Int[Tensor, "batch k"], remaining: Int[Tensor, " batch"]) -> Bool[Tensor, " batch"]:
        """Whether some continuation of exactly ``remaining`` symbols makes a word."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def feasible_lengths(lang: Language, lo: int, hi: int) -> list[int]:
    """The lengths in ``lo..hi`` that have at least one word."""
    lengths = torch.arange(lo, hi + 1)
    ok = lang.can_finish(lang.start(len(lengths)), lengths)
    return lengths[ok].tolist()


def sample_words(
    lang: Language, lengths: Int[Tensor, " batch"], generator: torch.Generator | None = None
) -> Int[Tensor, "batch max_len"]:
    """One word of each requested length (every length must be feasible), as symbol ids padded
    with -1; each symbol uniform over those that keep the word completable (module docstring).
    One vectorised step per position: no loop over words."""
    b = lengths.shape[0]
    width = int(lengths.max()) if b else 0
    words = torch.full((b, width), -1, dtype=torch.long)
    state = lang.start(b)
    symbols = torch.arange(lang.n_symbols)
    for t in range(width):
        going = t < lengths
        left = lengths - t - 1
        valid = lang.valid(state)[:, : lang.n_symbols]
        choice = torch.zeros(b, lang.n_symbols, dtype=torch.bool)
        for x in range(lang.n_symbols):
            nxt = lang.step(state, symbols[x].expand(b))
            choice[:, x] = valid[:, x] & lang.can_finish(nxt, left.clamp(min=0))
        stuck = going & ~choice.any(-1)
        if bool(stuck.any()):
            raise ValueError(f"{lang.name}: no word of length {int(lengths[stuck][0])} (check feasible_lengths)")
        # rows already complete draw from an all-ones row and are masked out
        pick = torch.multinomial(torch.where(going[:, None], choice.float(), 1.0), 1, generator=generator)[:, 0]
        words[:, t] = torch.where(going, pick, -1)
        state = torch.where(going[:, None], lang.step(state, pick), state)
    return words


def valid_sets(lang: Language, words: Int[Tensor, "batch max_len"]) -> Bool[Tensor, "batch max_len_plus_1 vocab_out"]:
    """The valid next symbols (END last) after every prefix of each word: ``[b, t]`` is the set
    after the first ``t`` symbols, for ``t = 0..len``; all False past the word's end."""
    b, width = words.shape
    out = torch.zeros(b, width + 1, lang.n_symbols + 1, dtype=torch.bool)
    state = lang.start(b)
    live = torch.ones(b, dtype=torch.bool)
    for t in range(width + 1):
        out[:, t] = lang.valid(state) & live[:, None]
        if t < width:
            live = live & (words[:, t] >= 0)
            state = torch.where(live[:, None], lang.step(state, words[:, t].clamp(min=0)), state)
    return out

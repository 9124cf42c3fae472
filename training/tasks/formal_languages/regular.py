"""Regular languages from a DFA table: Tomita 1-7, Parity, (aa)*, (abab)* and depth-bounded Dyck.

One generic ``DFALanguage`` covers them all. It is built from a transition table ``delta[q][x]``
and the accepting states; a missing transition (``None``) goes to a dead state the class adds.
From the table alone it derives which states are live (an accepting state is reachable), the
valid next symbols of each state (those that lead to a live state; END where the state accepts)
and, for ``can_finish``, the table ``reach[r, q]``: an accepting state is reachable from ``q`` in
exactly ``r`` steps, grown by one boolean matrix product per step as longer lengths are asked for.

The tables follow the usual definitions (Tomita 1982; the DFAs of Bhattamishra et al. 2020,
``satwik77/Transformer-Formal-Languages``), over ``01`` for Tomita and Parity:

- Tomita 1 ``1*``; 2 ``(10)*``; 3 no odd run of 1s followed by an odd run of 0s; 4 no ``000``;
  5 even numbers of 0s and of 1s; 6 #0 - #1 divisible by 3; 7 ``0*1*0*1*``;
- Parity: an even number of 1s; ``(aa)*``; ``(abab)*``;
- bounded Dyck D_n over ``ab`` (``a`` opens, ``b`` closes, depth at most n): D_1 = ``(ab)*``,
  D_n = ``(a D_{n-1} b)*``, the star-free family of the paper.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from training.errors import ConfigError
from training.tasks.formal_languages.language import Language


class DFALanguage(Language):
    """A regular language from its transition table (state 0 starts)."""

    def __init__(self, name: str, symbols: str, delta: Sequence[Sequence[Optional[int]]], accepting: set[int]):
        n = len(delta)
        if any(len(row) != len(symbols) for row in delta):
            raise ConfigError(f"{name}: every DFA row needs one entry per symbol of {symbols!r}")
        dead = n  # the added sink
        table = torch.tensor([[dead if q is None else q for q in row] for row in delta] + [[dead] * len(symbols)])
        self.name, self.symbols = name, symbols
        self.delta = table  # [states, symbols]
        self.accepting = torch.zeros(n + 1, dtype=torch.bool)
        self.accepting[list(accepting)] = True
        # live: an accepting state is reachable (fixed point of one step back)
        live = self.accepting.clone()
        for _ in range(n + 1):
            live = live | live[table].any(-1)
        self.live = live
        self.valid_table = torch.cat([live[table], self.accepting[:, None]], dim=1)  # [states, symbols + END]
        self._reach = self.accepting[None].clone()  # reach[r, q]: accepting in exactly r steps

    def _reach_to(self, r: int) -> torch.Tensor:
        while self._reach.shape[0] <= r:
            nxt = self._reach[-1][self.delta].any(-1)  # some symbol leads to a state that gets there in r - 1
            self._reach = torch.cat([self._reach, nxt[None]])
        return self._reach

    def start(self, batch, device="cpu"):
        return torch.zeros(batch, 1, dtype=torch.long, device=device)

    def step(self, state, symbol):
        return self.delta[state[:, 0], symbol][:, None]

    def valid(self, state):
        return self.valid_table[state[:, 0]]

    def can_finish(self, state, remaining):
        reach = self._reach_to(int(remaining.max()) if remaining.numel() else 0)
        return reach[remaining, state[:, 0]]


def tomita(n: int) -> DFALanguage:
    """Tomita grammar ``n`` (1..7) over ``01``."""
    N = None
    tables = {
        1: ([[N, 0]], {0}),  # 1*
        2: ([[N, 1], [0, N]], {0}),  # (10)*
        # 0: no pending odd 1-run; 1: inside an odd run of 1s; 2: odd 1-run then an even 0-run;
        # 3: odd 1-run then an odd 0-run (rejected unless another 0 comes)
        3: ([[0, 1], [3, 0], [3, 1], [2, N]], {0, 1, 2}),
        4: ([[1, 0], [2, 0], [N, 0]], {0, 1, 2}),  # trailing zeros 0, 1, 2
        5: ([[1, 2], [0, 3], [3, 0], [2, 1]], {0}),  # (zeros mod 2) + 2 (ones mod 2)
        6: ([[1, 2], [2, 0], [0, 1]], {0}),  # (#0 - #1) mod 3
        7: ([[0, 1], [2, 1], [2, 3], [N, 3]], {0, 1, 2, 3}),  # 0* 1* 0* 1*
    }
    if n not in tables:
        raise ConfigError(f"Tomita grammars are numbered 1..7, got {n}")
    delta, accepting = tables[n]
    return DFALanguage(f"tomita-{n}", "01", delta, accepting)


def parity() -> DFALanguage:
    """Strings over ``01`` with an even number of 1s."""
    return DFALanguage("parity", "01", [[0, 1], [1, 0]], {0})


def aa_star() -> DFALanguage:
    """``(aa)*``: even-length strings of ``a``."""
    return DFALanguage("aa-star", "a", [[1], [0]], {0})


def abab_star() -> DFALanguage:
    """``(abab)*``."""
    N = None
    return DFALanguage("abab-star", "ab", [[1, N], [N, 2], [3, N], [N, 0]], {0})


def bounded_dyck(n: int) -> DFALanguage:
    """D_n: balanced strings over ``ab`` of depth at most ``n`` (state = depth)."""
    if n < 1:
        raise ConfigError(f"bounded Dyck needs a depth of at least 1, got {n}")
    delta = [[d + 1 if d < n else None, d - 1 if d > 0 else None] for d in range(n + 1)]
    return DFALanguage(f"bounded-dyck-{n}", "ab", delta, {0})

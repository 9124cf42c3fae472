"""Counter languages: Dyck-n with a stack, Shuffle-n and a^n b^n (c^n), each a small automaton.

- **Dyck-n**: balanced strings of ``n`` bracket pairs (``()``, ``[]``, ``{}``, ``<>``). Any opener
  is valid; the closer of the innermost open bracket when one is open; END when none is. Dyck-1
  is the counter language of the paper; Dyck-2 needs a stack. The state is the depth and the
  stack of open bracket types (as wide as the longest string asked for).
- **Shuffle-n**: the shuffle of ``n`` Dyck-1 languages (pair ``i`` balanced on its own, pairs
  interleaved freely). Any opener is valid; closer ``i`` when pair ``i`` has one open; END when
  every count is 0. The state is the ``n`` counts.
- **a^n b^n** and **a^n b^n c^n** (n >= 1): ``k`` letters in blocks of equal length. The state is
  the block being read and the counts of the first block and of the current one.

``can_finish`` is a closed form for each: a Dyck or Shuffle prefix with ``d`` brackets open can
end in exactly ``r`` more symbols when ``d <= r`` and ``r - d`` is even; a^n b^n c^n is spelled out
in ``CountingLanguage.can_finish``.
"""

from __future__ import annotations

import torch

from training.errors import ConfigError
from training.tasks.formal_languages.language import Language

BRACKETS = "()[]{}<>"


class Dyck(Language):
    """Dyck-n: symbol ``2i`` opens pair ``i``, ``2i + 1`` closes it. State: [depth, stack...]."""

    def __init__(self, n: int, max_depth: int = 512):
        if not 1 <= n <= len(BRACKETS) // 2:
            raise ConfigError(f"Dyck-n needs 1 <= n <= {len(BRACKETS) // 2} bracket pairs, got {n}")
        self.name, self.symbols, self.n, self.max_depth = f"dyck-{n}", BRACKETS[: 2 * n], n, max_depth

    def start(self, batch, device="cpu"):
        return torch.zeros(batch, 1 + self.max_depth, dtype=torch.long, device=device)

    def step(self, state, symbol):
        depth = state[:, 0]
        opens = symbol % 2 == 0
        out = state.clone()
        rows = torch.arange(state.shape[0], device=state.device)
        # push: the new top is stored at column depth + 1 (column 0 is the depth itself)
        top = (depth + 1).clamp(max=self.max_depth)
        out[rows, top] = torch.where(opens, symbol // 2, state[rows, top])
        out[:, 0] = torch.where(opens, depth + 1, (depth - 1).clamp(min=0))
        return out

    def valid(self, state):
        depth = state[:, 0]
        b = state.shape[0]
        top = state[torch.arange(b, device=state.device), depth.clamp(min=1)]  # type of the innermost open bracket
        out = torch.zeros(b, 2 * self.n + 1, dtype=torch.bool, device=state.device)
        out[:, 0 : 2 * self.n : 2] = True
        closers = torch.arange(self.n, device=state.device)[None] == top[:, None]
        out[:, 1 : 2 * self.n : 2] = closers & (depth > 0)[:, None]
        out[:, -1] = depth == 0
        return out

    def can_finish(self, state, remaining):
        d = state[:, 0]
        return (d <= remaining) & ((remaining - d) % 2 == 0)


class Shuffle(Language):
    """Shuffle-n: ``n`` interleaved Dyck-1 pairs. State: the open count of each pair."""

    def __init__(self, n: int):
        if not 1 <= n <= len(BRACKETS) // 2:
            raise ConfigError(f"Shuffle-n needs 1 <= n <= {len(BRACKETS) // 2} bracket pairs, got {n}")
        self.name, self.symbols, self.n = f"shuffle-{n}", BRACKETS[: 2 * n], n

    def start(self, batch, device="cpu"):
        return torch.zeros(batch, self.n, dtype=torch.long, device=device)

    def step(self, state, symbol):
        hit = torch.arange(self.n, device=state.device)[None] == (symbol // 2)[:, None]
        sign = torch.where(symbol % 2 == 0, 1, -1)[:, None]
        return (state + hit * sign).clamp(min=0)

    def valid(self, state):
        b = state.shape[0]
        out = torch.zeros(b, 2 * self.n + 1, dtype=torch.bool, device=state.device)
        out[:, 0 : 2 * self.n : 2] = True
        out[:, 1 : 2 * self.n : 2] = state > 0
        out[:, -1] = (state == 0).all(-1)
        return out

    def can_finish(self, state, remaining):
        d = state.sum(-1)
        return (d <= remaining) & ((remaining - d) % 2 == 0)


class CountingLanguage(Language):
    """a^n b^n (k = 2) or a^n b^n c^n (k = 3), n >= 1. State: [block, first count, current count]."""

    def __init__(self, k: int):
        if k not in (2, 3):
            raise ConfigError(f"counting languages have 2 or 3 letters, got {k}")
        self.k = k
        self.symbols = "abc"[:k]
        self.name = "anbn" if k == 2 else "anbncn"

    def start(self, batch, device="cpu"):
        return torch.zeros(batch, 3, dtype=torch.long, device=device)

    def step(self, state, symbol):
        block, m, c = state.unbind(-1)
        same = symbol == block
        first = block == 0
        new_block = torch.where(same, block, symbol)
        new_c = torch.where(same, c + 1, torch.ones_like(c))
        new_m = torch.where(first & same, m + 1, m)
        return torch.stack([new_block, new_m, new_c], -1)

    def valid(self, state):
        block, m, c = state.unbind(-1)
        b = state.shape[0]
        out = torch.zeros(b, self.k + 1, dtype=torch.bool, device=state.device)
        rows = torch.arange(b, device=state.device)
        first = block == 0
        # the current letter again: always in the first block, while below m in the others
        out[rows, block] = first | (c < m)
        # the next letter: once the block is complete (the first block is complete once it has a letter)
        done = torch.where(first, m >= 1, c == m)
        nxt = (block + 1).clamp(max=self.k)  # column k is END for the last block
        out[rows, nxt] = out[rows, nxt] | done
        return out

    def can_finish(self, state, remaining):
        block, m, c = state.unbind(-1)
        r = remaining
        # first block with m letters so far: end with n >= max(m, 1) letters per block, so that
        # (n - m) + (k - 1) n = r, i.e. r + m divisible by k and (r + m) / k >= max(m, 1)
        n = (r + m) // self.k
        first_ok = ((r + m) % self.k == 0) & (n >= m.clamp(min=1))
        # a later block: the rest of it and every later block, exactly
        later_ok = r == (m - c) + (self.k - 1 - block) * m
        return torch.where(block == 0, first_ok, later_ok)

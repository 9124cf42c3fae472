"""The language registry: a name in a config (``formal.language``) to its automaton.

A new language is a small ``Language`` class or DFA table (``regular.py``, ``counter.py``) plus one
line here. Families take their number after a dash (``dyck-2``, ``tomita-3``); the rest take none.
"""

from __future__ import annotations

import re
from typing import Callable

from training.errors import ConfigError
from training.tasks.formal_languages.counter import CountingLanguage, Dyck, Shuffle
from training.tasks.formal_languages.language import Language
from training.tasks.formal_languages.regular import aa_star, abab_star, bounded_dyck, parity, tomita

FAMILIES: dict[str, Callable[[int, int], Language]] = {
    "dyck": lambda n, width: Dyck(n, max_depth=width),
    "shuffle": lambda n, width: Shuffle(n),
    "bounded-dyck": lambda n, width: bounded_dyck(n),
    "tomita": lambda n, width: tomita(n),
}
"""Families: name-N, built from N and the longest string the task will ask for."""

SINGLES: dict[str, Callable[[], Language]] = {
    "anbn": lambda: CountingLanguage(2),
    "anbncn": lambda: CountingLanguage(3),
    "parity": parity,
    "aa-star": aa_star,
    "abab-star": abab_star,
}

SUITE = (
    "dyck-1", "dyck-2", "shuffle-2", "anbn", "anbncn", "bounded-dyck-2", "bounded-dyck-4",
    "parity", "aa-star", "abab-star", *(f"tomita-{i}" for i in range(1, 8)),
)  # fmt: skip
"""The languages of the suite (``training/configs/formal_suite.json``), counter languages first."""


def known() -> str:
    return ", ".join([*(f"{f}-N" for f in FAMILIES), *SINGLES])


def make_language(name: str, max_len: int = 512) -> Language:
    """The language called ``name``; ``max_len`` is the longest string it must run on."""
    if not isinstance(name, str):
        raise ConfigError(f"formal.language must be a name ({known()}), got {name!r}")
    if name in SINGLES:
        return SINGLES[name]()
    m = re.fullmatch(r"([a-z-]+)-(\d+)", name)
    if m and m.group(1) in FAMILIES:
        return FAMILIES[m.group(1)](int(m.group(2)), max_len)
    raise ConfigError(f"formal.language must be one of {known()}, got {name!r}")

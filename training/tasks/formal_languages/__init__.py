"""Formal languages for valid-next-symbol prediction (Bhattamishra, Ahuja and Goyal, EMNLP 2020).

- ``language.py``: what a language gives (a batched automaton) and the word sampler and valid sets
  built on it, for every language alike;
- ``regular.py``: one DFA class and the tables of Tomita 1-7, Parity, (aa)*, (abab)*, bounded Dyck;
- ``counter.py``: Dyck-n (a stack), Shuffle-n and a^n b^n (c^n) (counters);
- ``languages.py``: the language registry (a name in a config to its automaton) and the suite;
- ``task.py``: the ``Task`` (config section ``formal``, kind ``formal_language``).
"""

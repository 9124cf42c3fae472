"""Formal languages: every language's valid sets against a brute-force recognizer, the word
sampler, the targets, the metrics on a planted model, and bad language parameters."""

import itertools
import re

import pytest
import torch

from commands.train import main as train_main
from training.errors import ConfigError
from training.tasks.formal_languages.language import feasible_lengths, sample_words, valid_sets
from training.tasks.formal_languages.languages import SUITE, make_language
from training.tasks.formal_languages.task import FormalLanguageConfig, FormalLanguageTask


def _dyck(pairs: str, max_depth: int | None = None):
    def rec(w):
        stack = []
        for c in w:
            i = pairs.index(c)
            if i % 2 == 0:
                stack.append(c)
                if max_depth is not None and len(stack) > max_depth:
                    return False
            elif not stack or pairs.index(stack.pop()) != i - 1:
                return False
        return not stack

    return rec


def _shuffle(pairs: str):
    return lambda w: all(_dyck(pairs[i : i + 2])("".join(c for c in w if c in pairs[i : i + 2])) for i in (0, 2))


def _blocks(letters: str):
    def rec(w):
        m = re.fullmatch("".join(f"({c}+)" for c in letters), w)
        return bool(m) and len({len(g) for g in m.groups()}) == 1

    return rec


def _tomita3(w):
    runs = [(c, len(list(g))) for c, g in itertools.groupby(w)]
    return not any(a == ("1", a[1]) and a[1] % 2 and b[0] == "0" and b[1] % 2 for a, b in zip(runs, runs[1:]))


RECOGNIZERS = {
    "dyck-1": _dyck("()"),
    "dyck-2": _dyck("()[]"),
    "shuffle-2": _shuffle("()[]"),
    "anbn": _blocks("ab"),
    "anbncn": _blocks("abc"),
    "bounded-dyck-2": _dyck("ab", max_depth=2),
    "bounded-dyck-4": _dyck("ab", max_depth=4),
    "parity": lambda w: w.count("1") % 2 == 0,
    "aa-star": lambda w: re.fullmatch("(aa)*", w) is not None,
    "abab-star": lambda w: re.fullmatch("(abab)*", w) is not None,
    "tomita-1": lambda w: re.fullmatch("1*", w) is not None,
    "tomita-2": lambda w: re.fullmatch("(10)*", w) is not None,
    "tomita-3": _tomita3,
    "tomita-4": lambda w: "000" not in w,
    "tomita-5": lambda w: w.count("0") % 2 == 0 and w.count("1") % 2 == 0,
    "tomita-6": lambda w: (w.count("0") - w.count("1")) % 3 == 0,
    "tomita-7": lambda w: re.fullmatch("0*1*0*1*", w) is not None,
}
# (longest string enumerated, longest prefix checked): every valid continuation of a prefix this
# short has a witness word within the enumerated length, for every language here
SIZES = {1: (12, 8), 2: (14, 6), 3: (9, 2), 4: (8, 3)}


def test_the_suite_has_the_languages_the_issue_asks_for():
    assert set(RECOGNIZERS) == set(SUITE)


@pytest.mark.parametrize("name", SUITE)
def test_valid_sets_match_a_brute_force_recognizer(name):
    """Enumerate every string up to length M, keep the words, and read off the valid next symbols
    of every short prefix: x is valid after w when wx is a prefix of some word, END when w is one."""
    lang = make_language(name, 64)
    rec = RECOGNIZERS[name]
    M, P = SIZES[lang.n_symbols]
    words = {"".join(s) for n in range(M + 1) for s in itertools.product(lang.symbols, repeat=n) if rec("".join(s))}
    prefixes = {w[:i] for w in words for i in range(len(w) + 1)}
    assert feasible_lengths(lang, 1, M) == sorted({len(w) for w in words if w})
    short = sorted(p for p in prefixes if len(p) <= P)
    ids = torch.full((len(short), P), -1)
    for r, p in enumerate(short):
        ids[r, : len(p)] = torch.tensor([lang.symbols.index(c) for c in p], dtype=torch.long)
    got = valid_sets(lang, ids)
    for r, p in enumerate(short):
        want = [p + x in prefixes for x in lang.symbols] + [p in words]
        assert got[r, len(p)].tolist() == want, (name, p)


@pytest.mark.parametrize("name", SUITE)
def test_sampled_words_are_words_of_the_asked_length(name):
    lang = make_language(name, 64)
    lengths = torch.tensor(feasible_lengths(lang, 1, 40)).repeat(4)
    words = sample_words(lang, lengths, torch.Generator().manual_seed(1))
    for row, n in zip(words.tolist(), lengths.tolist()):
        w = "".join(lang.symbols[i] for i in row if i >= 0)
        assert len(w) == n and RECOGNIZERS[name](w), (name, w)


def _task(**kw):
    cfg = FormalLanguageConfig(**{"train_max_len": 8, "train_words": 500, **kw})
    return FormalLanguageTask(cfg)


def test_exact_targets_sum_to_one_and_sampled_targets_average_to_them():
    task = _task(language="shuffle-2", target="sampled")
    exact = _task(language="shuffle-2", target="exact")
    g = torch.Generator().manual_seed(0)
    batch = task.sample_batch(4000, generator=g)
    live = batch.valid.any(-1)
    p = exact.loss_target(batch)
    assert torch.allclose(p[live].sum(-1), torch.ones(int(live.sum())))
    assert p[~live].abs().sum() == 0
    hot = task.loss_target(batch)
    assert torch.equal(hot.sum(-1), live.float())
    # the draws are uniform over the valid set: pool the positions of each valid-set size
    sizes = batch.valid.sum(-1)
    for k in (2, 3, 4):
        rows = sizes == k
        if int(rows.sum()) > 2000:
            freq = hot[rows].mean(0)
            assert torch.allclose(freq, p[rows].mean(0), atol=0.02), k


def test_a_uniform_model_scores_its_closed_form():
    """Logits all zero: every symbol gets 1/(k+1), so TV = 1 - |V|/(k+1), itr = 1 - |V|/(k+1),
    and the predicted set (everything) is right exactly where every symbol is valid."""

    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, tokens):
            return torch.zeros(*tokens.shape, 3) * self.w

    task = _task(language="parity", eval_max_len=12)
    model = Uniform()
    m = task.evaluate(model, n=16, seed=3)
    tokens, valid, lengths = task.eval_words(16, 3)
    for t in (1, 5, 12):
        rows = lengths >= t
        size = valid[rows, t].sum(-1).double()
        assert m.at(t)["tv"] == pytest.approx(float((1 - size / 3).mean()))
        assert m.at(t)["itr"] == pytest.approx(float((1 - size / 3).mean()))
        # parity: 0 and 1 are always valid, END when the prefix has an even number of 1s
        ones = (tokens[rows, 1 : t + 1] == 2).sum(-1)
        assert m.at(t)["pos_acc"] == pytest.approx(float((ones % 2 == 0).double().mean()))
    acc = task.word_accuracy(model, n=16, seed=3)
    assert set(acc) == set(range(1, 13))
    assert acc[1] == pytest.approx(float((tokens[lengths == 1, 1] == 1).double().mean()))


@pytest.mark.parametrize(
    "name, words",
    [
        ("dyck-0", "Dyck-n needs 1 <= n <= 4"),
        ("shuffle-9", "Shuffle-n needs 1 <= n <= 4"),
        ("tomita-8", "Tomita grammars are numbered 1..7"),
        ("bounded-dyck-0", "bounded Dyck needs a depth of at least 1"),
        ("klingon", "formal.language must be one of"),
        ("tomita", "formal.language must be one of"),
    ],
)
def test_bad_language_parameters_are_one_line(tmp_path, capsys, name, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        make_language(name)
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--quiet", "--set", "kind=formal_language", f"formal.language={name}"]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["formal.language=anbncn", "formal.train_max_len=2"], "anbncn has no word of length 1..2"),
        (["formal.train_min_len=0"], "formal.train_min_len must be in 1..train_max_len"),
        (["formal.eval_max_len=5", "formal.train_max_len=8"], "formal.eval_max_len must be in"),
        (["formal.target=soft"], "formal.target must be"),
        (["formal.train_words=0"], "formal.train_words must be positive"),
    ],
)
def test_bad_lengths_and_targets_are_one_line(tmp_path, capsys, overrides, words):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--quiet", "--set", "kind=formal_language", *overrides]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert list(tmp_path.iterdir()) == []

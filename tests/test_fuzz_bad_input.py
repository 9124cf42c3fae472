"""Property-based search for bad input that escapes the one-line rule (Hypothesis).

The property, for config overrides, search-space files and games files: the command either
succeeds, or exits 2 with exactly one line on stderr (``error: ...``, no traceback), and its output
folder is absent. The one outcome allowed to leave a folder behind is a run whose loss diverged:
that is training's answer, not bad input, and its last good checkpoint is kept on purpose.
Examples are few and tiny, so the whole file takes well under a minute; failures the fuzzer found
are pinned as ordinary tests in tests/test_bad_input.py.
"""

import json
import math
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from commands.train import main as train_main
from training.config import RunConfig
from training.errors import WorkbenchError
from training.experiments.sweep import load_space
from training.tasks.othello.data import generate_dataset

from .conftest import TINY

FAST = [
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.eval_sets=4",
    "train.final_eval_sets=4",
    "train.warmup_steps=1",
    "train.device=cpu",
]
FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=True
)


def _keys() -> list[str]:
    data = RunConfig().to_dict()
    data["othello"] = {"data": "x", "train_max_moves": 30, "val_games": 10}
    keys = [f"{section}.{k}" for section, body in data.items() if isinstance(body, dict) for k in body]
    return keys + ["kind", "model.d_modle", "nosection.x", "train", "", "task.v.x", ".", "model."]


KEYS = _keys()
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.5, 0.5, 1.5, 1e-9, 1e12, -1e12]
JSONISH = st.one_of(
    st.integers(-3, 40),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(-2, 50, allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "abc", "sampled", "exact", "LN", "rotary", "bema", "cuda", "cpu", "relu"]),
    st.lists(st.integers(-1, 3), max_size=3),
    st.just({"a": 1}),
)


def _text(value) -> str:
    """An override's right-hand side: JSON where JSON can say it, else Python's spelling (nan, inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    return json.dumps(value)


VALUES = st.one_of(JSONISH.map(_text), st.text(max_size=6), st.sampled_from(["1e400", "nan", "-", "=", "{", "[1,"]))
OVERRIDES = st.lists(
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), min_size=1, max_size=2
)


def _check(rc: int, err: str, out) -> None:
    lines = err.strip().splitlines()
    event("succeeded" if rc == 0 else "refused")  # shown by pytest --hypothesis-show-statistics
    if rc == 0:
        return
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    if "loss became" not in lines[0] and "became non-finite" not in lines[0]:
        assert not out.exists(), lines[0]


@settings(FUZZ, max_examples=40)
@given(overrides=OVERRIDES)
def test_train_with_fuzzed_overrides(overrides, tmp_path, capsys):
    out = tmp_path / uuid.uuid4().hex
    args = ["train", "--out", str(out), "--quiet"] + [a for o in TINY + overrides + FAST for a in ("--set", o)]
    rc = train_main(args)
    _check(rc, capsys.readouterr().err, out)
    if rc == 0:
        assert (out / "final_metrics.json").is_file()


@settings(FUZZ, max_examples=150)
@given(overrides=OVERRIDES, big=st.sampled_from([10**12, -(10**12), 2**63, 1e308, "1" * 30]))
def test_config_with_fuzzed_overrides_and_huge_numbers(overrides, big, capsys):
    # validation only (python -m training config): here even absurd sizes are safe to try
    key = overrides[0].split("=", 1)[0]
    rc = train_main(["config"] + [a for o in overrides + [f"{key}={big}"] for a in ("--set", o)])
    err = capsys.readouterr().err
    if rc != 0:
        assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:"), err


NUMBER = st.one_of(
    st.integers(-5, 100),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(-1, 1, allow_nan=False),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)
SPEC = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["loguniform", "uniform", "int", "gaussian", 3]), "low": NUMBER, "high": NUMBER}
    ),
    st.fixed_dictionaries({"type": st.just("choice"), "values": st.one_of(st.lists(JSONISH, max_size=3), NUMBER)}),
    NUMBER,
)
SPACE = st.fixed_dictionaries(
    {
        "n_trials": st.one_of(st.integers(-1, 3), NUMBER),
        "params": st.dictionaries(st.sampled_from(KEYS), SPEC, max_size=2),
    },
    optional={
        "seed": NUMBER,
        "fixed": st.lists(st.sampled_from(["train.steps=3", "task.v=1", "x"]), max_size=2),
        "base": st.sampled_from(["demo", "nope", "/no/where.json", 3]),
        "bogus": st.just(1),
    },
)


@settings(FUZZ, max_examples=120)
@given(space=st.one_of(SPACE, JSONISH))
def test_fuzzed_search_spaces(space, tmp_path, capsys):
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(space, allow_nan=True))
    try:
        checked = load_space(path)
    except WorkbenchError as e:
        assert "\n" not in str(e)
        out = tmp_path / uuid.uuid4().hex
        assert train_main(["sweep", "--space", str(path), "--out", str(out), "--quiet"]) == 2
        _check(2, capsys.readouterr().err, out)
        return
    assert checked["n_trials"] >= 1  # accepted: every bound and choice gives a valid run config


@pytest.fixture(scope="module")
def games_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("games")
    generate_dataset(d, 120, seed=0, chunk=120, workers=1, progress=False)
    return np.load(d / "games.npy")


MUTATIONS = st.sampled_from(
    [
        "none",
        "float32",
        "int64",
        "uint8",
        "drop column",
        "add column",
        "flat",
        "3d",
        "square 64",
        "square -2",
        "centre square",
        "swap moves",
        "pad then move",
        "truncate",
        "garbage",
        "empty",
    ]
)


@settings(FUZZ, max_examples=25)
@given(mutation=MUTATIONS, game=st.integers(0, 119), move=st.integers(0, 58))
def test_fuzzed_games_files(games_file, mutation, game, move, tmp_path, capsys):
    g = games_file.copy()
    data = tmp_path / uuid.uuid4().hex
    data.mkdir()
    file = data / "games.npy"
    if mutation in ("float32", "int64", "uint8"):
        g = g.astype(mutation)
    elif mutation == "drop column":
        g = g[:, :59]
    elif mutation == "add column":
        g = np.concatenate([g, g[:, :1]], 1)
    elif mutation == "flat":
        g = g.reshape(-1)
    elif mutation == "3d":
        g = g.reshape(2, 60, 60)
    elif mutation in ("square 64", "square -2", "centre square"):
        g[game, move] = {"square 64": 64, "square -2": -2, "centre square": 27}[mutation]
    elif mutation == "swap moves":
        g[game, [move, move + 1]] = g[game, [move + 1, move]]
    elif mutation == "pad then move":
        g[game, move] = -1
        g[game, move + 1] = 19
    np.save(file, g)
    if mutation == "truncate":
        file.write_bytes(file.read_bytes()[:200])
    elif mutation == "garbage":
        file.write_bytes(b"\x93NUMPY not really")
    elif mutation == "empty":
        file.write_bytes(b"")
    out = tmp_path / uuid.uuid4().hex
    args = ["othello", "--data", str(data), "--out", str(out), "--quiet"] + [
        a
        for o in [
            "model.n_layers=1",
            "model.d_model=16",
            "model.n_heads=2",
            "model.d_head=8",
            "model.d_mlp=32",
            "othello.val_games=20",
            "train.batch_size=8",
        ]
        + FAST
        for a in ("--set", o)
    ]
    rc = train_main(args)
    _check(rc, capsys.readouterr().err, out)

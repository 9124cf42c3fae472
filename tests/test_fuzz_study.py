"""Property-based search for bad input to the study and the report commands (Hypothesis).

The property is the one tests/test_fuzz_bad_input.py holds configs and search spaces to: a command
either succeeds, or exits 2 with exactly one line on stderr (``error: ...``, no traceback) and
leaves no output behind. Inputs fuzzed here:

- **study files**: a small valid study file with one to three keys replaced by arbitrary JSON
  (lists, dicts, special floats, wrong types, unknown names) or deleted; an accepted file must
  also give a valid run config for every arm of every config it draws (nothing fails later,
  deep inside training);
- **the state a study leaves** (study.json): truncated, keys removed or retyped, then read by
  ``study --resume`` and ``study-report``;
- **the command lines** of study-report, sweep-report, report and eval: flags with arbitrary
  values on a real finished study, sweep and run.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from commands.interp import main as interp_main
from commands.train import main as train_main
from training.config import preset_path
from training.errors import WorkbenchError
from training.experiments.study import arm_config, arms, draw_configs, load_spec
from training.experiments.study.design import SPEC_KEYS

from .conftest import TINY
from .test_study import tiny_spec

FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=True
)
SLOW = settings(FUZZ, phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""For examples that run a command on a study: no shrinking (each try costs seconds)."""
SCALAR = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.5, 0.5, 1.5, 1e-9, 1e12, 2**64]),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "abc", "tv", "cal_tv", "in_range", "beyond", "ema", "bema", "t", "bootstrap", "baseline"]),
)
SETTING = st.sampled_from(
    ["train.lr=0.01", "model.n_heads=2", "train.steps=3", "task.v=1", "x", "=", "model.ln=LN", "train.seed=1"]
)
KEYWORDS = [
    "name",
    "mode",
    "decay",
    "warmup",
    "metric",
    "range",
    "max",
    "type",
    "low",
    "high",
    "values",
    "tv",
    "cal_tv",
    "norm_entropy",
    "baseline",
    "anneal",
    "fixed",
    "gpu",
    "train.lr",
    "model.n_heads",
]
JSON = st.recursive(
    SCALAR | SETTING,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYWORDS), inner, max_size=3),
    max_leaves=6,
)
STUDY_KEYS = sorted(SPEC_KEYS - {"note", "scale"}) + ["bogus"]
PLAUSIBLE = {
    "averagers": st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["ema", "x", ""]),
                "mode": st.sampled_from(["ema", "bema", "extrapolation", "no"]),
            },
            optional={"decay": SCALAR, "warmup": SCALAR},
        ),
        max_size=3,
    ),
    "region": st.fixed_dictionaries(
        {"metric": SCALAR, "range": SCALAR, "max": SCALAR}, optional={"note": st.text(max_size=3)}
    ),
    "variants": st.dictionaries(st.sampled_from(["baseline", "anneal", "ln", ""]), st.lists(SETTING, max_size=2)),
    "deltas": st.dictionaries(st.sampled_from(["tv", "cal_tv", "norm_entropy", "itr", "nope"]), SCALAR, max_size=2),
    "params": st.dictionaries(
        st.sampled_from(["train.lr", "model.n_heads", "train.seed", "model.d_modle"]),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["loguniform", "choice", "int"]), "low": SCALAR, "high": SCALAR},
            optional={"values": st.lists(SCALAR, max_size=3)},
        ),
        max_size=2,
    ),
}
CHANGE = st.tuples(
    st.sampled_from(STUDY_KEYS),
    st.one_of(st.just("delete"), st.just("plausible"), st.just("any")),
    JSON,
)


def _apply(spec: dict, change, data) -> None:
    key, how, value = change
    if how == "delete":
        spec.pop(key, None)
    elif how == "plausible" and key in PLAUSIBLE:
        spec[key] = data.draw(PLAUSIBLE[key])
    else:
        spec[key] = value


def _one_line(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def base_spec(tmp_path_factory) -> dict:
    return json.loads(tiny_spec(tmp_path_factory.mktemp("spec"), steps=10, n_configs=2).read_text())


@settings(FUZZ, max_examples=150)
@given(changes=st.lists(CHANGE, min_size=1, max_size=3), data=st.data())
def test_fuzzed_study_files(base_spec, changes, data, tmp_path, capsys):
    spec = json.loads(json.dumps(base_spec))
    for change in changes:
        _apply(spec, change, data)
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(spec, allow_nan=True))
    try:
        checked = load_spec(path)
    except WorkbenchError as e:
        event("refused")
        assert "\n" not in str(e)
        out = tmp_path / uuid.uuid4().hex
        _one_line(train_main(["study", "--spec", str(path), "--out", str(out), "--quiet"]), capsys.readouterr().err)
        assert not out.exists()
        return
    event("accepted")
    for values in draw_configs(checked):  # every arm of every config is a valid run config
        for arm in arms(checked):
            arm_config(checked, values, arm)


# -- a finished study, its state, and the report command lines --------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny study, a finished run and a finished sweep, made once."""
    root = tmp_path_factory.mktemp("finished")
    spec = tiny_spec(root, steps=20, n_configs=3)
    assert train_main(["study", "--out", str(root / "st"), "--spec", str(spec), "--quiet", "--workers", "1"]) == 0
    assert train_main(["train", "--out", str(root / "run"), "--quiet"] + [a for o in TINY for a in ("--set", o)]) == 0
    space = json.loads(preset_path("sweep_quick").read_text())
    space["n_trials"] = 2
    space["fixed"] = [f.replace("=150", "=20") for f in space["fixed"]]
    (root / "space.json").write_text(json.dumps(space))
    assert train_main(["sweep", "--out", str(root / "sw"), "--space", str(root / "space.json"), "--quiet"]) == 0
    return root


STATE_MUTATIONS = st.sampled_from(
    ["truncate", "empty", "not json", "list", "drop key", "retype key", "null key", "absolute storage", "bad storage"]
)


@settings(SLOW, max_examples=30)
@given(mutation=STATE_MUTATIONS, key=st.sampled_from(["spec", "configs", "storage", "study_name", "arms"]), v=JSON)
def test_fuzzed_study_state(finished, mutation, key, v, tmp_path, capsys):
    study = tmp_path / uuid.uuid4().hex
    shutil.copytree(finished / "st", study, ignore=shutil.ignore_patterns("report"))
    meta_path = study / "study.json"
    text = meta_path.read_text()
    meta = json.loads(text)
    if mutation == "truncate":
        text = text[: len(text) // 2]
    elif mutation == "empty":
        text = ""
    elif mutation == "not json":
        text = "{'spec': 1"
    elif mutation == "list":
        text = json.dumps([meta])
    else:
        if mutation == "drop key":
            meta.pop(key)
        elif mutation == "retype key":
            meta[key] = v
        elif mutation == "null key":
            meta[key] = None
        elif mutation == "absolute storage":
            meta["storage"] = f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}"
        else:
            meta["storage"] = "postgresql://u@127.0.0.1:1/none"
        text = json.dumps(meta, allow_nan=True)
    meta_path.write_text(text)
    before = sorted(p.relative_to(study) for p in study.rglob("*"))
    for args in (
        ["study-report", str(study), "--boot", "100"],
        ["study-report", str(study), "--out", str(tmp_path / "r"), "--boot", "100"],
    ):
        rc = interp_main(args)
        err = capsys.readouterr().err
        event(f"report {'ok' if rc == 0 else 'refused'}")
        if rc != 0:
            _one_line(rc, err)
            assert not (tmp_path / "r").exists()
    rc = train_main(["study", "--resume", str(study), "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    event(f"resume {'ok' if rc == 0 else 'refused'}")
    if rc != 0:
        _one_line(rc, err)
        # nothing of the study was lost or added (a report folder may have been written above)
        after = sorted(p.relative_to(study) for p in study.rglob("*") if "report" not in p.parts)
        assert after == [p for p in before if "report" not in p.parts]


FLAG_VALUES = st.one_of(
    st.sampled_from(
        ["0", "-1", "99", "100", "1e9", "nan", "", "x", "n_heads", "model.n_heads", ",", "train.lr,x", "raw", "tv,itr"]
    ),
    st.text(max_size=4),
)
COMMANDS = {
    "study-report": ("st", ["--boot", "--strata", "--json", "--out", "--bogus"]),
    "report": ("run", ["--sets", "--seed", "--out", "--threads", "--bogus"]),
    "eval": ("run", ["--weights", "--sets", "--seed", "--metrics", "--json", "--calibrated", "--dispersion", "-x"]),
    "sweep-report": ("sw", ["--out", "--bogus"]),
}
SWITCHES = {"--calibrated", "--dispersion", "--quiet"}


@settings(SLOW, max_examples=60)
@given(
    command=st.sampled_from(sorted(COMMANDS)),
    flags=st.lists(st.tuples(st.integers(0, 7), FLAG_VALUES), min_size=1, max_size=3),
)
def test_fuzzed_report_command_lines(finished, command, flags, tmp_path, capsys):
    folder, names = COMMANDS[command]
    args = [command, str(finished / folder)]
    for i, value in flags:
        flag = names[i % len(names)]
        if flag in SWITCHES:
            args.append(flag)
            continue
        if flag in ("--json", "--out"):  # a path: inside tmp_path, or one that cannot be written
            value = (
                str(tmp_path / value) if value and "\0" not in value and value not in (".", "..") else "/proc/nope/x"
            )
        args += [flag, value]
    args += {"study-report": ["--boot", "100"], "report": ["--sets", "16"], "eval": ["--sets", "16"]}.get(command, [])
    try:
        rc = interp_main(args)
    except SystemExit as e:  # argparse's own usage error: exit 2 and one line
        assert e.code == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and ": error: " in lines[0], err
        event(f"{command} usage")
        return
    event(f"{command} {'ok' if rc == 0 else 'refused'}")
    if rc != 0:
        _one_line(rc, capsys.readouterr().err)

"""Bad input: one line on stderr naming the problem, exit status 2, no traceback, nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from commands.interp import main as interp_main
from commands.train import main as train_main
from training.config import load_config
from training.errors import ConfigError

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["task.v=1"], "task.v must be at least 2"),
        (["task.train_max_len=8"], "train_max_len must be below v=8"),
        (["model.n_ctx=5"], "evaluation length 7 needs a context of 7"),
        (["task.eval_max_len=9"], "eval_max_len"),
        (["model.attn_dropout=1.0"], "model.attn_dropout must be in [0, 1)"),
        (["model.resid_dropout=-0.1"], "model.resid_dropout"),
        (["train.lr=0"], "train.lr must be positive"),
        (["train.lr=-1e-3"], "train.lr must be positive"),
        (["train.steps=0"], "train.steps must be positive"),
        (["averaging.mode=swa"], "averaging.mode must be one of"),
        (["averaging.mode=bema", "averaging.kappa=-1"], "averaging.kappa must be in [0, 1]"),
        (["averaging.mode=bema", "averaging.eta=2"], "averaging.eta must be in [0, 1]"),
        (["model.d_modle=3"], "unknown config key 'model.d_modle'"),
        (["nosection.x=3"], "unknown config key 'nosection.x'"),
        (["train.steps=ten"], "train.steps must be an integer"),
        (["train.compile_mode=fast"], "train.compile_mode must be one of default, reduce-overhead"),
    ],
)
def test_bad_config_one_line_exit_2_nothing_written(tmp_path, capsys, overrides, words):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--quiet"]
    for o in TINY + overrides:
        args += ["--set", o]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_key_in_config_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"train": {"stepz": 3}}))
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        load_config(f)
    f.write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")


def test_existing_run_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    args = ["train", "--out", str(out), "--quiet"] + [x for o in TINY for x in ("--set", o)]
    assert train_main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "config.json").read_text() == "{}"


def test_missing_and_corrupt_runs_on_the_command_line(tmp_path, capsys):
    assert train_main(["resume", str(tmp_path / "missing")]) == 2
    assert interp_main(["eval", str(tmp_path / "missing")]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    assert interp_main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_real_process_prints_no_traceback(tmp_path):
    """The module entry point itself (not just main()) keeps errors to one line."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "training", "train", "--out", str(out), "--set", "task.v=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: task.v must be at least 2, got 1"
    assert not out.exists()
    usage = subprocess.run(
        [sys.executable, "-m", "interp", "eval"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1


def test_help_works(capsys):
    for main in (train_main, interp_main):
        with pytest.raises(SystemExit) as e:
            main(["--help"])
        assert e.value.code == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["train", "--out", "RUN"], ["demo", "--out", "RUN"], ["othello", "--data", "D", "--out", "RUN"]]
)
def test_training_commands_run_at_their_threads_and_put_them_back(tmp_path, monkeypatch, capsys, argv):
    """Every command that trains or probes takes --threads (default 1), holds it while it runs and
    restores the caller's count after; 0 is a one-line error that writes nothing."""
    import torch

    import commands.train as ct

    argv = [a.replace("RUN", str(tmp_path / "run")).replace("D", str(tmp_path / "d")) for a in argv]
    seen = []
    for name in ("cmd_train", "cmd_demo", "cmd_othello"):
        monkeypatch.setattr(ct, name, lambda args: seen.append(torch.get_num_threads()) or 0)
    before = torch.get_num_threads()
    assert train_main(argv) == 0 and train_main(argv + ["--threads", "2"]) == 0
    assert seen == [1, 2] and torch.get_num_threads() == before
    assert train_main(argv + ["--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --threads must be positive, got 0\n" and not (tmp_path / "run").exists()


def test_probing_commands_take_threads():
    from commands.interp import build_parser

    for cmd in (["eval", "R"], ["report", "R"], ["othello-report", "R"], ["dim-scan", "--out", "O"]):
        assert build_parser().parse_args(cmd + ["--threads", "3"]).torch_threads == 3
        assert build_parser().parse_args(cmd).torch_threads == 1


def test_ctrl_c_names_the_actual_run_folder(tmp_path, monkeypatch, capsys):
    import commands.train as ct

    def interrupted_train(args):
        raise KeyboardInterrupt

    def interrupted_resume(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ct, "cmd_train", interrupted_train)
    monkeypatch.setattr(ct, "cmd_resume", interrupted_resume)
    assert train_main(["train", "--out", str(tmp_path / "r")]) == 130
    assert f"resume with: python -m training resume {tmp_path / 'r'}" in capsys.readouterr().err
    assert train_main(["resume", str(tmp_path / "q")]) == 130
    assert f"python -m training resume {tmp_path / 'q'}" in capsys.readouterr().err


def test_one_set_takes_several_values_as_the_synopsis_says(capsys):
    assert train_main(["config", "--set", "train.lr=0.01", "train.steps=7", "--set", "model.d_model=48"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["train"]["lr"], cfg["train"]["steps"], cfg["model"]["d_model"]) == (0.01, 7, 48)


def test_train_takes_a_preset(tmp_path, capsys, monkeypatch):
    """train --preset starts from a shipped config (the rest as --set says); with --config too it
    is a one-line error that writes nothing."""
    import commands.train as ct
    from training.config import preset_path

    monkeypatch.setattr(ct, "_train", lambda cfg, run_dir, quiet: 0)  # the config is what is checked
    assert train_main(["train", "--preset", "demo", "--set", "train.steps=5", "--out", str(tmp_path / "r")]) == 0
    written = load_config(tmp_path / "r" / "config.json").to_dict()
    demo = load_config(preset_path("demo"))
    want = demo.to_dict()
    want["train"]["steps"] = 5
    assert written == want and written != load_config(None, ["train.steps=5"]).to_dict()  # not the defaults
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(demo.to_dict()))
    assert train_main(["train", "--preset", "demo", "--config", str(cfg), "--out", str(tmp_path / "q")]) == 2
    assert capsys.readouterr().err == "error: give --config or --preset, not both\n"
    assert not (tmp_path / "q").exists()

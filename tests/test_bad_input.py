"""The nine bad inputs that used to crash, run on silently wrong or never stop. Each now gives one
line naming the problem, a non-zero exit (2) from the command line, and writes nothing."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from commands.interp import main as interp_main
from commands.train import main as train_main
from interp.othello.board_probe import fit_board_probe, membership_probe, probe_accuracy
from interp.othello.intervention import intervene
from interp.set_complement.theory import balanced_model
from training import runs
from training.config import preset_path
from training.errors import InputError, WorkbenchError
from training.models import ModelConfig, build_model
from training.tasks.othello.engine import random_games
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask
from training.trainer import train

from .conftest import TINY, tiny_config


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "Traceback" not in err[0], err
    return err[0]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished_run(tmp_path):
    cfg = tiny_config("averaging.mode=bema", "train.steps=20", "train.eval_every=20", "train.checkpoint_every=20")
    run = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run, progress=False)
    return run


# 1. resume with a truncated weights file
def test_resume_refuses_a_truncated_weights_file(finished_run, capsys):
    raw = finished_run / runs.WEIGHTS["raw"]
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    before = _snapshot(finished_run)
    assert train_main(["resume", str(finished_run), "--quiet"]) == 2
    assert "weights_raw.safetensors is corrupt or truncated" in _one_line(capsys)
    assert _snapshot(finished_run) == before


# 2. resume with a weights file of another width
def test_resume_refuses_weights_of_another_model(finished_run, tmp_path, capsys):
    other_cfg = tiny_config(
        "model.d_model=8", "model.d_head=4", "train.steps=10", "train.eval_every=10", "train.checkpoint_every=10"
    )
    other = runs.create_run_dir(tmp_path / "other", other_cfg)
    train(other_cfg, other, progress=False)
    shutil.copy(other / runs.WEIGHTS["raw"], finished_run / runs.WEIGHTS["raw"])
    before = _snapshot(finished_run)
    assert train_main(["resume", str(finished_run), "--quiet"]) == 2
    assert "does not match the run's model" in _one_line(capsys)
    assert _snapshot(finished_run) == before


def test_resume_rewrites_weights_a_kill_left_one_step_behind(finished_run):
    # trainer_state.pt is the commit point; weights of the step before (a kill between the two
    # writes) are rewritten from it instead of refusing to resume.
    raw = finished_run / runs.WEIGHTS["raw"]
    good = load_file(str(raw))
    save_file({k: v + 1 for k, v in good.items()}, str(raw), metadata={"step": "10"})
    assert train_main(["resume", str(finished_run), "--quiet"]) == 0
    assert runs.weights_step(raw) == 20
    assert all(torch.equal(load_file(str(raw))[k], v) for k, v in good.items())


# 3. an output path under a regular file
def test_out_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    args = ["train", "--out", str(tmp_path / "afile" / "sub"), "--quiet"] + [a for o in TINY for a in ("--set", o)]
    assert train_main(args) == 2
    assert "afile is a file, not a folder" in _one_line(capsys)  # names the argument and the file in the way
    assert (tmp_path / "afile").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# 4. tokens outside the vocabulary
@pytest.mark.parametrize("token, shown", [(61, "token 61"), (-2, "token -2")])
def test_token_outside_the_vocabulary_is_named(token, shown):
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, positional="learned")
    model = build_model(cfg, 61, 61, 59).eval()
    tokens = torch.tensor([[1, 5, 9], [3, token, 4]])
    with pytest.raises(InputError, match=rf"{shown} at index \[1, 1\] is outside the vocabulary 0\.\.60"):
        model(tokens)
    with pytest.raises(InputError):
        model.run_with_cache(tokens)  # what every probe and patching run goes through
    assert model(torch.tensor([[0, 60]])).shape == (1, 2, 61)


def test_token_check_on_a_loaded_run(finished_run):
    model = runs.load_run(finished_run, "raw")
    with pytest.raises(InputError, match="token -1"):
        model(torch.tensor([[1, -1]]))


# 5. a search space with low > high
def test_search_space_with_low_above_high_is_refused_before_anything_is_written(tmp_path, capsys):
    space = json.loads(preset_path("sweep_quick").read_text())
    space["params"]["train.lr"] = {"type": "loguniform", "low": 0.01, "high": 0.001}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    assert train_main(["sweep", "--space", str(path), "--out", str(tmp_path / "sw")]) == 2
    assert "params.train.lr has low 0.01 above high 0.001" in _one_line(capsys)
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"type": "loguniform", "low": 0.0, "high": 0.1}, "bounds must be positive"),
        ({"type": "uniform", "low": "a", "high": 1}, "needs finite numbers"),
        ({"type": "int", "low": 1.5, "high": 3}, "needs integer bounds"),
        ({"type": "choice", "values": []}, "non-empty list"),
        (
            {"type": "choice", "values": [0.1, 2.0]},
            "params.model.attn_dropout = 2.0: model.attn_dropout must be in [0, 1)",
        ),
        ({"type": "gaussian"}, "type must be loguniform, uniform, int or choice"),
    ],
)
def test_search_space_parameter_checks(tmp_path, spec, words):
    from training.experiments.sweep import load_space

    path = tmp_path / "space.json"
    path.write_text(json.dumps({"n_trials": 2, "params": {"model.attn_dropout": spec}}))
    with pytest.raises(WorkbenchError, match=None) as e:
        load_space(path)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_search_space_with_an_unknown_config_key(tmp_path):
    from training.experiments.sweep import load_space

    path = tmp_path / "space.json"
    path.write_text(json.dumps({"n_trials": 2, "params": {"train.lrr": {"type": "uniform", "low": 0.1, "high": 0.2}}}))
    with pytest.raises(WorkbenchError, match="unknown config key 'train.lrr'"):
        load_space(path)


# 6. a probe asked for a hook the model does not have
def test_probes_name_a_missing_hook():
    v = 12
    task = SetComplementTask(SetComplementConfig(v=v, train_max_len=4))
    with pytest.raises(
        WorkbenchError, match=r"'blocks.5.hook_resid_post' is not a hook of this model \(1 layer: layer 0"
    ):
        membership_probe(balanced_model(v, 2.0, 5.0), task, sets=16, hook="blocks.5.hook_resid_post")
    games = random_games(60, np.random.default_rng(0))
    model = build_model(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, positional="learned"), 61, 61, 59)
    with pytest.raises(WorkbenchError, match="layers 0..1"):
        fit_board_probe(model, games, "relative", hooks=["blocks.2.hook_resid_post"])
    probe = fit_board_probe(model, games, "relative", hooks=["blocks.1.hook_resid_post"])
    one_layer = build_model(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, positional="learned"), 61, 61, 59)
    with pytest.raises(WorkbenchError, match="blocks.1.hook_resid_post"):
        probe_accuracy(one_layer, probe, games)
    with pytest.raises(WorkbenchError, match="the probe has no weights for 'blocks.0.hook_resid_post'"):
        intervene(model, probe, games, 10, "blocks.0.hook_resid_post")


# 7. a config file that is JSON but not an object
def test_config_file_holding_a_list(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text("[1, 2]")
    assert train_main(["train", "--out", str(tmp_path / "run"), "--config", str(f)]) == 2
    assert "a config must be a JSON object with sections, got list" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


# 8. a partial config file plus an override of a section it leaves out
def test_partial_config_file_with_an_override_of_a_missing_section(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text(
        json.dumps(
            {
                "train": {
                    "steps": 5,
                    "eval_every": 5,
                    "checkpoint_every": 5,
                    "final_eval_sets": 16,
                    "eval_sets": 16,
                    "device": "cpu",
                }
            }
        )
    )
    out = tmp_path / "run"
    assert (
        train_main(
            [
                "train",
                "--out",
                str(out),
                "--config",
                str(f),
                "--set",
                "task.v=8",
                "--set",
                "task.train_max_len=3",
                "--set",
                "model.d_model=8",
                "--set",
                "model.d_head=4",
                "--quiet",
            ]
        )
        == 0
    )
    cfg = runs.read_run_config(out)
    assert cfg.task.v == 8 and cfg.train.steps == 5 and cfg.model.d_model == 8


# 9. report on a run with v = 2: tests/test_report_cli.py::test_report_on_a_run_with_two_items
def test_report_with_two_items_exits_zero(tmp_path):
    cfg = tiny_config(
        "task.v=2", "task.train_max_len=1", "train.steps=5", "train.eval_every=5", "train.checkpoint_every=5"
    )
    run = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run, progress=False)
    assert interp_main(["report", str(run), "--sets", "8", "--quiet"]) == 0


# found by the fuzzer (tests/test_fuzz_bad_input.py): an activation TransformerLens does not know
# crashed with an AssertionError traceback after the run directory was made
def test_unknown_activation_is_refused_before_anything_is_written(tmp_path, capsys):
    args = ["train", "--out", str(tmp_path / "run"), "--quiet"] + [
        a for o in TINY + ["model.attn_only=false", "model.act_fn=xyz"] for a in ("--set", o)
    ]
    assert train_main(args) == 2
    assert "model.act_fn must be one of gelu" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_every_command_gives_one_line_for_a_path_it_cannot_make(finished_run, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cases = [
        (train_main, ["othello-data", "--games", "10", "--out", str(blocker / "data"), "--quiet"]),
        (interp_main, ["eval", str(finished_run), "--sets", "8", "--json", str(blocker / "x.json")]),
        (interp_main, ["report", str(finished_run), "--sets", "8", "--out", str(blocker / "rep"), "--quiet"]),
        (train_main, ["sweep", "--quick", "--out", str(blocker / "sw"), "--quiet"]),
    ]
    for main, args in cases:
        assert main(args) == 2, args
        line = _one_line(capsys)
        assert "afile" in line, line
    assert blocker.read_text() == "x"


def test_sweep_with_no_workers_writes_nothing(tmp_path, capsys):
    assert train_main(["sweep", "--quick", "--out", str(tmp_path / "sw"), "--workers", "0"]) == 2
    assert "--workers must be positive" in _one_line(capsys)
    assert not (tmp_path / "sw").exists()


def test_study_with_no_threads_writes_nothing(tmp_path, capsys):
    assert train_main(["study", "--quick", "--out", str(tmp_path / "st"), "--threads", "0"]) == 2
    assert "--threads must be positive" in _one_line(capsys)
    assert not (tmp_path / "st").exists()


def test_an_illegal_held_out_game_is_named_before_training(tmp_path):
    # load_games replays only the first 10,000 games of a file; the held-out games sit at its end
    from training.tasks.othello.data import generate_dataset
    from training.tasks.othello.task import OthelloConfig, OthelloTask

    data = tmp_path / "data"
    generate_dataset(data, 300, seed=0, chunk=300, workers=1, progress=False)
    games = np.load(data / "games.npy")
    games[-1, [10, 11]] = games[-1, [11, 10]]
    with pytest.raises(WorkbenchError, match="held-out games: game 49: move"):
        OthelloTask(OthelloConfig(data=str(data), val_games=50), games=games)  # as if past the replayed rows

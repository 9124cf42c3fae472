"""Bad input on the newer surfaces (issue 27), one test per class: corrupt state files, values
that passed validation and failed deep inside, outputs checked after work was done, silent
wrap-arounds, and obscure errors from the Python API. Each: one line, exit 2, nothing written."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from commands.interp import main as interp_main
from commands.train import main as train_main
from interp.core.position_paths import position_qk
from interp.othello.board_probe import LinearProbe, probe_accuracy
from interp.set_complement.displacement import decompose_logits
from interp.set_complement.interventions import evaluate_interventions
from training import runs
from training.errors import WorkbenchError
from training.experiments.sweep import MAX_SEED

from .conftest import TINY, small_othello_model, tiny_config

TINY_STUDY_FIXED = ["train.steps=20", "train.eval_every=20", "train.checkpoint_every=20", "train.eval_sets=16",
                    "train.final_eval_sets=16"]  # fmt: skip


def _one_line(capsys, words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A finished two-config study of the quick kind, made once."""
    root = tmp_path_factory.mktemp("study")
    spec = json.loads(Path("training/configs/study_quick.json").read_text())
    spec.update(n_configs=2, seeds=[0], dropouts=[0.0], targets=["exact"])
    spec["fixed"] = spec.get("fixed", []) + TINY_STUDY_FIXED
    (root / "spec.json").write_text(json.dumps(spec))
    assert train_main(["study", "--spec", str(root / "spec.json"), "--out", str(root / "st"), "--workers", "1",
                       "--quiet"]) == 0  # fmt: skip
    return root / "st"


@pytest.mark.parametrize(
    "state, words",
    [
        (lambda good: good[:40], "study.json is corrupt (not valid JSON"),
        (lambda good: json.dumps({"spec": {}}), "study.json is corrupt (it lacks 'configs')"),
        (lambda good: "[1, 2]", "study.json is corrupt (a JSON object expected)"),
    ],
)
def test_corrupt_state_files_are_one_line_on_resume_and_report(finished_study, tmp_path, capsys, state, words):
    copy = tmp_path / "st"
    shutil.copytree(finished_study, copy)
    (copy / "study.json").write_text(state((finished_study / "study.json").read_text()))
    assert train_main(["study", "--resume", str(copy), "--quiet"]) == 2
    _one_line(capsys, words)
    assert interp_main(["study-report", str(copy), "--out", str(tmp_path / "rep")]) == 2
    _one_line(capsys, words)
    assert not (tmp_path / "rep").exists()


def test_a_lost_database_is_one_line_and_never_recreated(finished_study, tmp_path, capsys):
    copy = tmp_path / "st"
    shutil.copytree(finished_study, copy)
    (copy / "study.db").unlink()
    assert interp_main(["study-report", str(copy), "--out", str(tmp_path / "rep")]) == 2
    _one_line(capsys, "has lost its database (study.db missing)")
    assert train_main(["study", "--resume", str(copy), "--quiet"]) == 2
    _one_line(capsys, "has lost its database")
    assert not (copy / "study.db").exists()
    sweep = tmp_path / "sw"
    sweep.mkdir()
    space = json.loads(Path("training/configs/sweep_quick.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps({"space": space, "storage": "study.db", "study_name": "x"}))
    assert interp_main(["sweep-report", str(sweep)]) == 2
    _one_line(capsys, "has lost its database")
    assert not (sweep / "study.db").exists()


def test_seeds_beyond_what_the_generators_take_are_refused_up_front(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["train", "--out", str(out), "--set", *TINY, f"train.seed={2**64 + 1}"]) == 2
    _one_line(capsys, "train.seed must be in 0..2^63-1")
    spec = json.loads(Path("training/configs/study_quick.json").read_text())
    (tmp_path / "s.json").write_text(json.dumps({**spec, "seeds": [2**63]}))
    assert train_main(["study", "--spec", str(tmp_path / "s.json"), "--out", str(out)]) == 2
    _one_line(capsys, "seeds must be a non-empty list of distinct integers in 0..2^63-1")
    space = json.loads(Path("training/configs/sweep_quick.json").read_text())
    (tmp_path / "w.json").write_text(json.dumps({**space, "seed": MAX_SEED + 1}))
    assert train_main(["sweep", "--space", str(tmp_path / "w.json"), "--out", str(out)]) == 2
    _one_line(capsys, f"seed must be in 0..{MAX_SEED} for a sweep")
    assert not out.exists()


def test_dim_scan_refuses_a_target_that_is_not_a_tv(tmp_path, capsys):
    assert interp_main(["dim-scan", "--out", str(tmp_path / "ds"), "--target-tv", "-0.1"]) == 2
    _one_line(capsys, "--target-tv must be in (0, 1]")
    assert not (tmp_path / "ds").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = runs.create_run_dir(tmp_path_factory.mktemp("r") / "run", tiny_config())
    from training.trainer import train

    train(tiny_config(), run, progress=False)
    return run


@pytest.mark.parametrize(
    "make, flag, words",
    [
        (lambda d: d.mkdir(), "--json", "is a folder; it needs a file name"),
        (lambda d: d.write_text("x"), "--json-under", "is a file, not a folder"),
    ],
)
def test_output_files_are_checked_before_any_work(trained_run, tmp_path, capsys, make, flag, words):
    target = tmp_path / "t"
    make(target)
    path = target / "x.json" if flag == "--json-under" else target
    assert interp_main(["eval", str(trained_run), "--sets", "4", "--json", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing computed and printed first
    assert len(captured.err.strip().splitlines()) == 1 and words in captured.err


def test_output_folders_must_not_be_files(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert train_main(["train", "--out", str(tmp_path / "afile"), "--set", *TINY]) == 2
    _one_line(capsys, "--out")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc, a file system nothing can be written in")
def test_an_unwritable_place_is_named_with_the_users_path(trained_run, capsys):
    assert interp_main(["eval", str(trained_run), "--sets", "4", "--json", "/proc/x.json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--json /proc/x.json: cannot write in /proc" in captured.err


def test_a_report_on_a_run_without_weights_makes_no_folder(tmp_path, capsys):
    run = runs.create_run_dir(tmp_path / "run", tiny_config())
    assert interp_main(["report", str(run)]) == 2
    _one_line(capsys, "has no raw weights yet")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_device_the_machine_lacks_is_refused_before_the_run_folder(tmp_path, capsys):
    assert train_main(["train", "--out", str(tmp_path / "run"), "--set", *TINY, "train.device=cuda:99"]) == 2
    _one_line(capsys, "CUDA is not available")
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_names_bad_positions_layers_hooks_and_widths(trained_run):
    model = runs.load_run(trained_run, "raw")
    tokens = torch.tensor([[1, 2, 3]])
    with pytest.raises(WorkbenchError, match="position 7 is outside an input of 3 positions"):
        decompose_logits(model, tokens, position=7)
    assert decompose_logits(model, tokens, position=-1).logits.shape == decompose_logits(model, tokens, 2).logits.shape
    with pytest.raises(WorkbenchError, match="hook of this model"):
        task = tiny_config().make_task()
        evaluate_interventions(model, task, {"x": [("blocks.3.hook_resid_post", lambda x, hook: x)]}, n=4)
    othello = small_othello_model()
    with pytest.raises(WorkbenchError, match=r"layer 5 is not in this model \(layers 0..1\)"):
        position_qk(othello, 5, 0)
    with pytest.raises(WorkbenchError, match=r"head 2 is not in layer 1 \(heads 0..1\)"):
        position_qk(othello, 1, 2)
    hook = "blocks.0.hook_resid_post"
    probe = LinearProbe({hook: torch.zeros(17, 64 * 3)}, 3, "relative", {"hooks": [hook]})
    with pytest.raises(WorkbenchError, match="reads d_model 16, this model has d_model 32"):
        probe_accuracy(othello, probe, np.zeros((2, 60), dtype=np.int8))


def test_a_database_server_that_never_answers_is_one_line_not_a_hang(tmp_path, capsys, monkeypatch):
    """A server that accepts the connection and then says nothing: the connection times out."""
    import socket
    import threading

    from training.experiments import runner

    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(4)], daemon=True).start()
    url = f"postgresql+psycopg://u:p@127.0.0.1:{server.getsockname()[1]}/db"
    try:
        assert train_main(["study", "--quick", "--storage", url, "--out", str(tmp_path / "st"), "--quiet"]) == 2
    finally:
        server.close()
    _one_line(capsys, "connection timeout expired")
    assert not (tmp_path / "st").exists()


def test_a_report_exports_the_arm_records_and_a_folder_of_records_reports_alone(finished_study, tmp_path, capsys):
    """study-report writes every arm record (records.json.gz); study.json beside that file, with
    no database (a committed study), gives the same report; a corrupt records file is one line."""
    from training.experiments.study import completed_records, open_study
    from training.experiments.study.records import read_records

    assert interp_main(["study-report", str(finished_study), "--out", str(tmp_path / "r1"), "--boot", "200"]) == 0
    records = read_records(tmp_path / "r1" / "records.json.gz")
    assert records == json.loads(json.dumps(completed_records(open_study(finished_study)[2])))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(finished_study / "study.json", alone)
    shutil.copy(tmp_path / "r1" / "records.json.gz", alone)
    assert interp_main(["study-report", str(alone), "--out", str(tmp_path / "r2"), "--boot", "200"]) == 0
    capsys.readouterr()
    one = json.loads((tmp_path / "r1" / "study_report.json").read_text())
    two = json.loads((tmp_path / "r2" / "study_report.json").read_text())
    assert [e["estimate"] for e in one["effects"]] == [e["estimate"] for e in two["effects"]]
    (alone / "records.json.gz").write_bytes(b"\x1f\x8b not gzip")
    assert interp_main(["study-report", str(alone), "--out", str(tmp_path / "r3")]) == 2
    _one_line(capsys, "is not a study's records file")
    assert not (tmp_path / "r3").exists()

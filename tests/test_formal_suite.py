"""The formal-language suite command: a tiny suite end to end, its resume, and bad suite files."""

import json

import numpy as np
import pytest

from commands.train import main as train_main
from training.experiments.study import with_steps

TINY_SUITE = {
    "base": "formal_base",
    "fixed": [
        "train.steps=30",
        "train.eval_every=30",
        "train.checkpoint_every=30",
        "formal.train_max_len=4",
        "formal.eval_max_len=8",
        "formal.train_words=64",
        "model.n_layers=1",
    ],
    "languages": ["dyck-1", "tomita-2"],
    "positional": ["none"],
    "seeds": [0],
    "word_eval": 4,
    "bins": [[1, 4], [5, 8]],
}


def _write(tmp_path, spec, name="suite.json"):
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def test_a_tiny_suite_runs_resumes_and_summarises_its_runs(tmp_path, capsys):
    spec = _write(tmp_path, TINY_SUITE)
    out = tmp_path / "out"
    assert train_main(["suite", "--out", str(out), "--spec", str(spec), "--workers", "1", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| dyck-1 |" in table and "| tomita-2 |" in table
    result = json.loads((out / "suite.json").read_text())
    assert result["failures"] == []
    for language in TINY_SUITE["languages"]:
        run = out / "runs" / language / "none-seed0"
        by_length = json.loads((run / "word_accuracy.json").read_text())["by_length"]
        # the bin means are the plain means of the per-length accuracies of the lengths with words
        for i, (lo, hi) in enumerate(TINY_SUITE["bins"]):
            want = np.mean([v for k, v in by_length.items() if lo <= int(k) <= hi])
            assert result["languages"][language]["none"]["word_acc"][i] == pytest.approx(want)
    assert (out / "suite_accuracy.png").is_file() and (out / "suite_table.md").is_file()
    # resuming trains nothing again: the weights stay as they were
    weights = out / "runs" / "dyck-1" / "none-seed0" / "weights_raw.safetensors"
    before = weights.stat().st_mtime_ns
    assert train_main(["suite", "--resume", str(out), "--workers", "1", "--quiet"]) == 0
    assert weights.stat().st_mtime_ns == before
    assert json.loads((out / "suite.json").read_text())["languages"] == result["languages"]
    # another suite into the same folder is refused
    other = _write(tmp_path, {**TINY_SUITE, "seeds": [1]}, "other.json")
    capsys.readouterr()
    assert train_main(["suite", "--out", str(out), "--spec", str(other), "--quiet"]) == 2
    assert "holds another suite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, words",
    [
        ({"languages": ["dyck-9"]}, "Dyck-n needs"),
        ({"languages": []}, "languages must be a non-empty list"),
        ({"positional": ["sinusoidal"]}, "positional must be among"),
        ({"seeds": [0, 0]}, "seeds lists a value twice"),
        ({"bins": [[5, 99]]}, "bins must be a list of [lo, hi] word lengths within 1..8"),
        ({"word_eval": 0}, "word_eval must be a positive integer"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"base": "demo"}, "the base config must be of kind 'formal_language'"),
    ],
)
def test_bad_suite_files_are_one_line_and_write_nothing(tmp_path, capsys, change, words):
    spec = _write(tmp_path, {**TINY_SUITE, **change})
    out = tmp_path / "out"
    assert train_main(["suite", "--out", str(out), "--spec", str(spec), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_ctrl_c_stops_the_workers_in_one_line_and_the_suite_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # 400 steps, not the tiny 30: at 30 a fast machine trained the other three languages between
    # the first word_accuracy.json and the signal, and the suite ended cleanly before Ctrl-C
    suite = with_steps(TINY_SUITE, 400)
    spec = _write(tmp_path, {**suite, "languages": ["dyck-1", "tomita-2", "parity", "anbn"]})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "training", "suite", "--out", str(out), "--spec", str(spec), "--workers", "1"]
    proc = subprocess.Popen([*cmd, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("runs/*/*/word_accuracy.json")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [err.strip()] and f"python -m training suite --resume {out}" in err
    done = len(list(out.glob("runs/*/*/word_accuracy.json")))
    assert 1 <= done < 4
    assert train_main(["suite", "--resume", str(out), "--workers", "1", "--quiet"]) == 0
    assert len(list(out.glob("runs/*/*/word_accuracy.json"))) == 4

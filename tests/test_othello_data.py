"""Dataset generation: determinism across workers, resume after interruption, dedup, bad files."""

import json

import numpy as np
import pytest

from commands.train import main
from training.errors import WorkbenchError
from training.tasks.othello.data import GAMES, META, PARTIAL, PROGRESS, _row_hash, generate_dataset, load_games
from training.tasks.othello.engine import replay


def test_deterministic_and_independent_of_workers(tmp_path):
    a = generate_dataset(tmp_path / "a", 2500, seed=7, chunk=1000, workers=1, progress=False)
    b = generate_dataset(tmp_path / "b", 2500, seed=7, chunk=1000, workers=2, progress=False)
    c = generate_dataset(tmp_path / "c", 2500, seed=8, chunk=1000, workers=1, progress=False)
    assert a["sha256"] == b["sha256"] != c["sha256"]
    games = load_games(tmp_path / "a")
    assert games.dtype == np.int8 and games.shape == (2500, 60)
    assert isinstance(games, np.memmap)
    replay(np.asarray(games))  # every game is legal
    meta = json.loads((tmp_path / "a" / META).read_text())
    assert meta["seed"] == 7 and meta["count"] == 2500
    assert not (tmp_path / "a" / PARTIAL).exists() and not (tmp_path / "a" / PROGRESS).exists()


def test_resume_after_interruption(tmp_path, monkeypatch):
    full = generate_dataset(tmp_path / "full", 3000, seed=3, chunk=1000, workers=1, progress=False)
    import training.tasks.othello.data as od

    real, calls = od._chunk, {"n": 0}

    def flaky(args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(od, "_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "part", 3000, seed=3, chunk=1000, workers=1, progress=False)
    assert not (tmp_path / "part" / GAMES).exists()
    assert json.loads((tmp_path / "part" / PROGRESS).read_text())["done"] == [0, 1]
    monkeypatch.setattr(od, "_chunk", real)
    resumed = generate_dataset(tmp_path / "part", 3000, seed=3, chunk=1000, workers=1, progress=False)
    assert resumed["sha256"] == full["sha256"]


def test_dedup_removes_repeats(tmp_path):
    rows = np.array([[19, 18, 17] + [-1] * 57, [19, 18, 17] + [-1] * 57, [19] + [-1] * 59], dtype=np.int8)
    assert _row_hash(rows, 1)[0] == _row_hash(rows, 1)[1] != _row_hash(rows, 1)[2]
    meta = generate_dataset(tmp_path / "d", 3000, seed=0, chunk=1000, workers=1, dedup=True, progress=False)
    games = load_games(tmp_path / "d")
    assert meta["count"] == games.shape[0] == 3000 - meta["duplicates_removed"]
    assert len({g.tobytes() for g in np.asarray(games)}) == games.shape[0]


def test_bad_files_and_arguments(tmp_path, capsys):
    with pytest.raises(WorkbenchError, match="not found"):
        load_games(tmp_path / "nothing")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(WorkbenchError, match="corrupt or truncated"):
        load_games(bad)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 59), dtype=np.int8))
    with pytest.raises(WorkbenchError, match=r"int8 \[N, 60\]"):
        load_games(wrong)
    illegal = tmp_path / "illegal.npy"
    np.save(illegal, np.array([[19, 19] + [-1] * 58], dtype=np.int8))
    with pytest.raises(WorkbenchError, match="game 0: move 1"):
        load_games(illegal)
    assert main(["othello-data", "--games", "0", "--out", str(tmp_path / "z")]) == 2
    generate_dataset(tmp_path / "e", 10, progress=False, workers=1)
    assert main(["othello-data", "--games", "10", "--out", str(tmp_path / "e"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already exists" in err[1]

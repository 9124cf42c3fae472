"""OthelloGPT on the foundation trainer: evaluation against an oracle, a tiny model learns legal
moves, the published-checkpoint converter, and one-line errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from commands.train import main
from training import runs
from training.config import load_config
from training.errors import CheckpointError
from training.models import ModelConfig, build_model
from training.tasks.othello.checkpoints import load_published_othello, othello_config
from training.tasks.othello.task import OthelloConfig, OthelloTask
from training.trainer import train

TINY = [
    "model.n_layers=2",
    "model.d_model=48",
    "model.n_heads=2",
    "model.d_head=24",
    "model.d_mlp=96",
    "othello.train_max_moves=20",
    "othello.val_games=200",
    "train.batch_size=32",
    "train.steps=400",
    "train.warmup_steps=20",
    "train.lr=3e-3",
    "train.eval_every=400",
    "train.checkpoint_every=400",
    "train.eval_sets=200",
    "train.final_eval_sets=200",
    "train.device=cpu",
]


@pytest.fixture
def data(othello_games):
    return othello_games


class Oracle(torch.nn.Module):
    """Puts uniform probability on the legal moves of every held-out prefix it is shown."""

    def __init__(self, task):
        super().__init__()
        tokens, legal = task.eval_data(task.cfg.val_games)
        self.lookup = {bytes(t.numpy().astype(np.int64)): lg for t, lg in zip(tokens, legal)}
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        masks = torch.stack([self.lookup[bytes(t.numpy().astype(np.int64))] for t in tokens])
        return torch.where(masks, 0.0, -1e9) + 0 * self.w


def test_evaluation_of_an_oracle_is_perfect(data):
    task = OthelloTask(OthelloConfig(data=str(data), val_games=200, train_max_moves=20))
    res = task.evaluate(Oracle(task), n=200, batch_size=64)
    assert res.lengths == list(range(1, 60)) and res.train_range == (1, 20)
    live = [i for i, v in enumerate(res.values["tv"])]  # every index has at least one live game here
    assert min(res.values["legal_top1"][i] for i in live[:55]) == 1.0
    assert max(res.values["itr"][i] for i in live[:55]) < 1e-6 and max(res.values["tv"][i] for i in live[:55]) < 1e-5


def test_batches_are_prefixes_of_training_games(data):
    task = OthelloTask(OthelloConfig(data=str(data), val_games=200, train_max_moves=10))
    b = task.sample_batch(16, generator=torch.Generator().manual_seed(0))
    assert b.tokens.shape == (16, 10) and torch.equal(b.tokens[:, 1:], b.targets[:, :-1])
    assert b.tokens.min() >= 1 and b.tokens.max() <= 60


def test_resident_batches_equal_file_batches(data):
    # The device-resident path (used on GPUs) must draw exactly the games the file path draws:
    # rows of the training part of games.npy, chosen by the same random indices, sorted.
    task = OthelloTask(OthelloConfig(data=str(data), val_games=200, train_max_moves=12))
    a = task.sample_batch(32, generator=torch.Generator().manual_seed(5), resident=False)
    b = task.sample_batch(32, generator=torch.Generator().manual_seed(5), resident=True)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets) and b.tokens.dtype == torch.int64
    games = np.load(Path(data) / "games.npy")
    idx = np.sort(torch.randint(0, games.shape[0] - 200, (32,), generator=torch.Generator().manual_seed(5)).numpy())
    lookup = {sq: tok for tok, sq in enumerate([s for s in range(64) if s not in (27, 28, 35, 36)], start=1)}
    expected = [[lookup[int(sq)] for sq in games[i, :13]] for i in idx]  # early moves: never padding
    assert b.tokens.tolist() == [row[:12] for row in expected] and b.targets.tolist() == [row[1:] for row in expected]


def test_tiny_model_learns_legal_moves(data, tmp_path):
    cfg = othello_config("cpu", data, TINY)
    run_dir = runs.create_run_dir(tmp_path / "run", cfg)
    res = train(cfg, run_dir, progress=False)
    task = cfg.make_task()
    _, legal = task.eval_data(200)
    live = legal.any(-1)
    chance = ((legal.sum(-1).float() / 60) * live).sum(0) / live.sum(0).clamp(min=1)  # random legal rate
    chance_in = chance[:20].mean().item()
    learned_in = res.final["raw"].summary()["in_range"]["legal_top1"]
    assert learned_in > chance_in + 0.3, (learned_in, chance_in)
    assert isinstance(runs.load_run(run_dir), torch.nn.Module)
    from commands.interp import main as interp_main

    assert interp_main(["eval", str(run_dir), "--sets", "50"]) == 0
    assert interp_main(["report", str(run_dir)]) == 2  # set-complement only, says so in one line


def test_published_checkpoint_converter(tmp_path):
    small = ModelConfig(
        n_layers=2,
        d_model=32,
        n_heads=2,
        d_head=16,
        attn_only=False,
        d_mlp=64,
        normalization="LNPre",
        positional="learned",
    )
    src = build_model(small, 61, 61, 59, seed=3)
    with torch.no_grad():
        src.W_pos.normal_()
    path = tmp_path / "synthetic_model.pth"
    torch.save({k: v for k, v in src.state_dict().items() if not k.endswith(("mask", "IGNORE"))}, path)
    model = load_published_othello(path, small)
    x = torch.randint(1, 61, (2, 59))
    assert torch.equal(model(x), src.eval()(x))
    torch.save({"embed.W_E": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="does not match"):
        load_published_othello(tmp_path / "bad.pth", small)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_published_othello(tmp_path / "junk.pth", small)


def test_othello_config_errors(tmp_path, capsys):
    with pytest.raises(Exception, match="needs an 'othello' section"):
        load_config(None, ["kind=othello"])
    assert main(["othello", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert (
        main(["othello", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "othello.train_max_moves=60"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "games file not found" in err[0] and "train_max_moves" in err[1]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "what, names", [("averaging", {"none", "ema (avg)", "bema (avg)"}), ("positional", {"learned", "rotary", "no_pos"})]
)
def test_compare_command(data, tmp_path, capsys, what, names):
    import json

    args = ["othello-compare", "--data", str(data), "--out", str(tmp_path / "cmp"), "--what", what, "--quiet"]
    for o in TINY[:-7] + [
        "train.steps=10",
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "train.final_eval_sets=50",
        "train.eval_sets=50",
        "train.device=cpu",
        "train.warmup_steps=2",
    ]:
        args += ["--set", o]
    assert main(args) == 0
    results = json.loads((tmp_path / "cmp" / "compare_results.json").read_text())
    assert set(results) == names
    assert "LEGAL_TOP1" in capsys.readouterr().out
    assert (tmp_path / "cmp" / "compare.png").exists()
    if what == "averaging":  # 'none' is the EMA run's raw weights; no third run is trained
        assert not (tmp_path / "cmp" / "none").exists()
        assert results["none"] == json.loads((tmp_path / "cmp" / "ema" / "final_metrics.json").read_text())["raw"]


def test_othello_report(data, tmp_path, capsys):
    import json

    from commands.interp import main as interp_main

    over = TINY[:-7] + [
        "train.steps=20",
        "train.eval_every=20",
        "train.checkpoint_every=20",
        "train.final_eval_sets=50",
        "train.eval_sets=50",
        "train.device=cpu",
        "train.warmup_steps=2",
        "averaging.mode=bema",
    ]
    cfg = othello_config("cpu", data, over)
    run_dir = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run_dir, progress=False)
    out = tmp_path / "rep"
    assert (
        interp_main(
            ["othello-report", str(run_dir), "--out", str(out), "--probe-games", "100", "--eval-games", "60", "--quiet"]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["probe_accuracy_by_layer"]) == {
        "relative",
        "absolute",
        "side to move",
        "random model",
        "shuffled labels",
    }
    side_edits = [e for k, e in summary["interventions"].items() if k.endswith("side to move")]
    assert len(side_edits) == 2 and all(e["edit"] == "side to move" for e in side_edits)
    assert summary["weights"] == "averaged" and summary["train_max_moves"] == 20
    for name in summary["files"]:
        assert (out / name).stat().st_size > 1000, name
    assert interp_main(["othello-report", str(tmp_path / "missing")]) == 2

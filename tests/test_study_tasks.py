"""The paired study on tasks other than set complement: Othello's exact targets and calibration
against ground truth (the slow reference engine, a grid search, a model right up to temperature),
Othello ensembles against separate runs, and tiny studies run end to end on Othello and on a third
task registered by the test, through the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training import runs
from training.config import load_config, preset_path
from training.ensemble import train_ensemble
from training.experiments.study import completed_records, load_spec, open_study, run_study
from training.tasks import registry
from training.tasks.othello.engine import random_games, squares_to_tokens
from training.tasks.othello.reference import RefGame
from training.tasks.othello.task import OthelloBatch, OthelloConfig, OthelloTask, prefix_legal
from training.trainer import train

from .conftest import small_othello_model
from .test_task_registry import CopyConfig, CopyTask

OTHELLO_TINY = [
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_head=16",
    "model.d_mlp=64",
    "othello.train_max_moves=12",
    "othello.val_games=100",
    "train.batch_size=16",
    "train.steps=30",
    "train.warmup_steps=5",
    "train.lr=3e-3",
    "train.eval_every=30",
    "train.checkpoint_every=30",
    "train.eval_sets=50",
    "train.final_eval_sets=100",
    "train.device=cpu",
]


@pytest.fixture
def data(othello_games):
    return othello_games


def _games_with_passes(n_games: int = 400, seed: int = 1) -> np.ndarray:
    """Random games, the first of them ones where a side passed (the reference engine says so)."""
    games = random_games(n_games, np.random.default_rng(seed))

    def passes(moves) -> bool:
        g = RefGame()
        for sq in moves:
            if sq < 0:
                break
            mover = g.player
            g.play(int(sq))
            if not g.over and g.player == mover:
                return True
        return False

    with_pass = [i for i in range(n_games) if passes(games[i])]
    assert with_pass, "no game with a pass among the random games"
    order = with_pass[:5] + [i for i in range(n_games) if i not in with_pass[:5]]
    return games[order]


def test_exact_othello_targets_are_uniform_over_the_reference_engines_legal_moves():
    games = _games_with_passes()[:40]
    task = OthelloTask(OthelloConfig(target="exact", train_max_moves=59, val_games=4), games=games)
    tokens = torch.from_numpy(squares_to_tokens(games))
    batch = OthelloBatch(tokens=tokens[:, :59], targets=tokens[:, 1:60])
    target = task.loss_target(batch)
    assert target.shape == (40, 59, 61)
    checked = 0
    for g, moves in enumerate(games):
        ref = RefGame()
        for i in range(59):
            if moves[i] < 0:  # padding: the game was over, and so is every later prefix
                assert target[g, i:].abs().sum() == 0
                break
            ref.play(int(moves[i]))
            want = torch.zeros(61)
            legal = ref.legal() if not ref.over else []
            for sq in legal:
                want[int(squares_to_tokens(np.array([sq]))[0])] = 1.0 / len(legal)
            assert torch.allclose(target[g, i], want), (g, i)
            checked += 1
    assert checked > 1500
    # where a game is over there is no target, and the sampled target is padding there too
    sampled = OthelloTask(OthelloConfig(target="sampled", train_max_moves=59, val_games=4), games=games)
    assert torch.allclose(sampled.loss_target(batch).sum(-1), target.sum(-1))


def test_sampled_othello_targets_average_to_the_exact_ones():
    """Games grouped by their first move: the one-hot second move, averaged, is uniform over the 3
    legal replies (each reply's frequency within 0.05 of 1/3 over about 1,000 games: 3.5 sd)."""
    games = random_games(4000, np.random.default_rng(7))
    tokens = torch.from_numpy(squares_to_tokens(games))
    batch = OthelloBatch(tokens=tokens[:, :2], targets=tokens[:, 1:3])
    cfg = dict(train_max_moves=2, val_games=4)
    sampled = OthelloTask(OthelloConfig(target="sampled", **cfg), games=games).loss_target(batch)[:, 0]
    exact = OthelloTask(OthelloConfig(target="exact", **cfg), games=games).loss_target(batch)[:, 0]
    for first in tokens[:, 0].unique():
        rows = tokens[:, 0] == first
        assert torch.allclose(exact[rows], exact[rows][0].expand_as(exact[rows]))  # one prefix, one target
        assert (exact[rows][0] > 0).sum() == 3
        assert (sampled[rows].mean(0) - exact[rows][0]).abs().max() < 0.05


def test_othello_target_losses_match_their_definitions():
    games = random_games(30, np.random.default_rng(3))
    tokens = torch.from_numpy(squares_to_tokens(games))
    batch = OthelloBatch(tokens=tokens[:, :20], targets=tokens[:, 1:21])
    logits = torch.randn(30, 20, 61, generator=torch.Generator().manual_seed(0))
    sampled = OthelloTask(OthelloConfig(train_max_moves=20, val_games=4), games=games)
    exact = OthelloTask(OthelloConfig(target="exact", train_max_moves=20, val_games=4), games=games)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=0)
    assert float(sampled.target_loss(logits, batch, sampled.loss_target(batch))) == pytest.approx(float(ce), rel=1e-6)
    # exact: the mean over live positions of -sum_j p*_j log softmax(z)_j, written out
    legal = prefix_legal(batch.tokens)
    total, n = 0.0, 0
    for g in range(30):
        for i in range(20):
            k = int(legal[g, i].sum())
            if k:
                total -= float(logits[g, i].log_softmax(-1)[legal[g, i]].sum()) / k
                n += 1
    assert float(exact.loss(logits, batch)) == pytest.approx(total / n, rel=1e-5)


class LegalUniform(torch.nn.Module):
    """Logits ``w`` on the legal next moves of every prefix, 0 elsewhere: right up to temperature."""

    def __init__(self, w: float = 0.5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))

    def forward(self, tokens):
        return prefix_legal(tokens).float() * self.w


def test_othello_calibration_against_a_model_right_up_to_temperature(data):
    task = OthelloTask(OthelloConfig(data=str(data), val_games=100, train_max_moves=12))
    model = LegalUniform()
    raw = task.evaluate(model, 100)
    cal, scale = task.calibrated_evaluate(model, 100, fit_n=64)
    assert raw.summary()["in_range"]["tv"] > 0.2
    assert scale > 50  # sharper is always better: the fit goes as far as float64 sees a slope
    assert cal.summary()["beyond"]["tv"] < 1e-6 and cal.summary()["beyond"]["itr"] < 1e-6
    assert cal.values["legal_top1"] == raw.values["legal_top1"]  # a temperature never moves the argmax


def test_othello_calibration_minimises_in_range_kl_against_a_grid_search(data):
    task = OthelloTask(OthelloConfig(data=str(data), val_games=100, train_max_moves=12))
    torch.manual_seed(0)
    w = torch.randn(61)  # legal moves unequal: an interior optimum

    model = LegalUniform()
    model.w = torch.nn.Parameter(w)  # per token
    scale = task.fit_logit_scale(model, 64)
    batches = list(task.calibration_data(64))

    def kl(beta):
        total, n = 0.0, 0
        for tokens, p, keep in batches:
            logq = (model(tokens).double() * beta).log_softmax(-1)
            kl_pos = (torch.xlogy(p, p) - p * logq).sum(-1)
            total, n = total + float(kl_pos[keep].sum().detach()), n + int(keep.sum())
        return total / n

    grid = [0.05 * k for k in range(1, 201)]
    kls = [kl(b) for b in grid]
    best = grid[int(np.argmin(kls))]
    assert abs(scale - best) <= 0.05 and kl(scale) <= min(kls) + 1e-9


def test_othello_ensemble_members_equal_separate_runs(data, tmp_path):
    cfgs = [
        load_config(
            preset_path("othello_cpu"),
            OTHELLO_TINY + [f"othello.data={data}", f"train.seed={s}", f"othello.target={t}"],
        )
        for s in (0, 1)
        for t in ("sampled", "exact")
    ]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    results = train_ensemble(cfgs, dirs, progress=False)
    assert all(r.error is None for r in results)
    for i, cfg in enumerate(cfgs):
        sep = runs.prepare_run(tmp_path / f"sep{i}", cfg)
        train(cfg, sep, progress=False)
        mine = runs.load_weights(dirs[i] / runs.weights_file("raw"))
        theirs = runs.load_weights(sep / runs.weights_file("raw"))
        # b_K leaves the output unchanged (it adds the same q.b_K to every key of a query), so
        # its exact gradient is 0 and Adam turns rounding noise into lr-sized steps (measured
        # up to 1e-3 apart after 30 steps); every other weight: measured 1.2e-7 apart
        diff = max(
            float((mine[k] - theirs[k]).abs().max())
            for k in mine
            if mine[k].is_floating_point() and mine[k].isfinite().all() and not k.endswith("attn.b_K")
        )
        assert diff < 1e-5, (i, diff)
        a, b = runs.read_final_metrics(dirs[i]), runs.read_final_metrics(sep)
        assert a["raw"]["values"]["tv"] == pytest.approx(b["raw"]["values"]["tv"], abs=1e-5)
    # the targets differ in the loss only: same seed, same batches, other weights
    a, b = (runs.load_weights(d / runs.weights_file("raw")) for d in dirs[:2])
    assert float((a["embed.W_E"] - b["embed.W_E"]).abs().max()) > 1e-4


def _othello_spec(tmp_path, data, n_configs: int = 5) -> str:
    spec = {
        "base": "othello_cpu",
        "fixed": OTHELLO_TINY + [f"othello.data={data}"],
        "params": {"train.lr": {"type": "loguniform", "low": 0.002, "high": 0.004}},
        "n_configs": n_configs,
        "seed": 0,
        "seeds": [0],
        "dropouts": [0.0, 0.1],
        "targets": ["sampled", "exact"],
        "averagers": [
            {"name": "ema", "mode": "ema", "decay": 0.9, "warmup": True},
            {"name": "bema", "mode": "bema"},
            {"name": "extrap", "mode": "extrapolation"},
        ],
        "region": {"metric": "legal_top1", "range": "in_range", "min": 0.0},
        "measure_sets": 40,
    }
    path = tmp_path / "othello_study.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_a_tiny_othello_study_runs_end_to_end(data, tmp_path):
    from interp.analysis.mechanism import study_measures
    from interp.analysis.study_report import plot_config_lengths, study_report

    s = run_study(tmp_path / "st", _othello_spec(tmp_path, data), workers=1, progress=False, measures=study_measures)
    assert s["completed"] == 5 and s["arms"] == 5 * 4 and s["failed_configs"] == 0
    spec, _, study = open_study(tmp_path / "st")
    records = completed_records(study)
    for r in records:
        assert r["axis"] == "move index" and r["train_range"] == [1, 12]
        assert runs.read_run_config(tmp_path / "st" / r["run_dir"]).othello.target == r["target"]
        for w in ("raw", "ema", "bema", "extrap"):
            beyond = r["weights"][w]["summary"]["beyond"]
            assert {"tv", "itr", "legal_top1", "cal_tv", "cal_itr", "norm_entropy", "side_acc"} == set(beyond)
            assert len(r["weights"][w]["cal_tv"]) == 59 and len(r["weights"][w]["tv"]) == 59
    # arms of one config and seed share initialisation and batches: their first logged losses
    # differ only through the target (sampled vs exact) and dropout
    result = study_report(tmp_path / "st", n_boot=200)
    claims = [e for e in result["effects"] if e["claim"]]
    assert {e["contrast"] for e in claims} >= {
        "ema - raw",
        "bema - raw",
        "extrap - raw",
        "dropout 0.1 - 0",
        "(ema - raw) sampled - exact",
    }
    assert all(e["verdict"] in ("supported", "harmful", "no practical effect", "inconclusive") for e in claims)
    assert any(e["family"] == "dropout" and e["measure"] == "norm_entropy" and e["claim"] for e in result["effects"])
    assert result["kept_configs"] == [0, 1, 2, 3, 4]  # the region's lower bound on legal top-1 keeps all
    assert (tmp_path / "st" / "report" / "forest.png").is_file()
    fig = plot_config_lengths(records, spec, 0)
    assert fig.axes[0].get_xlabel() == "move index"


def test_a_study_region_bound_excludes_configs_by_its_own_metric(data, tmp_path):
    from interp.analysis.study_report import convergence

    values = {}
    from interp.analysis.study_report import Cell

    for c, legal in enumerate([0.9, 0.5]):
        for t in ("sampled", "exact"):
            values[Cell(c, 0, 0.0, t, "raw")] = {("in_range", "legal_top1"): legal}
    spec = {
        "seeds": [0],
        "targets": ["sampled", "exact"],
        "region": {"metric": "legal_top1", "range": "in_range", "min": 0.8},
    }
    kept, excluded = convergence(values, spec, [0, 1])
    assert kept == [0] and excluded[0]["config"] == 1 and "legal_top1 0.5000 < 0.8" in excluded[0]["reason"]


class CopyWithTV(CopyTask):
    """The registry test's copy task, reporting TV to its (one-hot) truth: 1 - p(the token read)."""

    metric_names = ("tv", "acc")
    study_metrics = ("tv", "acc")

    @torch.no_grad()
    def evaluate(self, model, n, seed=0):
        res = super().evaluate(model, n, seed)
        gen = torch.Generator().manual_seed(seed)
        batch = self.sample_batch(n, gen, max_len=self.cfg.length)
        from training.scoped import eval_mode

        with eval_mode(model):
            p = model(batch.tokens).softmax(-1)
        res.values["tv"] = (1 - p.gather(-1, batch.tokens.unsqueeze(-1)).squeeze(-1)).mean(0).tolist()
        return res

    def probe_batches(self, n, seed=0, device="cpu"):
        from training.tasks.base import ProbeBatch

        batch = self.sample_batch(n, torch.Generator().manual_seed(seed), max_len=self.cfg.length)
        index = torch.arange(1, self.cfg.length + 1)
        yield ProbeBatch(batch.tokens, index, torch.ones_like(batch.tokens, dtype=torch.bool))


def test_a_third_task_runs_a_tiny_study(monkeypatch, tmp_path):
    from interp.analysis.mechanism import study_measures
    from interp.analysis.study_report import study_report

    monkeypatch.setitem(registry.TASKS, "copy", registry.TaskEntry("copy", CopyConfig, CopyWithTV))
    base = tmp_path / "copy_base.json"
    base.write_text(json.dumps({"kind": "copy", "copy": {"v": 6}}))
    spec = {
        "base": str(base),
        "fixed": [
            "model.d_model=16",
            "model.d_head=8",
            "model.positional=learned",
            "train.steps=20",
            "train.eval_every=20",
            "train.checkpoint_every=20",
            "train.eval_sets=32",
            "train.final_eval_sets=32",
            "train.device=cpu",
        ],
        "params": {"train.lr": {"type": "loguniform", "low": 0.005, "high": 0.01}},
        "n_configs": 5,
        "seeds": [0, 1],
        "dropouts": [0.0, 0.2],
        "averagers": [{"name": "ema", "mode": "ema", "decay": 0.9, "warmup": True}],
        "region": {"metric": "tv", "max": 1.0},
        "measure_sets": 16,
    }
    path = tmp_path / "copy_study.json"
    path.write_text(json.dumps(spec))
    assert load_spec(path)["n_configs"] == 5
    s = run_study(tmp_path / "st", path, workers=1, progress=False, measures=study_measures)
    assert s["arms"] == 5 * 4 and s["failed_configs"] == 0
    records = completed_records(open_study(tmp_path / "st")[2])
    assert {r["target"] for r in records} == {None} and all(r["run_dir"].endswith(("_p0", "_p0.2")) for r in records)
    assert set(records[0]["weights"]["raw"]["summary"]["beyond"]) == {"tv", "acc", "norm_entropy"}  # no calibration
    result = study_report(tmp_path / "st", n_boot=200)
    claims = {e["contrast"]: e for e in result["effects"] if e["claim"]}
    assert set(claims) == {"ema - raw", "dropout 0.2 - 0"}  # tv, and the dispersion claim of dropout
    assert {e["target"] for e in claims.values()} == {None} and all("verdict" in e for e in claims.values())
    # a target list for a task without a target axis is a one-line error
    spec["targets"] = ["sampled"]
    path.write_text(json.dumps(spec))
    with pytest.raises(Exception, match="targets: the task CopyWithTV has no target axis"):
        load_spec(path)


def test_entropy_measures_of_uniform_attention_are_one():
    """With W_Q = 0 every attention score is equal, so each query attends uniformly to the
    positions it sees: normalised entropy 1 at every move index, in range and beyond."""
    from interp.analysis.mechanism import entropy_measures

    games = random_games(120, np.random.default_rng(5))
    task = OthelloTask(OthelloConfig(train_max_moves=12, val_games=60), games=games)
    model = small_othello_model()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn.b_Q.zero_()
    out = entropy_measures(model, task, n=60)
    assert out["by_range"]["in_range"]["norm_entropy"] == pytest.approx(1.0, abs=1e-6)
    assert out["by_range"]["beyond"]["norm_entropy"] == pytest.approx(1.0, abs=1e-6)
    # and a model that attends to one position (large scores on the diagonal) is far below 1
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.copy_(block.attn.W_K * 50)
    assert entropy_measures(model, task, n=60)["by_range"]["beyond"]["norm_entropy"] < 0.9


def test_side_to_move_measure_against_a_slow_reference():
    """The study's side-to-move measure equals a plain reimplementation: labels from replaying each
    game on the reference engine (who moves after each move, passes included), a ridge probe
    solved in numpy on the last layer's residual stream of the in-range positions of the training
    games, accuracy on the held-out games per move index, averaged over the move indices in range
    and beyond that some game reached."""
    from interp.analysis.mechanism import side_to_move_measures

    games = _games_with_passes(160, seed=3)
    task = OthelloTask(OthelloConfig(train_max_moves=12, val_games=60), games=games)
    model = small_othello_model().eval()
    n, hi = 60, 12

    def sides(g) -> np.ndarray:  # [59]: 1 if white moves after move p + 1, -1 where the game is over
        game, out = RefGame(), np.full(59, -1)
        for p, sq in enumerate(g[:59]):
            if sq < 0:
                break
            game.play(int(sq))
            out[p] = int(game.player != 1)
        return out

    def resid(g) -> np.ndarray:
        _, cache = model.run_with_cache(torch.from_numpy(squares_to_tokens(g[:, :59])))
        return cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"].double().numpy()

    train, val = games[:n], games[task.n_train : task.n_train + n]
    y_train, y_val = np.stack([sides(g) for g in train]), np.stack([sides(g) for g in val])
    x = resid(train)[:, :hi]
    keep = y_train[:, :hi] >= 0
    X = np.concatenate([x[keep], np.ones((keep.sum(), 1))], 1)
    Y = np.eye(2)[y_train[:, :hi][keep]]
    xtx = X.T @ X
    W = np.linalg.solve(xtx + 1e-2 * np.diag(xtx).mean() * np.eye(len(xtx)), X.T @ Y)
    xv = resid(val)
    pred = (np.concatenate([xv, np.ones(xv.shape[:2] + (1,))], 2) @ W).argmax(-1)
    alive = y_val >= 0
    acc = [(pred[:, p] == y_val[:, p])[alive[:, p]].mean() for p in range(59) if alive[:, p].any()]
    moves = [p + 1 for p in range(59) if alive[:, p].any()]
    expected = {
        "in_range": np.mean([a for a, m in zip(acc, moves) if m <= hi]),
        "beyond": np.mean([a for a, m in zip(acc, moves) if m > hi]),
    }
    got = side_to_move_measures(model, task, n=n)
    for part in ("in_range", "beyond"):
        assert got[part]["side_acc"] == pytest.approx(expected[part], abs=1e-9)

"""Calibrated metrics: one temperature per model, fit on held-out in-range sets, then every length
evaluated at it. Against ground truth: a model right up to temperature calibrates to TV 0; the fit
minimises the in-range KL found by a grid search; a model that is only sharper gains nothing."""

import pytest
import torch

from training.models import ModelConfig, build_model
from training.tasks.set_complement.calibration import CALIBRATION_SEED, calibrated_lengths, fit_logit_scale
from training.tasks.set_complement.metrics import evaluate_lengths
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

V = 10


def _task():
    return SetComplementTask(SetComplementConfig(v=V, train_max_len=4))


class Membership(torch.nn.Module):
    """Logits after each prefix: ``weights[j]`` on items not yet seen, 0 on the set's members."""

    def __init__(self, weights):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, tokens):
        members = torch.nn.functional.one_hot(tokens - 1, V).cumsum(1).bool()
        return torch.where(members, torch.zeros(()), self.w.expand(members.shape))


def test_a_model_right_up_to_temperature_calibrates_to_zero_tv():
    task = _task()
    model = Membership([0.5] * V)  # the right support, far too flat
    raw = evaluate_lengths(model, task, n=64)
    cal, scale = calibrated_lengths(model, task, n=64, fit_n=64)
    assert raw.summary()["in_range"]["tv"] > 0.1
    # sharper is always better for this model: the fit goes as far as float64 can tell a difference
    assert scale > 50
    assert max(cal.values["tv"]) < 1e-6 and max(cal.values["itr"]) < 1e-6


def test_the_fit_minimises_in_range_kl_against_a_grid_search():
    task = _task()
    torch.manual_seed(0)
    model = Membership(2.0 * torch.randn(V))  # valid items unequal: an interior optimum
    scale = fit_logit_scale(model, task, n=128)

    def in_range_kl(beta):
        m = evaluate_lengths(model, task, n=128, max_len=4, seed=CALIBRATION_SEED, logit_scale=beta)
        return sum(m.values["kl"]) / 4

    grid = [0.02 * k for k in range(1, 101)]
    kls = [in_range_kl(b) for b in grid]
    best = grid[min(range(len(grid)), key=kls.__getitem__)]
    assert abs(scale - best) <= 0.02
    assert in_range_kl(scale) <= min(kls) + 1e-9


def test_a_model_that_is_only_sharper_gains_nothing():
    task = _task()
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8)
    model = build_model(cfg, V + 1, V, V - 1, seed=0)
    with torch.no_grad():
        model.W_U.normal_()
    sharp = build_model(cfg, V + 1, V, V - 1, seed=0)
    sharp.load_state_dict(model.state_dict())
    with torch.no_grad():  # no LayerNorm: logits = resid @ W_U + b_U, so this triples them
        sharp.W_U.mul_(3.0)
        sharp.b_U.mul_(3.0)
    a, sa = calibrated_lengths(model, task, n=64, fit_n=64)
    b, sb = calibrated_lengths(sharp, task, n=64, fit_n=64)
    assert evaluate_lengths(sharp, task, 64).values["tv"] != evaluate_lengths(model, task, 64).values["tv"]
    assert sa == pytest.approx(3 * sb, rel=1e-6)
    assert a.values["tv"] == pytest.approx(b.values["tv"], abs=1e-5)


def test_eval_command_reports_calibrated_metrics(tmp_path, capsys):
    from commands.interp import main as interp_main
    from training import runs
    from training.trainer import train

    from .conftest import tiny_config

    cfg = tiny_config("averaging.mode=bema")
    run = runs.create_run_dir(tmp_path / "run", cfg)
    train(cfg, run, progress=False)
    assert interp_main(["eval", str(run), "--calibrated", "--sets", "32", "--metrics", "tv,itr"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("T: each model's softmax temperature")  # the table says what T is
    header = lines[2]
    assert "raw T=" in header and "averaged T=" in header
    assert interp_main(["eval", str(run), "--dispersion", "--sets", "16", "--metrics", "tv"]) == 0
    out = capsys.readouterr().out
    assert "averaged   beyond: entropy" in out and "self-displacement CV" in out


def test_dispersion_measures_of_the_balanced_model():
    """Uniform attention, B = -bI, D = -cI: normalised entropy 1 (from length 2), margin c/s and gap
    (b + c)/s, so both laws are 1 at every length, and every token's self-displacement is -c (CV 0)."""
    from interp.set_complement.dispersion import dispersion
    from interp.set_complement.theory import balanced_model

    task = _task()
    d = dispersion(balanced_model(V, 2.0, 5.0), task, n=32)
    assert d.lengths == list(range(1, V))
    assert all(x == pytest.approx(1.0, abs=1e-6) for x in d.norm_entropy[0][0][1:])
    assert all(x == pytest.approx(1.0, abs=1e-5) for x in d.margin_law[1:])
    assert all(x == pytest.approx(1.0, abs=1e-5) for x in d.gap_law)
    assert d.self_displacement_cv[0][0] == pytest.approx(0.0, abs=1e-6)
    assert d.summary()["beyond"]["margin_law"] == pytest.approx(1.0, abs=1e-5)


def test_oracle_and_per_length_temperatures_against_a_grid_on_a_trained_model(tmp_path):
    """The temperature controls of the study on a trained model: the oracle 1/T minimises the
    pooled beyond-range KL of its held-out sets, and each length's 1/T that length's KL, as a
    brute-force grid finds them; the per-length evaluation equals evaluating each length at its
    own single temperature."""
    from training.tasks.set_complement.calibration import fit_scales_beyond, temperature_controls

    from .conftest import tiny_config, train_and_reload

    model, _ = train_and_reload(tmp_path, "train.steps=60")
    task = tiny_config().make_task()
    L, hi = task.cfg.max_eval_len, task.cfg.train_max_len
    oracle, per_length = fit_scales_beyond(model, task, n=128)
    assert len(per_length) == L

    def kl(beta):  # KL per length on the same held-out sets, through the evaluation's own path
        return evaluate_lengths(model, task, n=128, max_len=L, seed=CALIBRATION_SEED, logit_scale=beta).values["kl"]

    grid = [0.05 * k for k in range(1, 161)]
    kls = [kl(b) for b in grid]
    beyond = [sum(k[hi:]) / (L - hi) for k in kls]
    best = grid[min(range(len(grid)), key=beyond.__getitem__)]
    assert 0.05 < best < grid[-1]  # an interior optimum: the grid brackets it
    assert abs(oracle - best) <= 0.05
    assert sum(kl(oracle)[hi:]) / (L - hi) <= min(beyond) + 1e-9
    for i in (0, hi, L - 1):  # no grid point does better at its length (the optimum may lie past the grid)
        assert kl(per_length[i])[i] <= min(k[i] for k in kls) + 1e-9
    controls = temperature_controls(model, task, n=64, seed=3, fit_n=128)
    at_length, scales = controls["length"]
    assert scales == per_length and controls["oracle"][1] == oracle
    for i in (0, L - 1):
        single = evaluate_lengths(model, task, n=64, seed=3, logit_scale=per_length[i])
        assert at_length.values["tv"][i] == pytest.approx(single.values["tv"][i], abs=1e-6)


def test_the_newton_fit_finds_the_bisection_root():
    """Interior optima (p* a noisy softmax of a multiple of z), optima at 0 (p* unrelated to z),
    one beyond max_scale, and the flat stretch of a model right up to temperature: the
    bracketed Newton fit lands where 60 bisections of [0, 1000] do."""
    from training.tasks.calibration import bisection_scale as _bisection
    from training.tasks.calibration import fit_scale

    g = torch.Generator().manual_seed(0)
    for k in range(60):
        z = torch.randn(200, 12, generator=g, dtype=torch.float64) * (0.05 + 20 * torch.rand((), generator=g).item())
        c = 3 * torch.rand((), generator=g).item() if k % 3 else 0.0
        p = torch.softmax(c * z + torch.randn(200, 12, generator=g, dtype=torch.float64), -1)
        ref = _bisection(z, p)
        assert fit_scale(z, p) == pytest.approx(ref, rel=1e-11, abs=1e-14), k
    z = torch.randn(100, 8, generator=g, dtype=torch.float64)
    p = torch.softmax(5e3 * z, -1)  # sharper than max_scale allows
    assert fit_scale(z, p) == _bisection(z, p) == 1e3
    flat = torch.where(torch.arange(8) < 5, 0.5, 0.0).double().expand(50, 8)  # valid items 0.5, members 0
    p_flat = (flat > 0).double() / 5
    ref = _bisection(flat, p_flat)
    assert ref > 50  # the slope vanishes in float64 from some beta on
    assert fit_scale(flat, p_flat) == pytest.approx(ref, rel=1e-9)


def test_one_pass_at_every_temperature_equals_separate_evaluations(tmp_path):
    """The study's calibrated and temperature-control metrics from one forward pass
    (``calibrated_evaluations``) are those of separate evaluations at each fitted scale."""
    from training.tasks.set_complement.calibration import temperature_controls

    from .conftest import tiny_config, train_and_reload

    model, _ = train_and_reload(tmp_path, "train.steps=60")
    task = tiny_config().make_task()
    shared = task.calibrated_evaluations(model, 64, seed=3, fit_n=128)
    cal, scale = calibrated_lengths(model, task, n=64, seed=3, fit_n=128)
    controls = temperature_controls(model, task, n=64, seed=3, fit_n=128)
    assert list(shared) == ["cal", "oracle", "length"]
    assert shared["cal"][1] == scale and shared["cal"][0].values == cal.values
    for kind in ("oracle", "length"):
        assert shared[kind][1] == controls[kind][1]
        assert shared[kind][0].values == controls[kind][0].values

"""Several averagers per run: the extrapolation control against its hand formula, the raw trajectory
untouched by any number of averagers, every average saved, reloaded, resumed and evaluated by name."""

import pytest
import torch
from safetensors.torch import load_file

from commands.interp import main as interp_main
from training import runs
from training.averaging import AveragingConfig, WeightAverager
from training.errors import ConfigError, WorkbenchError
from training.trainer import train

from .conftest import tiny_config
from .test_averaging import Scalar

AVERAGERS = (
    'averagers=[{"name": "extrap", "mode": "extrapolation"}, '
    '{"name": "ema999w", "mode": "ema", "decay": 0.999, "warmup": true}, {"name": "bema2", "mode": "bema"}]'
)


def test_extrapolation_is_theta_plus_alpha_times_drift():
    """alpha_t = (rho + gamma t)^-eta; output = theta_t + alpha_t (theta_t - theta_0), no EMA at all."""
    m = Scalar()
    cfg = AveragingConfig(mode="extrapolation", eta=0.3, rho=4.0, gamma=2.0)
    avg = WeightAverager(m, cfg)
    thetas = [torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) * (1 + k) ** 0.5 for k in range(12)]
    for k, theta in enumerate(thetas):
        m.set(theta)
        avg.update(step=k + 1)
        t = k  # steps since theta_0 (taken at step 1)
        want = theta + (4.0 + 2.0 * t) ** -0.3 * (theta - thetas[0])
        assert torch.allclose(avg.averaged_state_dict()["w"], want, atol=1e-12), k


def test_bema_with_kappa_zero_is_the_extrapolation_control():
    """kappa = 0: beta_t = 1, the EMA is the live weights, BEMA = theta_t + alpha_t (theta_t - theta_0)."""
    m = Scalar()
    bema = WeightAverager(m, AveragingConfig(mode="bema", kappa=0.0, eta=0.3, rho=4.0, gamma=2.0))
    extrap = WeightAverager(m, AveragingConfig(mode="extrapolation", eta=0.3, rho=4.0, gamma=2.0))
    thetas = [torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) * (1 + k) ** 0.5 for k in range(12)]
    for k, theta in enumerate(thetas):
        m.set(theta)
        bema.update(step=k + 1)
        extrap.update(step=k + 1)
        want = theta + (4.0 + 2.0 * k) ** -0.3 * (theta - thetas[0])
        assert torch.allclose(bema.averaged_state_dict()["w"], want, atol=1e-12), k
        assert torch.allclose(extrap.averaged_state_dict()["w"], want, atol=1e-12), k


def _weights(run, name):
    return load_file(str(run / runs.weights_file(name)))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same dropout run without averaging, and with the averaging section plus three averagers."""
    d = tmp_path_factory.mktemp("avg")
    plain = tiny_config("model.attn_dropout=0.1")
    many = tiny_config("model.attn_dropout=0.1", "averaging.mode=bema", AVERAGERS)
    a, b = runs.create_run_dir(d / "plain", plain), runs.create_run_dir(d / "many", many)
    return a, b, train(plain, a, progress=False).final, train(many, b, progress=False).final


def test_averagers_leave_the_raw_trajectory_bit_identical(pair):
    a, b, fa, fb = pair
    assert _same(_weights(a, "raw"), _weights(b, "raw"))
    assert fa["raw"].values == fb["raw"].values
    # a named BEMA with the section's settings is the section's BEMA, bit for bit
    assert _same(_weights(b, "bema2"), _weights(b, "averaged"))


def test_every_average_is_saved_reloaded_and_evaluated_by_name(pair, capsys):
    _, b, _, fb = pair
    cfg = runs.read_run_config(b)
    assert list(fb) == runs.weight_names(cfg) == ["raw", "averaged", "extrap", "ema999w", "bema2"]
    task = cfg.make_task()
    for name in runs.weight_names(cfg):
        model = runs.load_run(b, name)
        assert task.evaluate(model, cfg.train.final_eval_sets, cfg.train.eval_seed).values == fb[name].values, name
    assert not _same(_weights(b, "extrap"), _weights(b, "raw"))
    with pytest.raises(
        WorkbenchError, match="has no weights 'nope' \\(it has raw, averaged, extrap, ema999w, bema2\\)"
    ):
        runs.load_run(b, "nope")
    assert interp_main(["eval", str(b), "--weights", "all", "--sets", "16", "--metrics", "tv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert all(n in header for n in ("raw", "averaged", "extrap", "ema999w", "bema2"))
    assert interp_main(["eval", str(b), "--weights", "nope"]) == 2
    assert "has no weights 'nope'" in capsys.readouterr().err


def test_resume_with_averagers_matches_an_uninterrupted_run(pair, tmp_path):
    _, b, _, _ = pair
    cfg = tiny_config("model.attn_dropout=0.1", "averaging.mode=bema", AVERAGERS)
    run = runs.create_run_dir(tmp_path / "r", cfg)
    train(cfg, run, stop_after=20, progress=False)  # stopped after the step-20 checkpoint
    train(cfg, run, progress=False)
    for name in runs.weight_names(cfg):
        assert _same(_weights(run, name), _weights(b, name)), name


@pytest.mark.parametrize(
    "spec, words",
    [
        ('[{"name": "raw", "mode": "ema"}]', "the name 'raw' is reserved"),
        ('[{"name": "a", "mode": "ema"}, {"name": "a", "mode": "bema"}]', "the name 'a' is used twice"),
        ('[{"name": "a"}]', "'a' needs a mode"),
        ('[{"name": "a b", "mode": "ema"}]', "name must be 1-40 letters"),
        ('[{"name": "a", "mode": "ema", "decay": 2}]', "averagers: 'a': decay must be in (0, 1)"),
    ],
)
def test_averager_config_errors(spec, words):
    with pytest.raises(ConfigError, match=None) as e:
        tiny_config(f"averagers={spec}")
    assert words in str(e.value)


def test_the_old_averaging_section_folds_into_averagers():
    """One way to configure an average: an old config's section becomes the averager 'averaged',
    first (so averages are updated and evaluated in the old order); saved configs hold no section."""
    import json

    from training.config import RunConfig

    cfg = tiny_config("averaging.mode=bema", "averaging.eta=0.3", AVERAGERS)
    assert [a.name for a in cfg.averagers] == ["averaged", "extrap", "ema999w", "bema2"]
    assert cfg.averagers[0].mode == "bema" and cfg.averagers[0].eta == 0.3
    saved = cfg.to_dict()
    assert "averaging" not in saved and RunConfig.from_dict(json.loads(json.dumps(saved))).to_dict() == saved
    # the same average written the new way is the same config
    new = tiny_config('averagers=[{"name": "averaged", "mode": "bema", "eta": 0.3}]')
    assert new.to_dict()["averagers"][0] == saved["averagers"][0]
    assert "averaging" not in tiny_config().to_dict() and tiny_config().averagers == []
    with pytest.raises(ConfigError, match="averaging and averagers both define the average 'averaged'"):
        tiny_config("averaging.mode=ema", 'averagers=[{"name": "averaged", "mode": "bema"}]')


def test_a_checkpoint_from_before_the_fold_resumes(tmp_path):
    """Checkpoints used to keep the section's averager under 'averager': resuming one gives the
    weights of a run that was never stopped."""
    cfg = tiny_config("averaging.mode=bema", AVERAGERS)
    whole, part = runs.create_run_dir(tmp_path / "whole", cfg), runs.create_run_dir(tmp_path / "part", cfg)
    train(cfg, whole, progress=False)
    train(cfg, part, stop_after=10, progress=False)
    state = torch.load(part / runs.STATE, weights_only=True)
    state["averager"] = state["averagers"].pop("averaged")  # the old layout
    torch.save(state, part / runs.STATE)
    train(cfg, part, progress=False)
    for name in ("raw", "averaged", "bema2"):
        assert _same(_weights(whole, name), _weights(part, name)), name


def test_a_presets_averaging_section_sets_the_shorthands_defaults():
    """The demo preset keeps its (mode none) section: it holds the settings that '--set
    averaging.mode=ema' averages with (decay 0.99, which the demo's EMA results were made with)."""
    from training.config import load_config, preset_path

    assert load_config(preset_path("demo")).averagers == []
    ema = load_config(preset_path("demo"), ["averaging.mode=ema"]).averagers
    assert [(a.name, a.mode, a.decay) for a in ema] == [("averaged", "ema", 0.99)]

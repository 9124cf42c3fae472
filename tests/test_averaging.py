"""EMA and BEMA against closed forms, PyTorch's EMA, and the buffer trap."""

import math

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from training.averaging import AveragingConfig, WeightAverager
from training.errors import ConfigError
from training.models import ModelConfig, build_model


class Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))

    def set(self, value):
        with torch.no_grad():
            self.w.copy_(torch.as_tensor(value, dtype=torch.float64))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_bema_closed_form_running_mean(eta):
    """kappa=1, rho=gamma=1: beta_t = 1/(1+t), so the EMA is the running mean of theta_0..theta_t.
    With theta_t = c + d*t the output is (1+t)^-eta * d*t + c + d*t/2."""
    m = Scalar()
    avg = WeightAverager(m, AveragingConfig(mode="bema", kappa=1.0, eta=eta, rho=1.0, gamma=1.0, min_beta=0.0))
    c, d = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.tensor([0.3, 0.1, -1.0], dtype=torch.float64)
    for t in range(0, 50):
        m.set(c + d * t)
        avg.update(step=t + 1)
        want = (1 + t) ** (-eta) * d * t + c + d * t / 2
        assert torch.allclose(avg.averaged_state_dict()["w"], want, atol=1e-12), t


def test_eta_zero_is_full_extrapolation_not_plain_ema():
    """alpha_t = (rho + gamma t)^0 = 1, so eta = 0 gives ema_t + (theta_t - theta_0): the whole drift
    since theta_0 added back, not a plain EMA (as the module's docstring once said)."""
    m = Scalar()
    avg = WeightAverager(m, AveragingConfig(mode="bema", eta=0.0))
    ema = AveragingConfig(mode="bema", eta=0.0)
    thetas = [torch.full((3,), float(x), dtype=torch.float64) for x in (0.0, 1.0, 3.0, 2.0, 5.0)]
    ema_value = thetas[0].clone()
    for t, theta in enumerate(thetas):
        m.set(theta)
        avg.update(step=t + 1)
        if t:
            beta = (ema.rho + ema.gamma * t) ** -ema.kappa
            ema_value = (1 - beta) * ema_value + beta * theta
    got = avg.averaged_state_dict()["w"]
    assert torch.allclose(got, ema_value + (thetas[-1] - thetas[0]), atol=1e-12)
    assert not torch.allclose(got, ema_value)
    import training.averaging

    assert "eta = 0`` is not a plain EMA" in " ".join(training.averaging.__doc__.split())


def _bema_reference(thetas, kappa, eta, rho, gamma, min_beta, burn_in, every):
    """Scalar transcription of the BEMA equations; thetas[k] is the weight after step k+1."""
    out, ema, theta0, start = [], None, None, None
    current = None
    for k, theta in enumerate(thetas):
        step = k + 1
        if step < burn_in:
            out.append(theta)
            continue
        if start is None:
            start, ema, theta0, current = step, theta, theta, theta
        elif (step - start) % every == 0:
            t = step - start
            beta = max((rho + gamma * t) ** -kappa, min_beta)
            alpha = (rho + gamma * t) ** -eta
            ema = (1 - beta) * ema + beta * theta
            current = alpha * (theta - theta0) + ema
        out.append(current)
    return out


def test_bema_matches_scalar_reference_with_burn_in_and_period():
    torch.manual_seed(0)
    thetas = torch.randn(200).cumsum(0).double().tolist()
    cfg = AveragingConfig(mode="bema", burn_in=7, every=3, min_beta=0.05)
    m = Scalar()
    avg = WeightAverager(m, cfg)
    want = _bema_reference(thetas, cfg.kappa, cfg.eta, cfg.rho, cfg.gamma, cfg.min_beta, cfg.burn_in, cfg.every)
    for k, theta in enumerate(thetas):
        m.set([theta] * 3)
        avg.update(step=k + 1)
        assert avg.averaged_state_dict()["w"][0].item() == pytest.approx(want[k], abs=1e-9), k


def test_ema_matches_torch_swa_utils():
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    avg = WeightAverager(model, AveragingConfig(mode="ema", decay=0.9))
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=False)
    for step in range(1, 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        avg.update(step)
        ref.update_parameters(model)
    ours = avg.averaged_state_dict()
    for name, p in ref.module.named_parameters():
        assert torch.allclose(ours[name], p, atol=1e-6), name


def test_ema_warmup_uses_smaller_decay_early():
    m = Scalar()
    avg = WeightAverager(m, AveragingConfig(mode="ema", decay=0.999, warmup=True))
    m.set([0.0] * 3)
    avg.update(1)
    m.set([1.0] * 3)
    avg.update(2)  # t=1: decay min(0.999, 2/11)
    assert avg.averaged_state_dict()["w"][0].item() == pytest.approx(1 - 2 / 11)


@pytest.mark.parametrize("mode", ["ema", "bema"])
def test_unchanged_weights_give_bit_identical_logits(mode):
    model = build_model(ModelConfig(d_model=16, d_head=8, n_heads=2), 9, 8, 8, seed=2).eval()
    avg = WeightAverager(model, AveragingConfig(mode=mode, decay=0.7))
    for step in range(1, 20):
        avg.update(step)
    twin = build_model(ModelConfig(d_model=16, d_head=8, n_heads=2), 9, 8, 8, seed=99).eval()
    twin.load_state_dict(avg.averaged_state_dict())
    x = torch.randint(1, 9, (4, 8))
    assert torch.equal(twin(x), model(x))


def test_buffers_are_never_averaged():
    """TransformerLens's IGNORE=-inf buffer must survive averaging (averaging it gives NaN)."""
    model = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 8, seed=3)
    avg = WeightAverager(model, AveragingConfig(mode="bema"))
    for step in range(1, 10):
        with torch.no_grad():
            model.W_Q.add_(0.01)
        avg.update(step)
    state = avg.averaged_state_dict()
    assert state["blocks.0.attn.IGNORE"].item() == -math.inf
    assert "blocks.0.attn.IGNORE" not in avg.names
    twin = build_model(ModelConfig(d_model=16, d_head=8), 9, 8, 8)
    twin.load_state_dict(state)
    _, cache = twin.run_with_cache(torch.randint(1, 9, (2, 6)), names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.isfinite(pattern).all() and torch.allclose(pattern.sum(-1), torch.ones(()))


def test_state_round_trip_continues_identically():
    torch.manual_seed(4)
    seq = [torch.randn(3).double() for _ in range(30)]
    m1, m2 = Scalar(), Scalar()
    a = WeightAverager(m1, AveragingConfig(mode="bema", every=2))
    for k in range(15):
        m1.set(seq[k])
        a.update(k + 1)
    b = WeightAverager(m2, AveragingConfig(mode="bema", every=2))
    b.load_state_dict(a.state_dict())
    for k in range(15, 30):
        m1.set(seq[k])
        m2.set(seq[k])
        a.update(k + 1)
        b.update(k + 1)
    assert torch.equal(a.averaged_state_dict()["w"], b.averaged_state_dict()["w"])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mode="swa"),
        dict(mode="bema", kappa=-0.1),
        dict(mode="bema", kappa=1.5),
        dict(mode="bema", eta=-0.1),
        dict(decay=1.0),
    ],
)
def test_bad_averaging_configs(kwargs):
    with pytest.raises(ConfigError):
        AveragingConfig(**kwargs).validate()

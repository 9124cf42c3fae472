"""Weight averaging during training: fixed-decay EMA and bias-corrected EMA (BEMA).

BEMA (Block & Zhang, arXiv 2508.00180) keeps an EMA whose weight ``beta_t`` decays with time and
adds back a fraction ``alpha_t`` of the drift since a snapshot, which removes the EMA's lag::

    alpha_t = (rho + gamma*t)^(-eta)        beta_t = max((rho + gamma*t)^(-kappa), min_beta)
    ema_t   = (1 - beta_t) * ema_{t-1} + beta_t * theta_t          (ema starts at theta_0)
    output  = alpha_t * (theta_t - theta_0) + ema_t

``theta_0`` is the snapshot at the burn-in step and ``t`` counts steps since then; the average is
refreshed every ``every`` steps (the reference code uses 400). Switching a term off:

- ``eta = 0`` is not a plain EMA. It makes ``alpha_t = 1``, so the output is
  ``ema_t + (theta_t - theta_0)``, a full extrapolation of the drift since ``theta_0``; a larger
  ``eta`` shrinks the correction faster. The EMA without correction is the ``ema`` mode (fixed
  decay) or, with BEMA's decaying weight, BEMA as ``eta`` grows.
- ``kappa = 0`` makes ``beta_t = 1``: the EMA is the live weights, and BEMA's output is
  ``theta_t + alpha_t (theta_t - theta_0)``, exactly the ``extrapolation`` mode (tested).

``extrapolation`` is BEMA without its EMA term, ``theta_t + alpha_t (theta_t - theta_0)``: the
control for BEMA on a model trained from scratch, where ``theta_0`` is near the initial weights and
the correction mostly scales the weights up (the BEMA page of the docs, ``docs/set_complement.md``).

A run keeps one legacy average (the ``averaging`` section, saved as ``averaged``) and any number of
named ones (``averagers``, a list of ``NamedAveraging``), all fed the same raw trajectory: adding
averagers never changes the raw weights.

Only *parameters* are averaged, never buffers: every TransformerLens attention layer holds a
buffer ``IGNORE = -inf`` that averaging turns into NaN, after which TransformerLens silently zeroes
the attention. Buffers of the averaged model are always copied from the live model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch

from training.errors import ConfigError
from training.models import trainable_parameters


@dataclass
class AveragingConfig:
    """Which average of the weights to keep alongside the raw weights."""

    mode: Literal["none", "ema", "bema", "extrapolation"] = "none"
    """'none', 'ema' (fixed decay), 'bema' (bias-corrected EMA) or 'extrapolation' (BEMA's
    correction alone: theta_t + alpha_t (theta_t - theta_0), the control for BEMA)."""
    decay: float = 0.999
    """EMA: weight kept by the old average at each update."""
    warmup: bool = False
    """EMA: use decay min(decay, (1+t)/(10+t)) so early averages are not stuck at init."""
    kappa: float = 0.5
    """BEMA: power of the EMA weight beta_t = (rho + gamma*t)^-kappa. 0 makes beta_t = 1: the EMA is
    the live weights, so BEMA becomes the extrapolation control theta_t + alpha_t (theta_t - theta_0)."""
    eta: float = 0.2
    """BEMA: power of the bias-correction weight alpha_t = (rho + gamma*t)^-eta. 0 makes alpha_t = 1,
    a full extrapolation ema_t + (theta_t - theta_0), not a plain EMA."""
    rho: float = 10.0
    """BEMA: offset in (rho + gamma*t)."""
    gamma: float = 1.0
    """BEMA: time scale in (rho + gamma*t)."""
    min_beta: float = 1e-4
    """BEMA: floor on beta_t."""
    burn_in: int = 0
    """Optimizer steps before averaging starts (theta_0 is taken then)."""
    every: int = 1
    """Refresh the average every this many steps (the BEMA reference code uses 400)."""

    def validate(self) -> None:
        if self.mode not in ("none", "ema", "bema", "extrapolation"):
            raise ConfigError(f"averaging.mode must be 'none', 'ema', 'bema' or 'extrapolation', got {self.mode!r}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"averaging.decay must be in (0, 1), got {self.decay}")
        for name in ("kappa", "eta"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"averaging.{name} must be in [0, 1], got {value}")
        if self.rho <= 0 or self.gamma <= 0:
            raise ConfigError(f"averaging.rho and averaging.gamma must be positive, got {self.rho}, {self.gamma}")
        if not 0 <= self.min_beta <= 1:
            raise ConfigError(f"averaging.min_beta must be in [0, 1], got {self.min_beta}")
        if self.burn_in < 0 or self.every < 1:
            raise ConfigError(f"averaging.burn_in must be >= 0 and every >= 1, got {self.burn_in}, {self.every}")


@dataclass
class NamedAveraging(AveragingConfig):
    """One more average of the same raw trajectory, saved as ``weights_{name}.safetensors`` and
    reported under ``name`` (``python -m interp eval --weights NAME``)."""

    name: str = "avg"
    """A short identifier (letters, digits, _ and -); not 'raw', 'all' or 'both'. 'averaged' is the
    name an old config's ``averaging`` section is loaded under."""

    def validate(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.name):
            raise ConfigError(f"averagers: name must be 1-40 letters, digits, _ or -, got {self.name!r}")
        if self.name in ("raw", "all", "both"):
            raise ConfigError(f"averagers: the name {self.name!r} is reserved")
        if self.mode == "none":
            raise ConfigError(f"averagers: {self.name!r} needs a mode (ema, bema or extrapolation)")
        try:
            super().validate()
        except ConfigError as e:
            raise ConfigError(f"averagers: {self.name!r}: {e}".replace("averaging.", "")) from None


class WeightAverager:
    """Tracks an average of a model's trainable parameters; call ``update(step)`` after each step."""

    def __init__(
        self, model: torch.nn.Module | None, cfg: AveragingConfig, params: dict[str, torch.Tensor] | None = None
    ):
        """Average ``model``'s trainable parameters, or the tensors ``params`` when given (the
        batched ensemble passes its stacked [member, ...] parameters: every update is
        elementwise, so each member's slice is that member's own average)."""
        cfg.validate()
        self.cfg = cfg
        self.model = model
        params = trainable_parameters(model) if params is None else params
        self.names = list(params)
        # Parameter objects are stable (load_state_dict copies into them), so look them up once:
        # walking named_parameters() every step costs more than the averaging arithmetic.
        self._live = [p.detach() for p in params.values()]
        self.start_step: int | None = None  # step at which theta_0 was taken
        self.last_t: int | None = None  # steps since start at the latest refresh
        self.ema: list[torch.Tensor] = []
        self.theta0: list[torch.Tensor] = []
        self.output: list[torch.Tensor] = []

    @property
    def enabled(self) -> bool:
        return self.cfg.mode != "none"

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the current weights after optimizer step ``step`` (1-based)."""
        cfg = self.cfg
        if not self.enabled or step < cfg.burn_in:
            return
        theta = self._live
        if self.start_step is None:
            self.start_step = step
            self.last_t = 0
            self.ema = [p.clone() for p in theta] if cfg.mode != "extrapolation" else []
            self.theta0 = [p.clone() for p in theta] if cfg.mode in ("bema", "extrapolation") else []
            self.output = [p.clone() for p in theta]
            return
        t = step - self.start_step
        if t % cfg.every:
            return
        self.last_t = t
        if cfg.mode == "ema":
            decay = min(cfg.decay, (1 + t) / (10 + t)) if cfg.warmup else cfg.decay
            torch._foreach_lerp_(self.ema, theta, 1.0 - decay)
            self.output = self.ema
            return
        base = cfg.rho + cfg.gamma * t
        alpha = base ** (-cfg.eta)
        if cfg.mode == "extrapolation":  # theta_t + alpha_t (theta_t - theta_0): no EMA
            drift = torch._foreach_sub(theta, self.theta0)
            torch._foreach_mul_(drift, alpha)
            self.output = torch._foreach_add(drift, theta)
            return
        beta = max(base ** (-cfg.kappa), cfg.min_beta)
        torch._foreach_lerp_(self.ema, theta, beta)
        drift = torch._foreach_sub(theta, self.theta0)
        torch._foreach_mul_(drift, alpha)
        self.output = torch._foreach_add(drift, self.ema)

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's full state dict with trainable parameters replaced by their average.

        Before averaging starts (or with mode 'none') this is the raw state dict.
        """
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        state.update({k: v.detach().clone() for k, v in self.averaged_parameters().items()})
        return state

    def averaged_parameters(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by name (the live ones before averaging starts); not copies."""
        if self.enabled and self.start_step is not None:
            return dict(zip(self.names, self.output))
        return dict(zip(self.names, self._live))

    def state_dict(self) -> dict:
        return {
            "mode": self.cfg.mode,
            "names": list(self.names),
            "start_step": self.start_step,
            "last_t": self.last_t,
            "ema": [t.clone() for t in self.ema],
            "theta0": [t.clone() for t in self.theta0],
            "output": [t.clone() for t in self.output],
        }

    def load_state_dict(self, state: dict) -> None:
        if state["mode"] != self.cfg.mode or list(state["names"]) != self.names:
            raise ValueError("averaging state does not match this model and mode")
        self.start_step, self.last_t = state["start_step"], state["last_t"]
        device = self._live[0].device
        self.ema = [t.to(device) for t in state["ema"]]
        self.theta0 = [t.to(device) for t in state["theta0"]]
        self.output = [t.to(device) for t in state["output"]]
        if self.cfg.mode == "ema":
            self.output = self.ema  # aliased while training, as in update()

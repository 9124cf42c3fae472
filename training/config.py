"""The run configuration: task, model, weight averaging and training settings in one object.

On disk it is JSON with one section per part. A run directory's ``config.json`` additionally
holds ``hooked_transformer_config`` (what plain TransformerLens needs to rebuild the model) and
``meta``; both are derived, and ignored when the file is read back as a config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from .averaging import AveragingConfig
from .configtools import apply_overrides, from_dict, to_dict
from .errors import ConfigError
from .models import ModelConfig
from .tasks.othello_task import D_VOCAB, N_CTX, OthelloConfig
from .tasks.set_complement import SetComplementConfig, SetComplementTask

DERIVED_KEYS = ("hooked_transformer_config", "meta")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """Optimizer, schedule, evaluation and checkpoint cadence."""

    steps: int = 3000
    """Optimizer steps in total."""
    batch_size: int = 64
    """Sequences per step (each holds every training length at once)."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay, applied to matrices only (not biases or LayerNorm weights)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """AdamW betas."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    seed: int = 0
    """Seeds initialisation, data order and dropout."""
    eval_every: int = 500
    """Evaluate raw and averaged weights every this many steps (and at the end)."""
    eval_sets: int = 256
    """Random sets per length in periodic evaluations."""
    final_eval_sets: int = 2048
    """Random sets per length in the final evaluation (final_metrics.json)."""
    eval_seed: int = 12345
    """Seed of the evaluation sets: every model and every evaluation sees the same sets."""
    checkpoint_every: int = 500
    """Write a resumable checkpoint every this many steps (and at the end)."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    bf16: bool = False
    """bf16 autocast for the forward pass (CUDA only)."""
    compile: bool = False
    """torch.compile the model for the training forward pass (worth it on a GPU; evaluation is eager)."""
    compile_mode: str = "default"
    """torch.compile mode when compile is on: 'default', 'reduce-overhead' (CUDA graphs, against
    host launch gaps), 'max-autotune' or 'max-autotune-no-cudagraphs' (slow to compile)."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms: without it, 2-thread CPU training of the demo model
    differs run to run by ~1e-7 (no measured speed cost on the CPU; warn-only on CUDA)."""

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"train.steps must be positive, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be positive, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip < 0:
            raise ConfigError("train.warmup_steps and train.grad_clip must be >= 0, min_lr_ratio in [0, 1]")
        for name in ("eval_every", "eval_sets", "final_eval_sets", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"train.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class RunConfig:
    """Everything that defines a training run."""

    kind: Literal["set_complement", "othello"] = "set_complement"
    """Which task: the set complement task ('task' section) or OthelloGPT ('othello' section)."""
    task: SetComplementConfig = field(default_factory=SetComplementConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    othello: Optional[OthelloConfig] = None
    """Othello data and length protocol (kind 'othello' only)."""

    def validate(self) -> "RunConfig":
        self.model.validate()
        self.averaging.validate()
        self.train.validate()
        if self.kind == "othello":
            if self.othello is None:
                raise ConfigError("kind 'othello' needs an 'othello' section (at least othello.data)")
            self.othello.validate()
            need = N_CTX
        else:
            self.task.validate()
            need = SetComplementTask(self.task).context_needed(self.task.max_eval_len)
        if self.model.n_ctx is not None and self.model.n_ctx < need:
            what = f"evaluation length {self.task.max_eval_len}" if self.kind != "othello" else "Othello"
            raise ConfigError(f"{what} needs a context of {need}, but model.n_ctx is {self.model.n_ctx}")
        return self

    def n_ctx(self) -> int:
        if self.kind == "othello":
            return self.model.n_ctx or N_CTX
        task = SetComplementTask(self.task)
        return self.model.n_ctx or task.context_needed(self.task.max_eval_len)

    def vocab(self) -> tuple[int, int]:
        """(d_vocab, d_vocab_out) of the task, without loading any data."""
        if self.kind == "othello":
            return D_VOCAB, D_VOCAB
        task = SetComplementTask(self.task)
        return task.d_vocab, task.d_vocab_out

    def make_task(self):
        """The task object (for Othello this memory-maps and checks the dataset)."""
        if self.kind == "othello":
            from .tasks.othello_task import OthelloTask

            return OthelloTask(self.othello)
        return SetComplementTask(self.task)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, overrides: Optional[list[str]] = None) -> "RunConfig":
        data = {k: v for k, v in data.items() if k not in DERIVED_KEYS}
        if overrides:
            data = apply_overrides(data, overrides)
        return from_dict(cls, data).validate()


def load_config(path: str | Path | None, overrides: Optional[list[str]] = None) -> RunConfig:
    """Read a JSON config (a run's config.json works too); None means the defaults."""
    if path is None:
        return RunConfig.from_dict(RunConfig().to_dict(), overrides)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    return RunConfig.from_dict(data, overrides)


def preset_path(name: str) -> Path:
    """Path of a config shipped in training/configs/ (e.g. 'demo_baseline')."""
    return Path(__file__).parent / "configs" / f"{name}.json"


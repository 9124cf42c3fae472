"""The run configuration: task, model, weight averaging and training settings in one object.

On disk it is JSON with one section per part. A run directory's ``config.json`` additionally
holds ``hooked_transformer_config`` (what plain TransformerLens needs to rebuild the model) and
``meta``; both are derived, and ignored when the file is read back as a config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from training.averaging import AveragingConfig, NamedAveraging
from training.configtools import apply_overrides, check_type, from_dict, to_dict
from training.errors import ConfigError
from training.models import ModelConfig, check_hooked_config
from training.tasks import registry
from training.tasks.base import TaskShape

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
    """Evaluate raw and averaged weights every this many steps (and at the end, on final_eval_sets)."""
    eval_sets: int = 256
    """Random sets per length in periodic evaluations (the last step's is the final evaluation)."""
    final_eval_sets: int = 2048
    """Random sets per length in the final evaluation (final_metrics.json, metrics.jsonl's last line)."""
    eval_seed: int = 12345
    """Seed of the evaluation sets: every model and every evaluation sees the same sets."""
    checkpoint_every: int = 500
    """Write a resumable checkpoint every this many steps (and at the end)."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    bf16: bool | str = False
    """bf16 autocast for the training forward pass: true (on CUDA or CPU), "cuda" (on CUDA only:
    fp32 on a CPU, for a GPU recipe run on a laptop) or false. Weights, optimizer, averages and
    evaluation stay fp32; docs/benchmarks.md says what it buys on a CPU and what it changes."""
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
        for name in ("seed", "eval_seed"):  # torch and numpy take seeds up to 2^63 - 1
            if not 0 <= getattr(self, name) < 2**63:
                raise ConfigError(f"train.{name} must be in 0..2^63-1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip < 0:
            raise ConfigError("train.warmup_steps and train.grad_clip must be >= 0, min_lr_ratio in [0, 1]")
        for name in ("eval_every", "eval_sets", "final_eval_sets", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.bf16 not in (True, False, "cuda"):
            raise ConfigError(f'train.bf16 must be true, false or "cuda", got {self.bf16!r}')
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"train.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


CORE_SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig}
LEGACY_AVERAGE = "averaged"
"""The name the old single ``averaging`` section's average is saved under: a config (or run) that
still has the section loads with that average folded into ``averagers`` under this name."""


@dataclass
class RunConfig:
    """Everything that defines a training run.

    ``kind`` names the task (``training/tasks/registry.py``); each registered task reads its own
    section (``task`` for the set complement task, ``othello`` for OthelloGPT), reachable as an
    attribute (``cfg.task``, ``cfg.othello``) and as ``cfg.task_config`` for the run's own kind.
    A section the config leaves out is None, except the set task's ``task`` section, which has
    always been filled with its defaults."""

    kind: str = "set_complement"
    """Which task: a key of ``training.tasks.registry.TASKS`` ('set_complement' or 'othello')."""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sections: dict[str, Any] = field(default_factory=lambda: _parse_sections({}))
    """Task sections by name (None where absent)."""
    averagers: list[NamedAveraging] = field(default_factory=list)
    """Averages of the raw trajectory, each saved and evaluated under its own name. The one way to
    configure an average; an old config's ``averaging`` section (and ``--set averaging.mode=...``)
    becomes the averager named 'averaged'."""

    def __getattr__(self, name: str):
        # Called only for names that are not fields: task sections such as cfg.task, cfg.othello.
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def task_config(self):
        """The config section of this run's own task."""
        return self.sections[registry.entry(self.kind).section]

    @property
    def shape(self) -> TaskShape:
        """Vocabulary, context and training range of the task, without loading any data."""
        return registry.task_shape(self.kind, self.task_config)

    def averaging_configs(self) -> dict[str, AveragingConfig]:
        """Every average the run keeps, by the name its weights and metrics are saved under."""
        return {a.name: a for a in self.averagers}

    def validate(self) -> "RunConfig":
        entry = registry.entry(self.kind)
        self.model.validate()
        for a in self.averagers:
            a.validate()
        names = [a.name for a in self.averagers]
        if len(set(names)) != len(names):
            raise ConfigError(f"averagers: the name {next(n for n in names if names.count(n) > 1)!r} is used twice")
        self.train.validate()
        if self.task_config is None:
            article = "an" if entry.section[0] in "aeiou" else "a"
            raise ConfigError(f"kind '{self.kind}' needs {article} '{entry.section}' section")
        self.task_config.validate()
        shape = self.shape
        if self.model.n_ctx is not None and self.model.n_ctx < shape.n_ctx:
            raise ConfigError(
                f"{shape.context_reason} needs a context of {shape.n_ctx}, but model.n_ctx is {self.model.n_ctx}"
            )
        check_hooked_config(self.model, shape.d_vocab, shape.d_vocab_out, self.n_ctx())
        return self

    def n_ctx(self) -> int:
        return self.model.n_ctx or self.shape.n_ctx

    def vocab(self) -> tuple[int, int]:
        """(d_vocab, d_vocab_out) of the task, without loading any data."""
        shape = self.shape
        return shape.d_vocab, shape.d_vocab_out

    def make_task(self):
        """The task object (for Othello this memory-maps and checks the dataset)."""
        return registry.make_task(self.kind, self.task_config)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind}
        for name, value in self.sections.items():
            out[name] = None if value is None else to_dict(value)
        for name in CORE_SECTIONS:
            out[name] = to_dict(getattr(self, name))
        out["averagers"] = [to_dict(a) for a in self.averagers]
        return out

    @classmethod
    def from_dict(cls, data: dict, overrides: Optional[list[str]] = None) -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object with sections, got {type(data).__name__}")
        data = {k: v for k, v in data.items() if k not in DERIVED_KEYS}
        # Every section is present before overrides apply, so '--set task.v=8' works on a file
        # that leaves the 'task' section out (absent task sections are null: filled on demand).
        for name in CORE_SECTIONS:
            data.setdefault(name, {})
        for name in registry.sections():
            data.setdefault(name, None)
        data.setdefault("averagers", [])
        data.setdefault("averaging", {})  # the legacy section, so that '--set averaging.mode=bema' works
        if overrides:
            data = apply_overrides(data, overrides)
        known = {"kind", "averagers", "averaging", *CORE_SECTIONS, *registry.sections()}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}'")
        kind = data.get("kind", "set_complement")
        if not isinstance(kind, str):
            raise ConfigError(f"kind must be a string, got {kind!r}")
        registry.entry(kind)
        core = {name: _section(c, data[name], name) for name, c in CORE_SECTIONS.items()}
        averagers = check_type(
            data["averagers"] if data["averagers"] is not None else [], list[NamedAveraging], "averagers"
        )
        legacy = _section(AveragingConfig, data["averaging"], "averaging")
        legacy.validate()
        if legacy.mode != "none":  # fold the old section in, first, as it was evaluated first
            if any(a.name == LEGACY_AVERAGE for a in averagers):
                raise ConfigError(f"averaging and averagers both define the average {LEGACY_AVERAGE!r}; keep one")
            averagers = [NamedAveraging(name=LEGACY_AVERAGE, **to_dict(legacy)), *averagers]
        return cls(kind=kind, sections=_parse_sections(data), averagers=averagers, **core).validate()


def _section(cls: type, value: Any, name: str):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"config section '{name}' must be an object, got {value!r}")
    return from_dict(cls, value, prefix=f"{name}.")


def _parse_sections(data: dict) -> dict[str, Any]:
    """Each registered task section: parsed when given, else its defaults or None."""
    out = {}
    for name, entry in registry.sections().items():
        value = data.get(name)
        if value is None:
            out[name] = entry.config_cls() if entry.default_section else None
        else:
            out[name] = _section(entry.config_cls, value, name)
    return out


def load_config(path: str | Path | None, overrides: Optional[list[str]] = None) -> RunConfig:
    """Read a JSON config (a run's config.json works too); None means the defaults."""
    if path is None:
        return RunConfig.from_dict(RunConfig().to_dict(), overrides)
    path = Path(path)
    try:
        found = path.is_file()
    except (OSError, ValueError):  # e.g. a name with a NUL byte
        found = False
    if not found:
        raise ConfigError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    return RunConfig.from_dict(data, overrides)


def preset_path(name: str) -> Path:
    """Path of a config shipped in training/configs/ (e.g. 'demo_baseline')."""
    return Path(__file__).parent / "configs" / f"{name}.json"

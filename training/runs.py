"""Run directories: creating them safely, writing checkpoints atomically, and loading runs.

A run directory holds::

    config.json                  every setting, plus the plain HookedTransformerConfig kwargs
    metrics.jsonl                one line per periodic evaluation (raw and averaged weights); the
                                 last step's line is the final evaluation
    final_metrics.json           the final per-length evaluation, written when training ends
    weights_raw.safetensors      latest raw weights (full state dict)
    weights_averaged.safetensors latest averaged weights (only when averaging is on)
    trainer_state.pt             everything needed to resume exactly (weights_only loadable)

Every file is written atomically, so a run killed at any moment (``kill -9`` included) leaves
the last checkpoint intact and resumable.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from training import atomic
from training.config import RunConfig, load_config
from training.errors import CheckpointError, ConfigError, WorkbenchError
from training.models import build_model, hooked_config_kwargs

CONFIG = "config.json"
METRICS = "metrics.jsonl"
FINAL = "final_metrics.json"
STATE = "trainer_state.pt"
WEIGHTS = {"raw": "weights_raw.safetensors", "averaged": "weights_averaged.safetensors"}
VERSION = "0.1.0"


def weights_file(name: str) -> str:
    """The weights file of raw weights, the 'averaged' weights, or a named average."""
    return WEIGHTS.get(name, f"weights_{name}.safetensors")


def weight_names(cfg: RunConfig) -> list[str]:
    """Every set of weights a run saves: 'raw', then each average by name."""
    return ["raw", *cfg.averaging_configs()]


def weights_to_load(path: str | Path, cfg: RunConfig, weights: str) -> str:
    """Which saved weights ``weights`` means for the run at ``path``: itself, or 'raw' for
    'averaged' on a run without an averaging section; a one-line error for a name it lacks."""
    names = weight_names(cfg)
    if weights in names:
        return weights
    if weights == "averaged":
        return "raw"
    raise WorkbenchError(f"{path} has no weights {weights!r} (it has {', '.join(names)})")


def require_weights(path: str | Path, names) -> None:
    """A one-line CheckpointError unless the run at ``path`` holds every weights file in ``names``
    (a run not trained yet has none): for a tool to call before it makes any folder."""
    for name in names:
        f = Path(path) / weights_file(name)
        if not f.is_file():
            raise CheckpointError(f"{path} has no {name} weights yet ({f.name} missing): train or resume it first")


def run_config_json(cfg: RunConfig) -> dict:
    """config.json's content: the run config plus what plain TransformerLens needs."""
    d_vocab, d_vocab_out = cfg.vocab()
    data = cfg.to_dict()
    data["hooked_transformer_config"] = hooked_config_kwargs(cfg.model, d_vocab, d_vocab_out, cfg.n_ctx())
    data["meta"] = {"workbench_version": VERSION, "task": cfg.kind}
    return data


def create_run_dir(path: str | Path, cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create ``path`` holding ``config.json``; an existing run is replaced only with ``overwrite``.

    The directory appears complete or not at all: it is assembled under a temporary name.
    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise WorkbenchError(f"run directory {path} already exists (use --overwrite to replace it, or resume it)")
        if not path.is_dir() or (any(path.iterdir()) and not (path / CONFIG).exists()):
            raise WorkbenchError(f"refusing to overwrite {path}: it is not a run directory")
    from training.trainer import resolve_device

    resolve_device(cfg.train.device)  # a run this machine cannot train is refused before its folder exists
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        os.chmod(tmp, 0o777 & ~atomic.umask())  # mkdtemp's folder is private (0700); mkdir's is not
    except OSError as e:
        raise WorkbenchError(f"cannot create run directory {path}: {e.strerror or e}") from None
    try:
        atomic.write_json(tmp / CONFIG, run_config_json(cfg))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def prepare_run(path: str | Path, cfg: RunConfig, overwrite: bool = False) -> Path:
    """The one reuse rule of every experiment: the run directory for ``cfg`` at ``path``.

    - absent: created (``config.json`` only);
    - present with the same config: kept as it is, so ``train`` resumes it, or finds it finished;
    - present with another config (or unreadable): an error naming it, unless ``overwrite``,
      which replaces it with a fresh run.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        try:
            same = read_run_config(path).to_dict() == cfg.to_dict()
        except WorkbenchError:
            same = False
        if not same:
            raise WorkbenchError(f"{path} holds a different run (use --overwrite to replace it)")
        return path
    return create_run_dir(path, cfg, overwrite=overwrite)


def read_run_config(path: str | Path) -> RunConfig:
    """The validated RunConfig of a run directory."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"run directory not found: {path}")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} is not a run directory: {CONFIG} is missing")
    try:
        return load_config(cfg_path)
    except ConfigError as e:
        raise CheckpointError(f"run directory {path} has a corrupt or invalid {CONFIG} ({e})") from None


def save_weights(path: Path, state: dict[str, torch.Tensor], step: int) -> None:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    atomic.write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata={"step": str(step)}))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"weights file {path} is corrupt or truncated ({e})") from None


def weights_step(path: Path) -> int | None:
    """The training step a weights file was written at (its metadata), or None if unrecorded."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            step = (f.metadata() or {}).get("step")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"weights file {path} is corrupt or truncated ({e})") from None
    return int(step) if step is not None and step.isdigit() else None


def check_state(
    model: torch.nn.Module, state: dict, source, what: str = "the run's model", required: set[str] | None = None
) -> None:
    """A one-line CheckpointError unless ``state`` fits ``model``: no unexpected key, every key of
    ``required`` (default: the whole state dict) present, and every shape equal."""
    own = model.state_dict()
    required = set(own) if required is None else required
    missing = sorted(k for k in required if k not in state)
    extra = sorted(set(state) - set(own))
    if missing or extra:
        which = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise CheckpointError(f"{source} does not match {what} ({which})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{source} does not match {what} ({k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)})"
            )


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict`` with a one-line CheckpointError on missing keys or shape mismatch."""
    check_state(model, state, source)
    model.load_state_dict(state)


def load_run(path: str | Path, weights: str = "averaged", device: torch.device | str = "cpu") -> HookedTransformer:
    """A trained run's model, in eval mode, with the run's dropout hooks (inactive in eval).

    ``weights`` is 'raw', 'averaged' (the ``averaging`` section's EMA/BEMA weights; for a run
    trained without it, the raw weights) or the name of one of the run's ``averagers``.
    """
    path = Path(path)
    cfg = read_run_config(path)
    file = path / weights_file(weights_to_load(path, cfg, weights))
    d_vocab, d_vocab_out = cfg.vocab()
    model = build_model(cfg.model, d_vocab, d_vocab_out, cfg.n_ctx(), cfg.train.seed, device)
    load_state_into(model, load_weights(file), file)
    model.eval()
    return model


def load_trainer_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line and fsync. A write that fails (a full disk) is cut back off, and a torn
    last line a ``kill -9`` left is ended first, so a torn line never swallows the next record;
    ``read_jsonl`` drops torn lines. Unbuffered, so that nothing is left to flush after a failure."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # frees what was written, which a full disk allows
            raise
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_metrics(path: str | Path) -> list[dict]:
    """Every periodic evaluation record of a run, oldest first (for notebooks)."""
    return read_jsonl(Path(path) / METRICS)


def read_final_metrics(path: str | Path) -> dict:
    """The final evaluation of a finished run: {'raw': LengthMetrics dict, 'averaged': ...}."""
    file = Path(path) / FINAL
    if not file.is_file():
        raise CheckpointError(f"{path} has no {FINAL}: the run has not finished")
    return json.loads(file.read_text())

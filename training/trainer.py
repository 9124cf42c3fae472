"""The training loop: AdamW with warm-up and cosine decay, weight averaging, evaluation, resume.

Read ``train`` top to bottom: build everything from the config, restore the last checkpoint if
there is one, then step. The task (``training/tasks/``) draws the batches, defines the loss and
evaluates; the trainer never asks which task it has. Every ``eval_every`` steps the raw weights
and every average are evaluated at every length and a line goes to ``metrics.jsonl`` (the last
step's line is the final evaluation, on ``final_eval_sets``, which is not run twice); every
``checkpoint_every`` steps the full state (weights, optimizer, scheduler, averagers, RNG states)
is written atomically, so a run that is killed resumes exactly where its last checkpoint left it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from training import atomic, runs
from training.averaging import WeightAverager
from training.config import RunConfig, TrainConfig
from training.errors import CheckpointError, TrainingDiverged, WorkbenchError
from training.loop import run_steps
from training.metrics import LengthMetrics
from training.models import build_model, trainable_parameters
from training.scoped import deterministic_algorithms, forked_rng

RECOMPILE_LIMIT = 64
"""Compiled graphs one function may keep inside ``training_scope``: the ensemble step compiles one
static graph per config shape, and dynamo's default of 8 is the default study's count of shapes,
with no room for another."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"train.device is {name!r} but CUDA is not available")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise WorkbenchError(f"train.device is {name!r} but this machine has {torch.cuda.device_count()} CUDA devices")
    return device


def compiled(fn, tcfg: TrainConfig, dynamic: bool | None = None):
    """``fn`` (a model or a function) through ``torch.compile`` in ``train.compile_mode``;
    ``dynamic=False`` compiles one static graph per input shape instead of a shape-generic one."""
    return torch.compile(fn, mode=None if tcfg.compile_mode == "default" else tcfg.compile_mode, dynamic=dynamic)


def lr_lambda(cfg) -> callable:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at the last step."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    params = trainable_parameters(model)
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused=True: one kernel for all parameters instead of a Python loop over them; on a
    # 1-layer model on the CPU it is 4x faster per step than the default implementation.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=True)


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` with foreach kernels (which it skips on the CPU)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp(max=1.0))
    return total


@dataclass
class TrainResult:
    """What a finished (or stopped) call to ``train`` leaves behind."""

    run_dir: Path
    step: int
    finished: bool
    final: dict[str, LengthMetrics] | None
    seconds: float
    """Wall seconds of this call."""
    start_step: int = 0
    """The step this call started from (above 0 when it resumed a run)."""
    train_seconds: float | None = None
    """Wall seconds of training over every call (a checkpoint carries them), to the end of this one."""


class Trainer:
    """Holds a run's model, optimizer, averager and RNGs; ``train()`` below drives it through the
    shared loop (``training/loop.py``), with checkpoints.

    It seeds the global RNG (dropout masks come from it) and expects to run inside
    ``training_scope``, which ``train()`` provides: deterministic kernels and a forked RNG, both
    restored afterwards."""

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        # wall seconds of training in earlier processes (from the checkpoint) and since this one began
        self.seconds_before, self.t_start = 0.0, time.time()
        self.device = resolve_device(cfg.train.device)
        self.task = cfg.make_task()
        d_vocab, d_vocab_out = cfg.vocab()
        build = lambda: build_model(  # noqa: E731
            cfg.model, d_vocab, d_vocab_out, cfg.n_ctx(), cfg.train.seed, self.device
        )
        self.model = build()
        averaging = cfg.averaging_configs()
        self.avg_model = build() if averaging else None  # one evaluation model, loaded per average
        self.forward = compiled(self.model, cfg.train) if cfg.train.compile else self.model
        self.params = list(trainable_parameters(self.model).values())
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.train))
        # every average by the name it is saved under; all of them read the same raw trajectory
        self.averagers = {name: WeightAverager(self.model, c) for name, c in averaging.items()}
        self.data_gen = torch.Generator(device=self.device).manual_seed(cfg.train.seed + 1)
        torch.manual_seed(cfg.train.seed)  # dropout masks come from the global RNG
        self.step = 0
        self.checkpoints = True
        self.last_good = 0  # the step of the last checkpoint written (or restored)
        self.final_results: dict[str, LengthMetrics] | None = None  # the last step's evaluation

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "averagers": {name: a.state_dict() for name, a in self.averagers.items()},
            "data_rng": self.data_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "train_seconds": self.train_seconds(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def train_seconds(self) -> float:
        """Wall seconds this run has trained, over every process that trained it."""
        return self.seconds_before + time.time() - self.t_start

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params)

    def save_checkpoint(self) -> None:
        state = self.state_dict()
        atomic.write_with(self.run_dir / runs.STATE, lambda p: torch.save(state, p))
        self.save_weights()

    def save_weights(self) -> None:
        """The weights files (raw, and one per average) at the current step."""
        runs.save_weights(self.run_dir / runs.weights_file("raw"), self.model.state_dict(), self.step)
        for name, averager in self.averagers.items():
            runs.save_weights(self.run_dir / runs.weights_file(name), averager.averaged_state_dict(), self.step)

    def check_weights_files(self) -> None:
        """Every weights file the run holds must load and fit the model; stop with one line if not.

        ``trainer_state.pt`` is written first at each checkpoint, so a run killed between that
        write and the weights' may hold weights of the step before, or none yet: those are
        rewritten from the restored state. A file that is unreadable, or holds another model's
        tensors, is an error: nothing the run wrote itself can look like that (writes are atomic)."""
        stale = False
        for kind in ["raw", *self.averagers]:
            path = self.run_dir / runs.weights_file(kind)
            if not path.exists():
                stale = True
                continue
            runs.check_state(self.model, runs.load_weights(path), path)
            stale |= runs.weights_step(path) != self.step
        if stale:
            self.save_weights()

    def restore(self) -> bool:
        """Load ``trainer_state.pt`` if present; drop metrics lines logged after it."""
        path = self.run_dir / runs.STATE
        for stale in self.run_dir.glob(".*.tmp"):  # left by a write that was killed midway
            stale.unlink(missing_ok=True)
        if not path.exists():
            self._truncate_metrics(0)
            return False
        state = runs.load_trainer_state(path)
        try:
            runs.load_state_into(self.model, state["model"], path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            saved = dict(state.get("averagers", {}))
            if "averager" in state and "averaged" not in saved:  # a checkpoint from before the fold
                saved["averaged"] = state["averager"]
            for name, averager in self.averagers.items():
                averager.load_state_dict(saved[name])
            self.data_gen.set_state(state["data_rng"])
            torch.set_rng_state(state["torch_rng"])
            if "cuda_rng" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.step = int(state["step"])
            self.seconds_before, self.t_start = float(state.get("train_seconds", 0.0)), time.time()
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path} does not match this run ({type(e).__name__}: {e})") from None
        self.check_weights_files()
        self._truncate_metrics(self.step)
        return True

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / runs.METRICS
        if path.exists():
            keep = [r for r in runs.read_jsonl(path) if r.get("step", 0) <= step]
            atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, n: int) -> dict[str, LengthMetrics]:
        """Raw and averaged weights at every length, ``n`` examples per length (sets, or
        held-out games for Othello), on the fixed evaluation seed."""
        seed = self.cfg.train.eval_seed
        out = {"raw": self.task.evaluate(self.model, n, seed)}
        for name, averager in self.averagers.items():
            self.avg_model.load_state_dict(averager.averaged_state_dict())
            out[name] = self.task.evaluate(self.avg_model, n, seed)
        return out

    def eval_record(self, results: dict[str, LengthMetrics], mean_loss: float, t0: float) -> dict:
        """One metrics.jsonl line: step, mean training loss since the last one, lr, metrics."""
        record = {
            "step": self.step,
            "loss": mean_loss,
            "lr": self.scheduler.get_last_lr()[0],
            "elapsed_s": round(time.time() - t0, 3),
        }
        record.update({k: m.to_dict() for k, m in results.items()})
        return record

    # -- the loop's side (training/loop.py) ------------------------------------------------
    def running(self) -> bool:
        return True

    def watch(self, window: torch.Tensor, loss: torch.Tensor) -> str:
        """Stop on a non-finite loss in the window; the loss for the progress bar."""
        _check_loss(window.item(), self.step, self.last_good, self.run_dir)
        return f"loss={loss.item():.4f}"

    def log_eval(self, loss_sum: torch.Tensor, count: int, t0: float) -> str:
        tcfg = self.cfg.train
        # the last step's evaluation is the final one, kept for final_metrics.json: one
        # evaluation at the end instead of an eval_sets one followed by a final_eval_sets one
        last = self.step == tcfg.steps
        results = self.evaluate(tcfg.final_eval_sets if last else tcfg.eval_sets)
        if last:
            self.final_results = results
        runs.append_jsonl(self.run_dir / runs.METRICS, self.eval_record(results, loss_sum.item() / max(1, count), t0))
        return _eval_postfix(results)

    def checkpoint(self) -> None:
        _check_weights(self, self.last_good)
        self.save_checkpoint()
        self.last_good = self.step

    # -- one optimizer step --------------------------------------------------------------
    def train_step(self) -> torch.Tensor:
        cfg = self.cfg.train
        batch = self.task.sample_batch(cfg.batch_size, generator=self.data_gen, device=self.device)
        with bf16_autocast(cfg.bf16, self.device):
            logits = self.forward(batch.tokens)
        # the loss in fp32: a bf16 log-softmax would lose the small target probabilities
        loss = self.task.loss(logits.float(), batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            clip_grad_norm(self.params, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        for averager in self.averagers.values():
            averager.update(self.step)
        return loss.detach()


def bf16_autocast(setting: bool | str, device: torch.device) -> contextlib.AbstractContextManager:
    """``train.bf16``: the training forward in bf16 autocast on the run's device (CUDA, or a CPU
    whose matrix units run bf16; the weights, optimizer and averages stay fp32), else nothing.
    ``"cuda"`` turns it on for a CUDA device only, so a GPU preset keeps fp32 on a CPU."""
    on = setting is True or (setting == "cuda" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


@contextlib.contextmanager
def training_scope(cfg: RunConfig):
    """Deterministic kernels as the config says, the caller's global RNG states put back after,
    and with ``train.compile`` room for ``RECOMPILE_LIMIT`` compiled graphs per function.

    Bit-reproducible runs (and exact resume) need deterministic kernels: multi-threaded CPU
    backward passes otherwise sum in a varying order. All three are process-wide, hence scoped
    (here, once per run: entering dynamo's config patch costs ~0.2 ms, too much per step)."""
    warn_only = resolve_device(cfg.train.device).type == "cuda"
    graphs = contextlib.nullcontext()
    if cfg.train.compile:
        graphs = torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT)
    with deterministic_algorithms(cfg.train.deterministic, warn_only=warn_only), forked_rng(), graphs:
        yield


def _check_loss(window: float, step: int, last_good: int, run_dir: Path) -> None:
    if not math.isfinite(window):
        raise TrainingDiverged(
            f"loss became {window} at or before step {step}; stopped, the last good "
            f"checkpoint (step {last_good}) in {run_dir} is intact"
        )


def _check_weights(tr: Trainer, last_good: int) -> None:
    if not tr.weights_finite():
        raise TrainingDiverged(
            f"weights became non-finite by step {tr.step}; stopped, the last good "
            f"checkpoint (step {last_good}) in {tr.run_dir} is intact"
        )


def _eval_postfix(results: dict[str, LengthMetrics]) -> str:
    """In-range and beyond TV of the averaged (else raw) weights, for the progress bar."""
    shown = results.get("averaged", results["raw"]).summary()
    return "".join(
        f" tv_{k}={v['tv']:.3f}"
        for k, v in (("in", shown.get("in_range")), ("out", shown.get("beyond")))
        if v and "tv" in v
    )


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    stop_after: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``, which must already hold its ``config.json``.

    ``stop_after`` ends this call after that many optimizer steps in total (a checkpoint is
    written first), as if the process had been stopped there; calling ``train`` again resumes.
    The caller's deterministic-algorithms setting and global RNG states are restored on return.
    """
    with training_scope(cfg):
        return _train(cfg, run_dir, stop_after, progress, desc)


def _train(cfg: RunConfig, run_dir, stop_after, progress, desc) -> TrainResult:
    t0 = time.time()
    tr = Trainer(cfg, run_dir)
    tcfg = cfg.train
    tr.restore()
    tr.last_good = start_step = tr.step
    end = tcfg.steps if stop_after is None else min(tcfg.steps, stop_after)
    bar = tqdm(
        total=tcfg.steps,
        initial=tr.step,
        desc=desc or tr.run_dir.name,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )
    try:
        run_steps(tr, tcfg, end, bar, t0)
    finally:
        bar.close()
    final = None
    if tr.step >= tcfg.steps:
        final = tr.final_results if tr.final_results is not None else tr.evaluate(tcfg.final_eval_sets)
        atomic.write_json(tr.run_dir / runs.FINAL, {"step": tr.step, **{k: m.to_dict() for k, m in final.items()}})
    return TrainResult(
        tr.run_dir, tr.step, tr.step >= tcfg.steps, final, time.time() - t0, start_step, tr.train_seconds()
    )

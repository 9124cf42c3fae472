"""Train several runs of one model shape as one batched model, with ``torch.func``.

A study's arms (seeds x dropout rates x targets of one base config) share a model shape, a
schedule and their batches; they differ in seed, dropout rates and loss. Training them one by one
pays Python and kernel-launch overhead per run and per step. Stacking their weights
(``stack_module_state``) and mapping one functional forward and backward over the stack
(``vmap(grad_and_value(...), randomness="different")``) pays it once per step for all of them
(``benchmarks/ensemble_throughput.py`` measures the ratio).

Each member keeps what makes it its own run:

- its initialisation and data order (its seed: the same initial weights and the same batches as
  a separate run with that seed);
- its dropout rates, read per member inside the mapped forward;
- its loss: members may differ in the task's loss-only fields (``Task.loss_only_fields``, e.g.
  the set task's sampled or exact target); members of one seed then see the same batches. A
  task's ``loss_target`` (one-hot next items, p*) is computed once per batch and task outside
  the mapped step, and each member gets its own;
- its gradient-norm clip, on the norm of its own gradients;
- its averagers: every averager update is elementwise, so one averager over the stacked tensors
  is one per member;
- its run directory (``config.json``, ``metrics.jsonl``, whose last line is the final evaluation
  as in a separate run, ``final_metrics.json`` and a weights file
  per average), which ``runs.load_run`` loads as a plain ``HookedTransformer``.

AdamW acts elementwise and the members share learning rate, schedule and weight decay, so one
optimizer over the stacked tensors is one optimizer per member. With dropout 0 a member follows
the separate run up to float rounding (``tests/test_ensemble.py``). With dropout its masks come
from vmap's per-member random stream instead of the separate run's: the same rate, another draw.

With ``train.compile`` the mapped step goes through ``torch.compile`` (what it gains per shape, and
what the compile costs, is measured by ``benchmarks/ensemble_compile.py``; ``docs/benchmarks.md``
has the figures). The compile is static (``dynamic=False``): an ensemble's shapes never change
during training, and a study worker that meets a second config shape then compiles one more
static graph instead of recompiling a shape-generic one, which took 4x as long. Every shape's
graph stays cached for the worker's later configs of that shape (up to
``trainer.RECOMPILE_LIMIT`` shapes, raised inside ``training_scope``). A compile that fails leaves
the ensemble training eagerly, with one line on stderr.

A member whose loss or weights become non-finite is marked failed (with the step) and the others
go on: the mapped members never mix, so its NaNs cannot reach them. No checkpoint is written
during training; a study retries an interrupted ensemble from the start.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from tqdm.auto import tqdm

from training import atomic, runs
from training.averaging import WeightAverager
from training.config import RunConfig
from training.errors import ConfigError
from training.loop import run_steps
from training.metrics import LengthMetrics
from training.models import build_model
from training.tasks import registry
from training.trainer import bf16_autocast, compiled, lr_lambda, resolve_device, training_scope

DROPOUT_SITES = ("embed_dropout", "attn_dropout", "resid_dropout")


@dataclass
class MemberResult:
    """What training left for one member."""

    run_dir: Path
    final: dict[str, LengthMetrics] | None
    """Final metrics of raw weights and every average; None when the member failed."""
    error: str | None = None
    """Why the member failed (non-finite loss or weights, with the step), else None."""


def ensemble_key(cfg: RunConfig) -> dict:
    """What runs must share to train as one ensemble: the config without what members may differ
    in (seed, dropout rates, the task's loss-only fields)."""
    entry = registry.entry(cfg.kind)
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k != "seed"}
    d["model"] = {k: v for k, v in d["model"].items() if k not in DROPOUT_SITES}
    d[entry.section] = {k: v for k, v in d[entry.section].items() if k not in entry.task_cls.loss_only_fields}
    return d


def check_members(cfgs: list[RunConfig]) -> None:
    """A one-line ConfigError unless the configs can train as one ensemble."""
    if not cfgs:
        raise ConfigError("an ensemble needs at least one run")
    ref = ensemble_key(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], 1):
        mine = ensemble_key(cfg)
        if mine != ref:
            section = next(k for k in ref if ref.get(k) != mine.get(k))
            raise ConfigError(
                f"ensemble member {i} differs from member 0 in '{section}': members may differ only "
                "in train.seed, dropout rates and the task's loss-only fields"
            )


RATES = "ensemble_rates"
"""A non-persistent buffer on the template holding one member's dropout rates (embed, attention,
residual): ``functional_call`` swaps in each member's row under ``vmap``, so a hook reading it
sees its own member's rates with no side effect (which ``torch.compile`` could not trace)."""


def _dropout_hook(model: torch.nn.Module, index: int):
    def hook(x: torch.Tensor, hook) -> torch.Tensor:
        p = getattr(model, RATES)[index]
        # inverted dropout with a per-member rate; p = 0 keeps every element and divides by 1
        return x * (torch.rand_like(x) >= p) / (1 - p)

    return hook


def _add_ensemble_dropout(model, cfgs: list[RunConfig]) -> None:
    """The hooks of ``models.add_dropout_hooks``, at the sites any member uses, with per-member
    rates read from the ``RATES`` buffer."""
    model.register_buffer(RATES, torch.zeros(len(DROPOUT_SITES)), persistent=False)
    used = {site: any(getattr(c.model, site) > 0 for c in cfgs) for site in DROPOUT_SITES}
    mc = cfgs[0].model
    if used["embed_dropout"]:
        model.add_perma_hook("blocks.0.hook_resid_pre", _dropout_hook(model, 0))
    for layer in range(mc.n_layers):
        if used["attn_dropout"]:
            model.add_perma_hook(f"blocks.{layer}.attn.hook_pattern", _dropout_hook(model, 1))
        if used["resid_dropout"]:
            model.add_perma_hook(f"blocks.{layer}.hook_attn_out", _dropout_hook(model, 2))
            if not mc.attn_only:
                model.add_perma_hook(f"blocks.{layer}.hook_mlp_out", _dropout_hook(model, 2))


class EnsembleTrainer:
    """The stacked weights, optimizer, averagers and data streams of an ensemble."""

    def __init__(self, cfgs: list[RunConfig], run_dirs: list[Path]):
        check_members(cfgs)
        self.cfgs, self.run_dirs = cfgs, [Path(d) for d in run_dirs]
        cfg = cfgs[0]
        self.tcfg = cfg.train
        self.device = resolve_device(cfg.train.device)
        d_vocab, d_vocab_out = cfg.vocab()
        members = [
            build_model(c.model, d_vocab, d_vocab_out, c.n_ctx(), c.train.seed, self.device, check_inputs=False)
            for c in cfgs
        ]
        stacked, _ = stack_module_state(members)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in stacked.items() if v.requires_grad}
        # the dropout-free template the mapped forward runs; frozen tensors (W_pos at zero) and
        # buffers are the same for every member, so they are passed once, unstacked
        no_dropout = dataclasses.replace(cfg.model, **{s: 0.0 for s in DROPOUT_SITES})
        self.template = build_model(
            no_dropout, d_vocab, d_vocab_out, cfg.n_ctx(), cfg.train.seed, self.device, check_inputs=False
        ).train()
        self.fixed = {k: v for k, v in self.template.state_dict().items() if k not in self.params}
        _add_ensemble_dropout(self.template, cfgs)
        self.rates = torch.tensor([[getattr(c.model, s) for s in DROPOUT_SITES] for c in cfgs], device=self.device)
        self.eval_model = build_model(cfg.model, d_vocab, d_vocab_out, cfg.n_ctx(), cfg.train.seed, self.device)
        # one task per distinct loss; each member gets its own task's target (or, for a task
        # without ``loss_target``, computes every task's loss and picks its own with a one-hot weight)
        loss_keys = [json.dumps(dataclasses.asdict(c.task_config), sort_keys=True) for c in cfgs]
        distinct = list(dict.fromkeys(loss_keys))
        self.tasks = [registry.make_task(cfg.kind, cfgs[loss_keys.index(k)].task_config) for k in distinct]
        self.task_index = torch.tensor([distinct.index(k) for k in loss_keys], device=self.device)
        self.loss_pick = torch.nn.functional.one_hot(self.task_index, len(distinct)).float()
        self.by_target = False
        # one data stream per distinct seed, seeded as the separate trainer seeds its own
        seeds = [c.train.seed for c in cfgs]
        self.seeds = list(dict.fromkeys(seeds))
        self.seed_index = torch.tensor([self.seeds.index(s) for s in seeds], device=self.device)
        self.data_gens = [torch.Generator(device=self.device).manual_seed(s + 1) for s in self.seeds]
        decay = [p for p in self.params.values() if p.ndim >= 3]  # a matrix of each member
        no_decay = [p for p in self.params.values() if p.ndim < 3]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.tcfg.lr,
            betas=tuple(self.tcfg.betas),
            fused=True,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.tcfg))
        live = {k: v.detach() for k, v in self.params.items()}
        self.averagers = {name: WeightAverager(None, c, params=live) for name, c in cfg.averaging_configs().items()}
        self.eager_step_fn = vmap(grad_and_value(self._member_loss), in_dims=(0, 0, 0, 0), randomness="different")
        self.step_fn = self._compiled(self.eager_step_fn) if self.tcfg.compile else self.eager_step_fn
        torch.manual_seed(self.tcfg.seed)  # vmap's dropout stream
        self.step = 0
        self.errors: dict[int, str] = {}
        self.final_results: dict[int, dict[str, LengthMetrics]] = {}  # the last step's, per member
        self.checkpoints = False  # a study retries an interrupted ensemble from the start

    # -- one step for every member ---------------------------------------------------------
    def _member_loss(self, params, fields, target, rates):
        batch = self._batch_type(**fields, **self._batch_static)
        with bf16_autocast(self.tcfg.bf16, self.device):
            logits = functional_call(self.template, (params, self.fixed, {RATES: rates}), (batch.tokens,))
        logits = logits.float()  # the loss in fp32, as the single trainer computes it
        if self.by_target:
            return self.tasks[0].target_loss(logits, batch, target)
        return (torch.stack([task.loss(logits, batch) for task in self.tasks]) * target).sum()

    def _batches(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Each member's batch fields, stacked [member, ...] (one draw per distinct seed), and
        each member's loss target (or, for a task without one, its one-hot pick of the tasks)."""
        drawn = [
            self.tasks[0].sample_batch(self.tcfg.batch_size, generator=g, device=self.device) for g in self.data_gens
        ]
        self._batch_type = type(drawn[0])
        fields = {f.name: [getattr(b, f.name) for b in drawn] for f in dataclasses.fields(drawn[0])}
        self._batch_static = {k: v[0] for k, v in fields.items() if not isinstance(v[0], torch.Tensor)}
        stacked = {
            k: torch.stack(v).index_select(0, self.seed_index)
            for k, v in fields.items()
            if isinstance(v[0], torch.Tensor)
        }
        targets = [[task.loss_target(b) for task in self.tasks] for b in drawn]
        self.by_target = targets[0][0] is not None
        if not self.by_target:
            return stacked, self.loss_pick
        return stacked, torch.stack([torch.stack(t) for t in targets])[self.seed_index, self.task_index]

    def _compiled(self, step_fn):
        """``train.compile``: the mapped step through ``torch.compile`` (fuses its elementwise work;
        ``benchmarks/ensemble_throughput.py --compile`` measures it against the compile time)."""
        # HookedTransformer keeps sqrt(d_head) as a NumPy scalar, which the compiler turns into a
        # tensor whose guard fails under vmap's gradient transform; a Python float is the same value
        for block in self.template.blocks:
            block.attn.attn_scale = float(block.attn.attn_scale)
        return compiled(step_fn, self.tcfg, dynamic=False)

    def train_step(self) -> torch.Tensor:
        """One optimizer step of every member; returns the losses [member]."""
        inputs = (self.params, *self._batches(), self.rates)
        try:
            grads, losses = self.step_fn(*inputs)
        except Exception as e:  # noqa: BLE001 - only the compiled step; the eager one raises as is
            if self.step_fn is self.eager_step_fn:
                raise
            print(
                f"warning: torch.compile of the ensemble step failed ({type(e).__name__}); training eagerly",
                file=sys.stderr,
            )
            self.step_fn = self.eager_step_fn
            grads, losses = self.step_fn(*inputs)
        # contiguous: vmap may return gradients with permuted strides, which the fused AdamW
        # kernel reads in the wrong order
        grads = {k: g.detach().contiguous() for k, g in grads.items()}
        if self.tcfg.grad_clip > 0:  # each member's own global norm, as clip_grad_norm computes it
            norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()]).norm(dim=0)
            coef = (self.tcfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)
            for g in grads.values():
                g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))
        for k, p in self.params.items():
            p.grad = grads[k]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        for averager in self.averagers.values():
            averager.update(self.step)
        return losses.detach()

    # -- the loop's side (training/loop.py) ------------------------------------------------
    def running(self) -> bool:
        return len(self.errors) < len(self.cfgs)

    def watch(self, window: torch.Tensor, loss: torch.Tensor) -> None:
        """Mark the members whose loss window or weights are no longer finite as failed."""
        self.check_finite(window)

    def log_eval(self, loss_sum: torch.Tensor, count: int, t0: float) -> str:
        """One metrics.jsonl line per member still training (the last step's on the final
        evaluation's sets, kept for final_metrics.json, as in ``Trainer.log_eval``)."""
        means = (loss_sum / max(1, count)).tolist()
        last = self.step == self.tcfg.steps
        for i in range(len(self.cfgs)):
            if i in self.errors:
                continue
            record = {
                "step": self.step,
                "loss": means[i],
                "lr": self.scheduler.get_last_lr()[0],
                "elapsed_s": round(time.time() - t0, 3),
            }
            results = self.evaluate(i, self.tcfg.final_eval_sets if last else self.tcfg.eval_sets)
            if last:
                self.final_results[i] = results
            record.update({k: m.to_dict() for k, m in results.items()})
            runs.append_jsonl(self.run_dirs[i] / runs.METRICS, record)
        return ""

    def checkpoint(self) -> None:
        raise NotImplementedError("an ensemble keeps no checkpoints")

    # -- members as plain models -----------------------------------------------------------
    def member_state(self, i: int, name: str = "raw") -> dict[str, torch.Tensor]:
        """Member ``i``'s full state dict: raw weights, or an average by name."""
        tensors = self.params if name == "raw" else self.averagers[name].averaged_parameters()
        return {**self.fixed, **{k: v[i].detach() for k, v in tensors.items()}}

    def evaluate(self, i: int, n: int) -> dict[str, LengthMetrics]:
        out = {}
        for name in ["raw", *self.averagers]:
            self.eval_model.load_state_dict(self.member_state(i, name))
            out[name] = self.tasks[0].evaluate(self.eval_model, n, self.tcfg.eval_seed)
        return out

    def save_weights(self, i: int) -> None:
        for name in ["raw", *self.averagers]:
            runs.save_weights(self.run_dirs[i] / runs.weights_file(name), self.member_state(i, name), self.step)

    def check_finite(self, window: torch.Tensor) -> None:
        """Mark members whose loss window or weights are no longer finite as failed."""
        bad_loss = (~torch.isfinite(window)).tolist()
        bad_weights = (
            torch.stack([(~torch.isfinite(p.detach())).flatten(1).any(1) for p in self.params.values()]).any(0).tolist()
        )
        for i, (loss_bad, weights_bad) in enumerate(zip(bad_loss, bad_weights)):
            if i not in self.errors and (loss_bad or weights_bad):
                what = "loss" if loss_bad else "weights"
                self.errors[i] = f"TrainingDiverged: {what} became non-finite at or before step {self.step}"


def train_ensemble(
    cfgs: list[RunConfig], run_dirs: list[str | Path], progress: bool = True, desc: str = "ensemble"
) -> list[MemberResult]:
    """Train every member from scratch into its run directory (each must already hold its
    ``config.json``, e.g. from ``runs.prepare_run``). The caller's deterministic-algorithms
    setting and global RNG states are restored on return."""
    if len(cfgs) != len(run_dirs):
        raise ConfigError(f"{len(cfgs)} configs but {len(run_dirs)} run directories")
    with training_scope(cfgs[0]):
        return _train(cfgs, run_dirs, progress, desc)


def _train(cfgs, run_dirs, progress, desc) -> list[MemberResult]:
    t0 = time.time()
    tr = EnsembleTrainer(cfgs, run_dirs)
    for d in tr.run_dirs:  # a retried ensemble starts again: drop what an interrupted try wrote
        for stale in [d / runs.METRICS, d / runs.FINAL, *d.glob("weights_*.safetensors"), *d.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
    tcfg = tr.tcfg
    M = len(cfgs)
    bar = tqdm(
        total=tcfg.steps,
        desc=f"{desc} ({M} runs)",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )
    try:
        run_steps(tr, tcfg, tcfg.steps, bar, t0)
    finally:
        bar.close()
    results = []
    for i in range(M):
        if i in tr.errors:
            results.append(MemberResult(tr.run_dirs[i], None, tr.errors[i]))
            continue
        tr.save_weights(i)
        final = tr.final_results[i] if i in tr.final_results else tr.evaluate(i, tcfg.final_eval_sets)
        atomic.write_json(tr.run_dirs[i] / runs.FINAL, {"step": tr.step, **{k: m.to_dict() for k, m in final.items()}})
        results.append(MemberResult(tr.run_dirs[i], final))
    return results

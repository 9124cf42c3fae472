"""The set complement task: see a set of tokens, predict the uniform distribution over the rest.

Vocabulary. Items are the tokens ``1..v``; token ``0`` is BOS, used only when ``bos=True``. The
model's *output* vocabulary holds the items alone (``d_vocab_out = v``): output index ``j`` is
item ``j + 1``, so the model cannot put mass on BOS and every probability is over items.

Data. A batch is the first ``L`` items of uniformly random permutations of the items, drawn on
the target device in one ``argsort`` (no Python loop per sample). With causal attention, the
position holding the ``s``-th item sees exactly the first ``s`` items, so one sequence of length
``L`` is ``L`` nested sets of sizes ``1..L``. The next item of a uniformly random permutation given
its prefix is uniform over the unseen items, so next-token training on permutations *is* the
task with sampled one-hot targets (``target="sampled"``, the study's setting). ``target="exact"``
trains on the soft target p*(set) instead: 0 on members, ``1/(v-s)`` elsewhere (a noise-free
control the study did not run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from training.errors import ConfigError
from training.metrics import LengthMetrics
from training.tasks.base import Task, TaskShape
from training.tasks.calibration import CALIBRATION_SEED

BOS_TOKEN = 0


@dataclass
class SetComplementConfig:
    """Which sets the model sees in training and evaluation."""

    v: int = 32
    """Number of item tokens (items are 1..v)."""
    bos: bool = False
    """Prepend a BOS token (id 0). Off by default: the study's analytic model has no BOS."""
    train_min_len: int = 1
    """Shortest set size that contributes to the training loss."""
    train_max_len: int = 8
    """Longest set size seen in training (the sequences are this long)."""
    eval_max_len: Optional[int] = None
    """Longest set size evaluated; None means v-1 (every non-trivial length)."""
    target: Literal["sampled", "exact"] = "sampled"
    """'sampled': next item of the permutation (one-hot, noisy). 'exact': soft uniform target."""

    def validate(self) -> None:
        if self.v < 2:
            raise ConfigError(f"task.v must be at least 2, got {self.v}")
        if not 1 <= self.train_min_len <= self.train_max_len:
            raise ConfigError(
                f"task.train_min_len must be in 1..train_max_len ({self.train_max_len}), got {self.train_min_len}"
            )
        if self.train_max_len >= self.v:
            raise ConfigError(
                f"task.train_max_len must be below v={self.v} (a set of all items has no "
                f"complement), got {self.train_max_len}"
            )
        if self.eval_max_len is not None and not 1 <= self.eval_max_len < self.v:
            raise ConfigError(f"task.eval_max_len must be in 1..{self.v - 1}, got {self.eval_max_len}")

    @property
    def max_eval_len(self) -> int:
        return self.v - 1 if self.eval_max_len is None else self.eval_max_len


@dataclass
class SetComplementBatch:
    """Token sequences and what the model must predict after each prefix."""

    tokens: Int[Tensor, "batch pos"]
    """Model input: [BOS,] item_1 .. item_L."""
    items: Int[Tensor, "batch L"]
    """Item indices 0..v-1 (token - 1) of the L items in order."""
    next_item: Int[Tensor, "batch L"]
    """Index of the item that follows each prefix in the permutation (the sampled target)."""
    offset: int
    """Position of the s-th item is ``s - 1 + offset`` (1 with BOS, else 0)."""


class SetComplementTask(Task):
    """Samples permutation prefixes and defines loss and exact targets for the complement."""

    index_name = "set length s"
    index_label = "len"
    metric_names = ("tv", "kl", "itr", "margin", "gap", "acc")
    table_metrics = ("tv", "itr", "margin", "acc")
    report_command = "report"
    loss_only_fields = ("target",)
    target_field = "target"
    target_values = ("sampled", "exact")
    study_metrics = ("tv", "itr", "acc")
    calibrated_metrics = ("tv", "acc")
    temperature_controls = ("tv",)

    @classmethod
    def shape(cls, cfg: SetComplementConfig) -> TaskShape:
        offset = 1 if cfg.bos else 0
        return TaskShape(
            d_vocab=cfg.v + 1,
            d_vocab_out=cfg.v,
            n_ctx=cfg.max_eval_len + offset,
            train_range=(cfg.train_min_len, cfg.train_max_len),
            context_reason=f"evaluation length {cfg.max_eval_len}",
        )

    def __init__(self, cfg: SetComplementConfig):
        cfg.validate()
        self.cfg = cfg
        self.v = cfg.v
        self.offset = 1 if cfg.bos else 0

    @property
    def d_vocab(self) -> int:
        return self.v + 1  # BOS (0) is in the input vocabulary even when unused

    @property
    def d_vocab_out(self) -> int:
        return self.v

    @staticmethod
    def token_to_output(tokens: Int[Tensor, "*shape"]) -> Int[Tensor, "*shape"]:
        """Output (logit) index of each item token: item t is output t - 1 (BOS has none)."""
        if bool((tokens < 1).any()):
            raise ConfigError("token_to_output takes item tokens (1..v); BOS (0) has no output index")
        return tokens - 1

    @staticmethod
    def output_to_token(outputs: Int[Tensor, "*shape"]) -> Int[Tensor, "*shape"]:
        """Item token of each output (logit) index: output j is item j + 1."""
        return outputs + 1

    def context_needed(self, max_len: int) -> int:
        """Sequence length the model must accept to see sets of ``max_len`` items."""
        return max_len + self.offset

    def position_of_length(self, s: int | Tensor) -> int | Tensor:
        """Sequence position whose prediction is about the set of the first ``s`` items."""
        return s - 1 + self.offset

    def sample_batch(
        self,
        batch_size: int,
        max_len: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> SetComplementBatch:
        """Prefixes of ``batch_size`` uniformly random permutations, ``max_len`` items each."""
        L = self.cfg.train_max_len if max_len is None else max_len
        if not 1 <= L < self.v:
            raise ConfigError(f"set length must be in 1..{self.v - 1}, got {L}")
        # The generator must live on ``device``; the trainer creates it there.
        keys = torch.rand(batch_size, self.v, generator=generator, device=device)
        perm = keys.argsort(dim=1)[:, : L + 1]
        items, next_item = perm[:, :L], perm[:, 1 : L + 1]
        tokens = items + 1
        if self.offset:
            bos = torch.full((batch_size, 1), BOS_TOKEN, dtype=tokens.dtype, device=tokens.device)
            tokens = torch.cat([bos, tokens], dim=1)
        return SetComplementBatch(tokens=tokens, items=items, next_item=next_item, offset=self.offset)

    @staticmethod
    def membership(items: Int[Tensor, "batch L"], v: int) -> Bool[Tensor, "batch L v"]:
        """``[b, s-1, j]`` is True when item j is among the first s items of sequence b."""
        # a comparison, not F.one_hot, whose range check reads the data (impossible under vmap)
        one_hot = items.unsqueeze(-1) == torch.arange(v, device=items.device)
        return one_hot.cumsum(dim=1).bool()

    def exact_target(self, items: Int[Tensor, "batch L"]) -> Float[Tensor, "batch L v"]:
        """p*(set) after every prefix: 0 on members, 1/(v-s) on the v-s other items."""
        members = self.membership(items, self.v)
        valid = (~members).float()
        return valid / valid.sum(dim=-1, keepdim=True)

    def prefix_logits(
        self, logits: Float[Tensor, "batch pos v"], batch: SetComplementBatch
    ) -> Float[Tensor, "batch L v"]:
        """Logits at the positions that end each prefix (drops BOS's position)."""
        return logits[:, self.offset : self.offset + batch.items.shape[1]]

    def loss(self, logits: Float[Tensor, "batch pos v"], batch: SetComplementBatch) -> Tensor:
        """Cross-entropy over the training lengths, with sampled or exact targets."""
        lo, hi = self.cfg.train_min_len, batch.items.shape[1]
        pred = self.prefix_logits(logits, batch)[:, lo - 1 : hi].float()
        logp = pred.log_softmax(dim=-1)
        if self.cfg.target == "sampled":
            tgt = batch.next_item[:, lo - 1 : hi]
            return -logp.gather(-1, tgt.unsqueeze(-1)).mean()
        p_star = self.exact_target(batch.items)[:, lo - 1 : hi]
        return -(p_star * logp).sum(-1).mean()

    def loss_target(self, batch: SetComplementBatch) -> Float[Tensor, "batch L v"]:
        """The training positions' targets: the one-hot next item ('sampled') or p* ('exact')."""
        lo, hi = self.cfg.train_min_len, batch.items.shape[1]
        if self.cfg.target == "sampled":
            return torch.nn.functional.one_hot(batch.next_item[:, lo - 1 : hi], self.v).float()
        return self.exact_target(batch.items)[:, lo - 1 : hi]

    def target_loss(
        self, logits: Float[Tensor, "batch pos v"], batch: SetComplementBatch, target: Float[Tensor, "batch L v"]
    ) -> Tensor:
        """Cross-entropy over the training lengths against ``target`` (from ``loss_target``)."""
        lo, hi = self.cfg.train_min_len, batch.items.shape[1]
        logp = self.prefix_logits(logits, batch)[:, lo - 1 : hi].float().log_softmax(dim=-1)
        return -(target * logp).sum(-1).mean()

    def probe_batches(self, n: int, seed: int = 0, device="cpu"):
        """The evaluation sets: every position ends a set, of size position + 1 (BOS: none)."""
        from training.tasks.base import ProbeBatch
        from training.tasks.set_complement.metrics import set_batches

        L = self.cfg.max_eval_len
        index = torch.cat([torch.zeros(self.offset, dtype=torch.long), torch.arange(1, L + 1)]).to(device)
        for batch in set_batches(self, n, L, seed, 1024, device):
            yield ProbeBatch(batch.tokens, index, (index > 0).expand(batch.tokens.shape[0], -1))

    def evaluate(self, model: torch.nn.Module, n: int = 2048, seed: int = 0, logit_scale: float = 1.0) -> LengthMetrics:
        """Every metric at every set length 1..max_eval_len on ``n`` fixed-seed sets per length."""
        from training.tasks.set_complement.metrics import evaluate_lengths

        return evaluate_lengths(model, self, n=n, seed=seed, logit_scale=logit_scale)

    def calibration_data(self, n: int, device="cpu"):
        """``n`` sets per training length from the calibration seed, with p*."""
        from training.tasks.set_complement.metrics import set_batches

        lo, hi = self.cfg.train_min_len, self.cfg.train_max_len
        for batch in set_batches(self, n, hi, CALIBRATION_SEED, 1024, device):
            valid = ~self.membership(batch.items, self.v)
            keep = torch.zeros(batch.tokens.shape, dtype=torch.bool, device=batch.tokens.device)
            keep[:, self.offset + lo - 1 : self.offset + hi] = True
            p_star = torch.zeros(*batch.tokens.shape, self.v, dtype=torch.float64, device=batch.tokens.device)
            p_star[:, self.offset : self.offset + hi] = valid.double() / valid.sum(-1, keepdim=True)
            yield batch.tokens, p_star, keep

    def temperature_evaluations(self, model: torch.nn.Module, n: int, seed: int = 0, fit_n: int = 512) -> dict:
        """The oracle and per-length temperatures (``calibration.temperature_controls``)."""
        from training.tasks.set_complement.calibration import temperature_controls

        return temperature_controls(model, self, n=n, seed=seed, fit_n=fit_n)

    def calibrated_evaluations(self, model: torch.nn.Module, n: int, seed: int = 0, fit_n: int = 512) -> dict:
        """The model's own temperature and the two controls, fit as ``calibrated_evaluate`` and
        ``temperature_evaluations`` fit them, scored on one forward pass over the evaluation's sets."""
        from training.tasks.set_complement.calibration import fit_logit_scale, fit_scales_beyond
        from training.tasks.set_complement.metrics import evaluate_lengths_at

        scales = {"cal": fit_logit_scale(model, self, fit_n)}
        scales["oracle"], scales["length"] = fit_scales_beyond(model, self, fit_n)
        metrics = evaluate_lengths_at(model, self, scales, n, seed=seed)
        return {key: (metrics[key], scale) for key, scale in scales.items()}

    def calibrated_evaluate(self, model: torch.nn.Module, n: int, seed: int = 0, fit_n: int = 512):
        """The generic fit on the same sets, through the set task's own batched path (the numbers
        the committed studies were computed with)."""
        from training.tasks.set_complement.calibration import calibrated_lengths

        return calibrated_lengths(model, self, n=n, seed=seed, fit_n=fit_n)

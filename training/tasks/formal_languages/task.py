"""Formal languages as a training task: predict the set of valid next symbols after every prefix.

This is the character prediction task of Bhattamishra, Ahuja and Goyal (EMNLP 2020), in the form
the workbench studies everywhere: the true next-symbol distribution after a prefix is uniform
over its valid next symbols (``language.py``), END included when the prefix is itself a word, so
the task is "what's missing" prediction like set complement and Othello's legal moves.

Tokens. Input: BOS (0), the symbols (1..k), PAD (k + 1) after a word's end. Output: the k symbols
and END (output ``k``). Position ``t`` (BOS is position 0) predicts what may follow the first ``t``
symbols; its *index*, the length axis of every metric, is the prefix length ``t``. Index 0 (the
empty prefix) is trained on but, as BOS everywhere, left out of the metrics.

Data. Training words are a fixed pool of ``train_words`` words (the paper trains on 10,000),
lengths uniform over the lengths ``train_min_len..train_max_len`` that have words, each drawn
symbol by symbol as ``language.py`` says; prefixes therefore reach every index up to
``train_max_len``. Evaluation draws ``n`` words of *every* length ``1..eval_max_len`` that has
words, from the evaluation seed, so every prefix length has inputs.

Targets. ``exact``: the uniform distribution over the valid set. ``sampled``: one symbol drawn
uniformly from the valid set at every position, independently of how the word goes on (the next
input symbol would not do: words are drawn conditioned on their length, so the next symbol is
not uniform over the valid set; the independent draw is). The draw is part of the batch, so arms
that share a seed train on the same draws, and the two targets differ in noise alone.

Metrics per prefix length (``evaluate``): ``tv`` to the exact distribution, ``itr`` (mass on
invalid symbols), ``pos_acc`` (the predicted valid set, symbols with probability above
``threshold`` = 1 / (2 (k + 1)), half the smallest exact target, equals the true one).
``word_accuracy`` gives the paper's own measure by word length: a word counts when the predicted
set is right after every one of its prefixes (``t = 1..len``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from training.errors import ConfigError
from training.metrics import LengthMetrics
from training.scoped import eval_mode, model_device
from training.tasks.base import ProbeBatch, Task, TaskShape
from training.tasks.calibration import CALIBRATION_SEED
from training.tasks.formal_languages.language import Language, feasible_lengths, sample_words, valid_sets
from training.tasks.formal_languages.languages import make_language

BOS = 0
MAX_LEN = 1024


@dataclass
class FormalLanguageConfig:
    """Which language, and the lengths trained on and evaluated."""

    language: str = "dyck-1"
    """A name from training/tasks/formal_languages/languages.py: dyck-N, shuffle-N, bounded-dyck-N,
    tomita-N, anbn, anbncn, parity, aa-star, abab-star."""
    train_min_len: int = 1
    """Shortest training word."""
    train_max_len: int = 20
    """Longest training word; longer prefixes are beyond the training range."""
    eval_max_len: Optional[int] = None
    """Longest evaluated word; None means 3 * train_max_len (two bins as wide as training beyond it)."""
    train_words: int = 10000
    """Size of the fixed pool of training words."""
    data_seed: int = 0
    """Seed of the training pool."""
    target: Literal["sampled", "exact"] = "sampled"
    """'sampled': one valid symbol drawn per position (noisy). 'exact': uniform over the valid set."""

    @property
    def max_eval_len(self) -> int:
        return 3 * self.train_max_len if self.eval_max_len is None else self.eval_max_len

    def validate(self) -> None:
        for name in ("train_min_len", "train_max_len", "train_words", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"formal.{name} must be an integer, got {value!r}")
        if not 1 <= self.train_min_len <= self.train_max_len:
            raise ConfigError(
                f"formal.train_min_len must be in 1..train_max_len ({self.train_max_len}), got {self.train_min_len}"
            )
        if not self.train_max_len <= self.max_eval_len <= MAX_LEN:
            raise ConfigError(
                f"formal.eval_max_len must be in train_max_len..{MAX_LEN} ({self.train_max_len}..), "
                f"got {self.max_eval_len}"
            )
        if self.train_words < 1:
            raise ConfigError(f"formal.train_words must be positive, got {self.train_words}")
        if not 0 <= self.data_seed < 2**63:
            raise ConfigError(f"formal.data_seed must be in 0..2^63-1, got {self.data_seed}")
        if self.target not in ("sampled", "exact"):
            raise ConfigError(f"formal.target must be 'sampled' or 'exact', got {self.target!r}")
        lang = make_language(self.language, self.max_eval_len)
        if not feasible_lengths(lang, self.train_min_len, self.train_max_len):
            raise ConfigError(
                f"{self.language} has no word of length {self.train_min_len}..{self.train_max_len} to train on"
            )


@dataclass
class FormalBatch:
    tokens: Int[Tensor, "batch pos"]
    """BOS, the word's symbols + 1, PAD after its end."""
    valid: Bool[Tensor, "batch pos vocab_out"]
    """The valid next symbols (END last) after each prefix; all False on padding."""
    draw: Int[Tensor, "batch pos"]
    """The sampled target: one valid symbol per position (0 on padding, where nothing counts)."""


def _tokens(words: Int[Tensor, "b len"], lang: Language) -> Int[Tensor, "b len_plus_1"]:
    body = torch.where(words >= 0, words + 1, lang.n_symbols + 1)
    return torch.cat([torch.full((words.shape[0], 1), BOS, dtype=torch.long), body], dim=1)


class FormalLanguageTask(Task):
    """Valid-next-symbol prediction on one formal language; evaluation by prefix length."""

    index_name = "prefix length"
    index_label = "len"
    metric_names = ("tv", "itr", "pos_acc")
    table_metrics = ("tv", "itr", "pos_acc")
    report_command = "eval"
    loss_only_fields = ("target",)
    target_field = "target"
    target_values = ("sampled", "exact")
    study_metrics = ("tv", "itr", "pos_acc")
    calibrated_metrics = ("tv", "itr")

    @classmethod
    def shape(cls, cfg: FormalLanguageConfig) -> TaskShape:
        k = make_language(cfg.language, cfg.max_eval_len).n_symbols
        return TaskShape(
            d_vocab=k + 2,
            d_vocab_out=k + 1,
            n_ctx=cfg.max_eval_len + 1,
            train_range=(cfg.train_min_len, cfg.train_max_len),
            context_reason=f"words up to length {cfg.max_eval_len} after BOS",
        )

    def __init__(self, cfg: FormalLanguageConfig):
        cfg.validate()
        self.cfg = cfg
        self.lang = make_language(cfg.language, cfg.max_eval_len + 1)
        self.k = self.lang.n_symbols
        self.threshold = 1.0 / (2 * (self.k + 1))
        self.train_lengths = feasible_lengths(self.lang, cfg.train_min_len, cfg.train_max_len)
        self.eval_lengths = feasible_lengths(self.lang, 1, cfg.max_eval_len)
        g = torch.Generator().manual_seed(cfg.data_seed)
        pick = torch.randint(0, len(self.train_lengths), (cfg.train_words,), generator=g)
        self.pool = self._words(torch.tensor(self.train_lengths)[pick], g, width=cfg.train_max_len)
        self._cache: dict = {}

    def _words(self, lengths: Tensor, generator: torch.Generator, width: int) -> tuple[Tensor, Tensor]:
        """Tokens ``[b, width + 1]`` and valid sets ``[b, width + 1, k + 1]`` of words of ``lengths``."""
        words = sample_words(self.lang, lengths, generator)
        words = torch.cat([words, torch.full((words.shape[0], width - words.shape[1]), -1)], dim=1)
        return _tokens(words, self.lang), valid_sets(self.lang, words)

    def _on(self, key, device, make):
        full = (key, str(device))
        if full not in self._cache:
            self._cache[full] = tuple(t.to(device) for t in make())
        return self._cache[full]

    def sample_batch(self, batch_size: int, generator: torch.Generator | None = None, device="cpu", max_len=None):
        """Random words of the training pool, with a sampled target drawn at every position."""
        tokens, valid = self._on("pool", device, lambda: self.pool)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(0, tokens.shape[0], (batch_size,), generator=generator, device=gen_device).to(device)
        tokens, valid = tokens[idx], valid[idx]
        weights = torch.where(valid.any(-1, keepdim=True), valid.float(), 1.0).flatten(0, 1).to(gen_device)
        draw = torch.multinomial(weights, 1, generator=generator)[:, 0].view(tokens.shape).to(device)
        return FormalBatch(tokens=tokens, valid=valid, draw=torch.where(valid.any(-1), draw, 0))

    def loss(self, logits: Float[Tensor, "batch pos vocab"], batch: FormalBatch) -> Tensor:
        return self.target_loss(logits, batch, self.loss_target(batch))

    def loss_target(self, batch: FormalBatch) -> Float[Tensor, "batch pos vocab"]:
        """One-hot of the draw ('sampled') or uniform over the valid set ('exact'); all zero on padding."""
        live = batch.valid.any(-1, keepdim=True)
        if self.cfg.target == "sampled":
            hot = batch.draw.unsqueeze(-1) == torch.arange(self.k + 1, device=batch.draw.device)
            return (hot & live).float()
        v = batch.valid.float()
        return v / v.sum(-1, keepdim=True).clamp(min=1)

    def target_loss(self, logits, batch: FormalBatch, target: Tensor) -> Tensor:
        """Cross-entropy against ``target``, averaged over the positions that have one."""
        per_position = -(target * logits.float().log_softmax(-1)).sum(-1)
        has = target.sum(-1)
        return (per_position * has).sum() / has.sum().clamp(min=1)

    def eval_words(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` words of every evaluated length (fixed by ``seed``): tokens, valid sets, lengths."""
        key = ("eval", n, seed)
        if key not in self._cache:
            lengths = torch.tensor(self.eval_lengths).repeat_interleave(n)
            g = torch.Generator().manual_seed(seed)
            self._cache[key] = (*self._words(lengths, g, self.cfg.max_eval_len), lengths)
        return self._cache[key]

    @torch.no_grad()
    def _per_position(self, model, tokens, valid, logit_scale: float, batch_size: int = 512):
        """For every word and position: tv, itr and whether the predicted set is right."""
        device = model_device(model)
        out = {m: [] for m in ("tv", "itr", "right")}
        with eval_mode(model):
            for i in range(0, tokens.shape[0], batch_size):
                t, v = tokens[i : i + batch_size].to(device), valid[i : i + batch_size].to(device)
                z = model(t).float()
                p = (z * logit_scale).softmax(-1)
                n_valid = v.sum(-1, keepdim=True).clamp(min=1)
                out["tv"].append((0.5 * (p - v / n_valid).abs().sum(-1)).cpu())
                out["itr"].append((p * ~v).sum(-1).cpu())
                out["right"].append(((p > self.threshold) == v).all(-1).cpu())
        return {k: torch.cat(x) for k, x in out.items()}

    def evaluate(self, model, n: int = 128, seed: int = 0, logit_scale: float = 1.0) -> LengthMetrics:
        """tv, itr and pos_acc at every prefix length 1..eval_max_len, over ``n`` words of every
        evaluated length (each prefix length counts the words at least that long)."""
        tokens, valid, _ = self.eval_words(n, seed)
        per = self._per_position(model, tokens, valid, logit_scale)
        live = valid.any(-1)[:, 1:].double()  # prefix lengths 1..max
        count = live.sum(0).clamp(min=1)
        values = {
            name: ((per[key][:, 1:].double() * live).sum(0) / count).tolist()
            for name, key in (("tv", "tv"), ("itr", "itr"), ("pos_acc", "right"))
        }
        lo_hi = (self.cfg.train_min_len, self.cfg.train_max_len)
        return LengthMetrics(list(range(1, self.cfg.max_eval_len + 1)), lo_hi, n, values)

    def word_accuracy(self, model, n: int = 128, seed: int = 0) -> dict[int, float]:
        """The paper's measure by word length: the fraction of ``n`` words of each evaluated length
        whose predicted valid set is right after every prefix ``t = 1..len``."""
        tokens, valid, lengths = self.eval_words(n, seed)
        right = self._per_position(model, tokens, valid, 1.0)["right"][:, 1:]
        pad = ~valid.any(-1)[:, 1:]
        word_right = (right | pad).all(-1).double()
        return {int(L): float(word_right[lengths == L].mean()) for L in self.eval_lengths}

    def probe_batches(self, n: int, seed: int = 0, device="cpu", batch_size: int = 512):
        """The evaluation words: position ``p`` has index ``p`` (BOS: 0), counted while the word lasts."""
        tokens, valid, _ = self.eval_words(n, seed)
        index = torch.arange(tokens.shape[1], device=device)
        for i in range(0, tokens.shape[0], batch_size):
            live = valid[i : i + batch_size].any(-1).to(device) & (index > 0)
            yield ProbeBatch(tokens[i : i + batch_size].to(device), index, live)

    def calibration_data(self, n: int, device="cpu"):
        """``n`` fresh words spread over the training lengths (calibration seed), p* and the
        positions that count (prefix lengths 1..len)."""

        def make():
            per_length = max(1, n // len(self.train_lengths))
            lengths = torch.tensor(self.train_lengths).repeat_interleave(per_length)
            g = torch.Generator().manual_seed(CALIBRATION_SEED)
            return self._words(lengths, g, self.cfg.train_max_len)

        tokens, valid = self._on(("calibration", n), "cpu", make)
        for i in range(0, tokens.shape[0], 512):
            t, v = tokens[i : i + 512].to(device), valid[i : i + 512].to(device).double()
            keep = v.sum(-1) > 0
            keep[:, 0] = False
            yield t, v / v.sum(-1, keepdim=True).clamp(min=1), keep

"""OthelloGPT as a training task: next-move prediction on prefixes of synthetic games.

Inputs are game prefixes tokenised as in the public checkpoints (squares -> 1..60, 0 padding,
``d_vocab = 61``, ``n_ctx = 59``). Training sees only the first ``train_max_moves`` moves of each
game; evaluation runs the whole 59-move input of held-out games and, after every move index
``i = 1..59`` (the prediction of move ``i + 1``), measures:

- ``legal_top1``: the top-1 predicted move is legal;
- ``itr``: probability mass on illegal moves (padding included);
- ``tv``: total variation to the uniform distribution over legal moves, which is the true
  next-move distribution of this data.

Only positions where the game is not over count. The last ``val_games`` games of the dataset are
held out and never trained on.

Targets. ``target="sampled"`` (the default, and OthelloGPT's) trains on the move the game went on
with: one draw from the uniform distribution over the legal moves, so a noisy target, as the set
task's next permutation item is. ``target="exact"`` trains on that distribution itself, from the
bitboard engine's legal moves after each prefix (``legal_token_mask``; passes included): the
same games, without the noise of many valid next moves. The two differ in the loss only, so arms
of both train side by side in one ensemble on the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from training.errors import ConfigError, WorkbenchError
from training.metrics import LengthMetrics
from training.scoped import eval_mode, model_device
from training.tasks.base import Task, TaskShape
from training.tasks.calibration import CALIBRATION_SEED
from training.tasks.othello.engine import (
    SQUARE_TO_TOKEN,
    IllegalMoveError,
    bits_to_bool,
    random_games,
    replay,
    squares_to_tokens,
    tokens_to_squares,
)

N_CTX = 59
D_VOCAB = 61


@dataclass
class OthelloConfig:
    """Which games the model trains and is evaluated on."""

    data: str = "runs/othello_data"
    """Dataset folder written by `python -m training othello-data` (games.npy)."""
    train_max_moves: int = 30
    """Train on prefixes of at most this many moves; move indices beyond it are out of range."""
    val_games: int = 2000
    """Games at the end of the dataset held out for evaluation."""
    target: Literal["sampled", "exact"] = "sampled"
    """'sampled': the game's next move (one draw, noisy). 'exact': uniform over the legal moves."""

    def validate(self) -> None:
        if not 1 <= self.train_max_moves <= N_CTX:
            raise ConfigError(f"othello.train_max_moves must be in 1..{N_CTX}, got {self.train_max_moves}")
        if self.val_games < 1:
            raise ConfigError(f"othello.val_games must be positive, got {self.val_games}")
        if self.target not in ("sampled", "exact"):
            raise ConfigError(f"othello.target must be 'sampled' or 'exact', got {self.target!r}")


def legal_token_mask(legal: np.ndarray) -> Bool[np.ndarray, "*shape 61"]:
    """Legal-move bitboards (``GameStates.legal``, any shape) as masks over the 61 tokens."""
    legal_sq = bits_to_bool(legal)
    out = np.zeros(legal_sq.shape[:-1] + (D_VOCAB,), dtype=bool)
    playable = SQUARE_TO_TOKEN >= 0
    out[..., SQUARE_TO_TOKEN[playable]] = legal_sq[..., playable]
    return out


def prefix_legal(tokens: Int[Tensor, "batch moves"]) -> Bool[Tensor, "batch moves 61"]:
    """The legal next moves (as tokens) after each prefix of games given as tokens: ``[b, i]`` is
    the legal set after moves ``0..i`` (empty once the game is over), by replaying the games
    with the bitboard engine (vectorised over games)."""
    states = replay(tokens_to_squares(tokens.cpu().numpy()))
    return torch.from_numpy(legal_token_mask(states.legal[:, 1:])).to(tokens.device)


@dataclass
class OthelloBatch:
    tokens: Int[Tensor, "batch moves"]
    """Model input: the first ``train_max_moves`` move tokens."""
    targets: Int[Tensor, "batch moves"]
    """The next move's token after each prefix, 0 (padding, ignored) where the game is over."""


class OthelloTask(Task):
    """Next-move prediction on game prefixes; evaluation by move index on held-out games."""

    d_vocab = D_VOCAB
    d_vocab_out = D_VOCAB
    offset = 0
    index_name = "move index"
    index_label = "move"
    metric_names = ("legal_top1", "itr", "tv", "gap")
    table_metrics = ("legal_top1", "itr", "tv")
    report_command = "othello-report"
    loss_only_fields = ("target",)
    target_field = "target"
    target_values = ("sampled", "exact")
    study_metrics = ("tv", "itr", "legal_top1")
    calibrated_metrics = ("tv", "itr")

    @classmethod
    def shape(cls, cfg: OthelloConfig) -> TaskShape:
        return TaskShape(
            d_vocab=D_VOCAB,
            d_vocab_out=D_VOCAB,
            n_ctx=N_CTX,
            train_range=(1, cfg.train_max_moves),
            context_reason="Othello",
        )

    def __init__(self, cfg: OthelloConfig, games: Optional[np.ndarray] = None):
        from training.tasks.othello.data import load_games

        cfg.validate()
        self.cfg = cfg
        self.games = load_games(cfg.data) if games is None else games
        if self.games.shape[0] <= cfg.val_games:
            raise ConfigError(
                f"the dataset has {self.games.shape[0]} games; need more than othello.val_games={cfg.val_games}"
            )
        self.n_train = self.games.shape[0] - cfg.val_games
        self._eval_cache: dict[int, tuple] = {}
        self._resident: tuple[tuple, torch.Tensor] | None = None  # ((width, device), tokens)
        # load_games replays only the first games of a large file; the held-out games are replayed
        # here (evaluation needs their legal moves anyway), so a broken one stops the run before it starts
        try:
            self.eval_data(cfg.val_games)
        except IllegalMoveError as e:
            raise WorkbenchError(f"games file {cfg.data}, held-out games: {e}") from None

    def context_needed(self, _max_len=None) -> int:
        return N_CTX

    def sample_batch(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device="cpu",
        max_len=None,
        resident: bool | None = None,
    ) -> OthelloBatch:
        """Random training games' first ``max_len`` moves. ``resident`` (default: on any device but
        the CPU) gathers from a copy of the training tokens held on ``device``; both paths draw
        the same games in the same order."""
        L = self.cfg.train_max_moves if max_len is None else max_len
        idx = torch.randint(
            0, self.n_train, (batch_size,), generator=generator, device=generator.device if generator else "cpu"
        )
        if resident is None:
            resident = torch.device(device).type != "cpu"
        if resident:
            tokens = self.resident_tokens(L + 1, device)[idx.to(device).sort().values].long()
        else:
            rows = np.asarray(self.games[np.sort(idx.cpu().numpy())][:, : L + 1])
            tokens = torch.from_numpy(squares_to_tokens(rows)).to(device)
        return OthelloBatch(tokens=tokens[:, :L], targets=tokens[:, 1 : L + 1])

    def resident_tokens(self, width: int, device) -> torch.Tensor:
        """The training games' first ``width`` tokens as one uint8 tensor on ``device``.

        On a GPU a batch is then gathered on the device: no host round trip or synchronisation
        per step (the CPU path reads rows straight from the memory-mapped file instead). The
        conversion runs in chunks so host memory stays bounded for large datasets."""
        device = torch.device(device)
        key = (width, str(device))
        if self._resident is None or self._resident[0] != key:
            out = torch.empty((self.n_train, width), dtype=torch.uint8, device=device)
            for i in range(0, self.n_train, 1_000_000):
                rows = np.asarray(self.games[i : min(i + 1_000_000, self.n_train), :width])
                out[i : i + rows.shape[0]] = torch.from_numpy(squares_to_tokens(rows).astype(np.uint8)).to(device)
            self._resident = (key, out)
        return self._resident[1]

    def loss(self, logits: Float[Tensor, "batch moves vocab"], batch: OthelloBatch) -> Tensor:
        if self.cfg.target == "sampled":
            return F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten(), ignore_index=0)
        return self.target_loss(logits, batch, self.loss_target(batch))

    def loss_target(self, batch: OthelloBatch) -> Float[Tensor, "batch moves 61"]:
        """The one-hot next move ('sampled') or uniform over the legal moves ('exact'); all zero
        where the game is over (those positions are left out of the loss)."""
        if self.cfg.target == "sampled":
            # one-hot by comparison, so that no range check reads the data; padding (0) is no target
            hot = batch.targets.unsqueeze(-1) == torch.arange(D_VOCAB, device=batch.targets.device)
            return (hot & (batch.targets > 0).unsqueeze(-1)).float()
        legal = prefix_legal(batch.tokens).float()
        return legal / legal.sum(-1, keepdim=True).clamp(min=1)

    def target_loss(
        self, logits: Float[Tensor, "batch moves vocab"], batch: OthelloBatch, target: Float[Tensor, "batch moves 61"]
    ) -> Tensor:
        """Cross-entropy against ``target``, averaged over the positions that have one (the same
        positions as the sampled loss's: a game is over exactly when it has no legal move)."""
        logp = logits.float().log_softmax(-1)
        per_position = -(target * logp).sum(-1)
        has = target.sum(-1)  # 1 where the position has a target, 0 where the game is over
        return (per_position * has).sum() / has.sum().clamp(min=1)

    def eval_data(self, n_games: int) -> tuple[Int[Tensor, "games 59"], Bool[Tensor, "games 59 61"]]:
        """Held-out tokens and legal-move masks (over tokens) after moves 1..59 (cached)."""
        if n_games not in self._eval_cache:
            games = np.asarray(self.games[self.n_train : self.n_train + n_games])
            legal = legal_token_mask(replay(games).legal[:, 1 : N_CTX + 1])  # after 1..59 moves: [G, 59, 61]
            self._eval_cache[n_games] = (torch.from_numpy(squares_to_tokens(games[:, :N_CTX])), torch.from_numpy(legal))
        return self._eval_cache[n_games]

    def calibration_data(self, n: int, device="cpu"):
        """Fresh games for fitting a temperature: ``n`` random games from the calibration seed,
        never the held-out evaluation games; their first ``train_max_moves`` moves, the uniform
        distribution over legal moves after each, and which positions count (game not over)."""
        L = self.cfg.train_max_moves
        if ("calibration", n) not in self._eval_cache:
            games = random_games(n, np.random.default_rng(CALIBRATION_SEED))
            legal = torch.from_numpy(legal_token_mask(replay(games).legal[:, 1 : L + 1]))
            self._eval_cache[("calibration", n)] = (torch.from_numpy(squares_to_tokens(games[:, :L])), legal)
        tokens, legal = self._eval_cache[("calibration", n)]
        for i in range(0, n, 250):
            t, lg = tokens[i : i + 250].to(device), legal[i : i + 250].to(device).double()
            yield t, lg / lg.sum(-1, keepdim=True).clamp(min=1), lg.sum(-1) > 0

    def probe_batches(self, n: int, seed: int = 0, device="cpu", batch_size: int = 250):
        """The first ``n`` held-out games: position p predicts move p + 1 (its move index is p + 1),
        counted while the game goes on."""
        from training.tasks.base import ProbeBatch

        tokens, legal = self.eval_data(min(n, self.cfg.val_games))
        index = torch.arange(1, N_CTX + 1, device=device)
        for i in range(0, tokens.shape[0], batch_size):
            yield ProbeBatch(tokens[i : i + batch_size].to(device), index, legal[i : i + batch_size].any(-1).to(device))

    @torch.no_grad()
    def evaluate(
        self, model, n: int = 1000, seed: int = 0, batch_size: int = 250, logit_scale: float = 1.0
    ) -> LengthMetrics:
        """Per-move-index legal top-1 rate, ITR, TV to uniform-over-legal and ``gap`` (mean logit of
        the legal moves minus that of the illegal squares, padding excluded; linear in the logits,
        so per-component attributions add up to it), on the first ``n`` held-out games (fixed, so
        ``seed`` is unused). ``logit_scale`` multiplies the logits first (1 / temperature)."""
        tokens, legal = self.eval_data(min(n, self.cfg.val_games))
        device = model_device(model)
        sums = {k: torch.zeros(N_CTX, dtype=torch.float64) for k in self.metric_names}
        counts = torch.zeros(N_CTX, dtype=torch.float64)
        with eval_mode(model):
            for i in range(0, tokens.shape[0], batch_size):
                t, lg = tokens[i : i + batch_size].to(device), legal[i : i + batch_size].to(device)
                z = model(t).float()
                if logit_scale != 1.0:
                    z = z * logit_scale
                p = z.softmax(-1)
                live = lg.any(-1)  # game not over after this many moves
                n_legal = lg.sum(-1).clamp(min=1)
                top = p.argmax(-1, keepdim=True)
                top1 = lg.gather(-1, top).squeeze(-1).float()
                itr = (p * ~lg).sum(-1)
                tv = 0.5 * (p - lg / n_legal[..., None]).abs().sum(-1)
                illegal = ~lg
                illegal[..., 0] = False  # padding is never a move
                gap = (z * lg).sum(-1) / n_legal - (z * illegal).sum(-1) / illegal.sum(-1).clamp(min=1)
                for key, val in (("legal_top1", top1), ("itr", itr), ("tv", tv), ("gap", gap)):
                    sums[key] += (val * live).double().sum(0).cpu()
                counts += live.double().sum(0).cpu()
        values = {k: (v / counts.clamp(min=1)).tolist() for k, v in sums.items()}
        return LengthMetrics(list(range(1, N_CTX + 1)), (1, self.cfg.train_max_moves), int(tokens.shape[0]), values)

"""Linear probes on the residual stream: Othello board state (and set membership) as inputs grow.

For every square a probe predicts one of a few classes from a residual-stream vector:

- ``relative``: {empty, mine, theirs}, relative to the side to move next (Nanda's coordinates);
- ``absolute``: {empty, black, white} (Li et al.'s coordinates, which linear probes read badly);
- ``flipped``: {no, yes}: the disc was flipped by the move just played;
- ``legal``: {no, yes}: the square is a legal move now.

Probes are fit in closed form (ridge regression onto one-hot targets, prediction = argmax per
square) from activations streamed in batches: only ``X^T X`` (d x d) and ``X^T Y`` (d x 64C) are
kept, so memory does not grow with the number of games. Accuracy is reported per layer, per move
index (including beyond the training length) and per square. Controls: the same probe on a
randomly initialised model of the same shape, and on shuffled labels. ``membership_probe`` uses
the same machinery for set-complement models: "item j is in the set" from the last position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.core.hooks import require_hooks, require_width
from training import atomic
from training.scoped import eval_mode, model_device
from training.tasks.othello.engine import BLACK, bits_to_bool, replay, squares_to_tokens
from training.tasks.othello.task import N_CTX

CLASSES = {"relative": 3, "absolute": 3, "flipped": 2, "legal": 2, "side": 2}
CLASS_NAMES = {
    "relative": ("empty", "mine", "theirs"),
    "absolute": ("empty", "black", "white"),
    "flipped": ("no", "yes"),
    "legal": ("no", "yes"),
    "side": ("black", "white"),
}
"""Class order of each target: the probe's columns are ``square * n_classes + class``."""
SQUARES = {"side": 1}
"""Labels per position: 64 squares, or one for the side to move (who plays next)."""
Target = Literal["relative", "absolute", "flipped", "legal", "side"]


def board_labels(
    games: Int[np.ndarray, "games moves"], target: Target = "relative"
) -> Int[np.ndarray, "games 59 squares"]:
    """Class of every square after moves 1..59 (position p sees p+1 moves); for ``side``, one
    label: who moves next (0 black, 1 white). Passes make it more than the parity of the move
    index, which is what a model that reads parity off positions gets wrong."""
    st = replay(games)
    sl = slice(1, N_CTX + 1)
    if target == "side":
        return (st.player[:, sl] != BLACK).astype(np.int64)[..., None]
    if target == "flipped":
        return bits_to_bool(st.flipped[:, sl]).astype(np.int64)
    if target == "legal":
        return bits_to_bool(st.legal[:, sl]).astype(np.int64)
    black, white = bits_to_bool(st.black[:, sl]), bits_to_bool(st.white[:, sl])
    if target == "absolute":
        return black.astype(np.int64) + 2 * white.astype(np.int64)
    black_to_move = (st.player[:, sl] == BLACK)[..., None]
    mine = np.where(black_to_move, black, white)
    theirs = np.where(black_to_move, white, black)
    return mine.astype(np.int64) + 2 * theirs.astype(np.int64)


@dataclass
class LinearProbe:
    """Per-hook weights ``[d_model + 1, squares * n_classes]`` (last row: bias); 64 squares, or
    one for the side-to-move target."""

    weights: dict[str, torch.Tensor]
    n_classes: int
    target: str
    meta: dict

    @property
    def n_squares(self) -> int:
        return next(iter(self.weights.values())).shape[1] // self.n_classes

    def predict(self, hook: str, x: Float[Tensor, "... d_model"]) -> Int[Tensor, "... squares"]:
        """Class of every square (or the side to move) from residual-stream activations."""
        w = self.weights[hook].to(x.device, x.dtype)
        scores = x @ w[:-1] + w[-1]
        return scores.view(*x.shape[:-1], self.n_squares, self.n_classes).argmax(-1)

    def class_index(self, cls: str | int) -> int:
        names = CLASS_NAMES.get(self.target, ())
        if isinstance(cls, str):
            if cls not in names:
                raise ValueError(f"a {self.target} probe has no class {cls!r} (it has {', '.join(names)})")
            return names.index(cls)
        if not 0 <= cls < self.n_classes:
            raise ValueError(f"class must be in 0..{self.n_classes - 1}, got {cls}")
        return cls

    def direction(
        self, hook: str, square: int, cls: str | int, against: str | int | None = None
    ) -> Float[Tensor, " d_model"]:
        """The unit vector along which the probe's score of ``cls`` on ``square`` grows (minus
        that of ``against`` when given, e.g. ``direction(h, sq, "mine", "theirs")``)."""
        if not 0 <= square < self.n_squares:
            raise ValueError(f"square must be in 0..{self.n_squares - 1}, got {square}")
        W = self.weights[hook][:-1]
        v = W[:, square * self.n_classes + self.class_index(cls)]
        if against is not None:
            v = v - W[:, square * self.n_classes + self.class_index(against)]
        return v / v.norm().clamp(min=1e-12)

    def to_grid(self, hook: str) -> Float[Tensor, "d_model 8 8 n_classes"]:
        """The weights in Nanda's and ARENA's ``[d_model, rows, cols, options]`` layout (row 0 at
        the top; options in ``CLASS_NAMES[target]`` order); the bias is ``bias_grid``."""
        self._board_only()
        return self.weights[hook][:-1].reshape(-1, 8, 8, self.n_classes)

    def bias_grid(self, hook: str) -> Float[Tensor, "8 8 n_classes"]:
        self._board_only()
        return self.weights[hook][-1].reshape(8, 8, self.n_classes)

    def _board_only(self) -> None:
        if self.n_squares != 64:
            raise ValueError(f"a {self.target} probe has {self.n_squares} label per position, no 8x8 board layout")

    @classmethod
    def from_grid(
        cls, grids: dict[str, Tensor], target: str, bias: dict[str, Tensor] | None = None, meta: dict | None = None
    ) -> "LinearProbe":
        """A probe from ``[d_model, 8, 8, options]`` weights per hook (e.g. a published probe; put
        its options in ``CLASS_NAMES[target]`` order first), with zero bias unless given."""
        weights = {}
        for hook, g in grids.items():
            if g.ndim != 4 or tuple(g.shape[1:3]) != (8, 8):
                raise ValueError(f"a probe grid is [d_model, 8, 8, options], got {list(g.shape)} for {hook}")
            b = bias[hook].reshape(1, -1) if bias and hook in bias else torch.zeros(1, 64 * g.shape[-1], dtype=g.dtype)
            weights[hook] = torch.cat([g.reshape(g.shape[0], -1), b.to(g.dtype)])
        n = next(iter(grids.values())).shape[-1]
        return cls(weights, n, target, meta or {})

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.weights.items()}
        atomic.write_with(path / "probe.safetensors", lambda p: save_file(tensors, str(p)))
        atomic.write_json(path / "probe.json", {"n_classes": self.n_classes, "target": self.target, **self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "LinearProbe":
        path = Path(path)
        meta = json.loads((path / "probe.json").read_text())
        n, target = meta.pop("n_classes"), meta.pop("target")
        return cls(load_file(str(path / "probe.safetensors")), n, target, meta)


def _activations(
    model, tokens: Int[Tensor, "batch pos"], hooks: list[str]
) -> dict[str, Float[Tensor, "batch pos d_model"]]:
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
    return {h: cache[h].float() for h in hooks}


def default_hooks(model) -> list[str]:
    return [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def fit_board_probe(
    model,
    games: np.ndarray,
    target: Target = "relative",
    hooks: list[str] | None = None,
    positions: tuple[int, int] = (0, N_CTX - 1),
    ridge: float = 1e-2,
    batch_size: int = 256,
    shuffle_labels: bool = False,
    seed: int = 0,
) -> LinearProbe:
    """Closed-form ridge probe per hook from ``games`` (positions ``lo..hi`` inclusive, 0-based)."""
    require_hooks(model, hooks or [])
    with eval_mode(model):
        return _fit_board_probe(
            model, games, target, hooks or default_hooks(model), positions, ridge, batch_size, shuffle_labels, seed
        )


def _fit_board_probe(model, games, target, hooks, positions, ridge, batch_size, shuffle_labels, seed) -> LinearProbe:
    n_cls = CLASSES[target]
    d = model.cfg.d_model
    device = model_device(model)
    xtx = {h: torch.zeros(d + 1, d + 1, dtype=torch.float64, device=device) for h in hooks}
    xty = {h: torch.zeros(d + 1, SQUARES.get(target, 64) * n_cls, dtype=torch.float64, device=device) for h in hooks}
    rng = np.random.default_rng(seed)
    lo, hi = positions
    for i in range(0, games.shape[0], batch_size):
        g = np.asarray(games[i : i + batch_size])
        labels = board_labels(g, target)[:, lo : hi + 1]
        if shuffle_labels:  # control: boards paired with the wrong games
            labels = labels[rng.permutation(len(g))]
        y = (
            torch.nn.functional.one_hot(torch.from_numpy(labels), n_cls)
            .reshape(len(g), hi - lo + 1, -1)
            .double()
            .to(device)
        )
        acts = _activations(model, torch.from_numpy(squares_to_tokens(g[:, :N_CTX])).to(device), hooks)
        keep = _not_over(g, lo, hi, device)
        for h in hooks:
            x = acts[h][:, lo : hi + 1][keep].double()
            x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=device)], 1)
            xtx[h] += x.T @ x
            xty[h] += x.T @ y[keep]
    weights = {h: _ridge_solve(xtx[h], xty[h], ridge).float().cpu() for h in hooks}
    meta = {
        "hooks": hooks,
        "positions": [lo, hi],
        "ridge": ridge,
        "shuffled_labels": shuffle_labels,
        "games": int(games.shape[0]),
    }
    return LinearProbe(weights, n_cls, target, meta)


def _ridge_solve(xtx: torch.Tensor, xty: torch.Tensor, ridge: float) -> torch.Tensor:
    """Solve (X^T X + ridge * mean(diag) * I) W = X^T Y: the penalty scales with the activations."""
    eye = torch.eye(xtx.shape[0], dtype=xtx.dtype, device=xtx.device)
    return torch.linalg.solve(xtx + ridge * xtx.diagonal().mean() * eye, xty)


def _not_over(g: Int[np.ndarray, "games moves"], lo: int, hi: int, device) -> Bool[Tensor, "games positions"]:
    """Positions whose move exists (the game had at least p+1 moves)."""
    n_moves = (g >= 0).sum(1)
    pos = np.arange(lo, hi + 1)
    return torch.from_numpy(pos[None, :] < n_moves[:, None]).to(device)


@dataclass
class ProbeAccuracy:
    by_layer: dict[str, float]
    by_move: dict[str, list[float]]
    """Per hook, accuracy at each move index 1..59."""
    by_square: dict[str, list[float]]
    """Per hook, accuracy on each of the 64 squares (row-major 8x8; one entry for ``side``)."""
    games_by_move: list[int] | None = None
    """Games still going at each move index 1..59 (a move index no game reached has accuracy 0
    and no meaning)."""

    def to_dict(self) -> dict:
        return {"by_layer": self.by_layer, "by_move": self.by_move, "by_square": self.by_square}


@torch.no_grad()
def probe_accuracy(model, probe: LinearProbe, games: np.ndarray, batch_size: int = 256) -> ProbeAccuracy:
    """Accuracy of ``probe`` on ``games`` at every position, per hook, move index and square."""
    require_hooks(model, probe.meta["hooks"])
    require_width(model, next(iter(probe.weights.values())).shape[0] - 1, f"this {probe.target} probe")
    with eval_mode(model):
        return _probe_accuracy(model, probe, games, batch_size)


def _probe_accuracy(model, probe: LinearProbe, games: np.ndarray, batch_size: int) -> ProbeAccuracy:
    device = model_device(model)
    hooks = probe.meta["hooks"]
    S = probe.n_squares
    correct = {h: torch.zeros(N_CTX, S, dtype=torch.float64) for h in hooks}
    count = torch.zeros(N_CTX, dtype=torch.float64)
    for i in range(0, games.shape[0], batch_size):
        g = np.asarray(games[i : i + batch_size])
        labels = torch.from_numpy(board_labels(g, probe.target))
        live = _not_over(g, 0, N_CTX - 1, "cpu")
        acts = _activations(model, torch.from_numpy(squares_to_tokens(g[:, :N_CTX])).to(device), hooks)
        for h in hooks:
            pred = probe.predict(h, acts[h]).cpu()
            correct[h] += ((pred == labels) & live[..., None]).double().sum(0)
        count += live.double().sum(0)
    by_move = {h: (c.sum(1) / (S * count.clamp(min=1))).tolist() for h, c in correct.items()}
    by_square = {h: (c.sum(0) / count.sum()).tolist() for h, c in correct.items()}
    by_layer = {h: (c.sum() / (S * count.sum())).item() for h, c in correct.items()}
    return ProbeAccuracy(by_layer, by_move, by_square, [int(c) for c in count.tolist()])


@torch.no_grad()
def membership_probe(
    model, task, sets: int = 2048, hook: str | None = None, ridge: float = 1e-2, seed: int = 0, eval_seed: int = 1
) -> dict:
    """Ridge probe for "item j is in the set" from the residual stream at the set's last position;
    returns accuracy per length (fit on one fixed-seed sample, scored on another)."""
    if hook is not None:
        require_hooks(model, [hook])
    with eval_mode(model):
        return _membership_probe(
            model, task, sets, hook or f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", ridge, seed, eval_seed
        )


def _membership_probe(model, task, sets, hook, ridge, seed, eval_seed) -> dict:
    from training.tasks.set_complement.metrics import set_batches

    v, off, L = task.v, task.offset, task.cfg.max_eval_len
    device = model_device(model)
    d = model.cfg.d_model
    xtx = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=device)
    xty = torch.zeros(d + 1, v, dtype=torch.float64, device=device)

    def rows(batch):
        x = _activations(model, batch.tokens, [hook])[hook][:, off : off + L].double()
        x = torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=device)], -1)
        return x, task.membership(batch.items, v).double()

    for batch in set_batches(task, sets, L, seed, 512, device):
        x, y = rows(batch)
        xtx += x.flatten(0, 1).T @ x.flatten(0, 1)
        xty += x.flatten(0, 1).T @ y.flatten(0, 1)
    w = _ridge_solve(xtx, xty, ridge)
    correct = torch.zeros(L, dtype=torch.float64, device=device)
    for batch in set_batches(task, sets, L, eval_seed, 512, device):
        x, y = rows(batch)
        correct += ((x @ w > 0.5) == y.bool()).double().mean(-1).sum(0)
    return {
        "hook": hook,
        "lengths": list(range(1, L + 1)),
        "accuracy": (correct / sets).tolist(),
        "train_range": [task.cfg.train_min_len, task.cfg.train_max_len],
    }

"""Synthetic OthelloGPT data: games of uniformly random legal moves, streamed to disk.

``generate_dataset`` writes ``games.npy`` (``int8 [N, 60]`` squares, -1 padded, memory-mappable)
and ``games.json`` (seed, count, chunk size, SHA-256 of the array). Chunk ``k`` of a dataset is
generated from ``SeedSequence([seed, k])``, so the file is identical for a given seed whatever the
number of worker processes, and an interrupted run resumes by regenerating only the chunks not
yet recorded in ``progress.json``. Memory stays flat: one chunk per worker is in RAM at a time
(100,000 games = 6 MB of moves plus a few MB of bitboards).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from training import atomic
from training.errors import WorkbenchError
from training.tasks.othello.engine import IllegalMoveError, random_games, replay

GAMES, META, PARTIAL, PROGRESS = "games.npy", "games.json", "games.npy.partial", "progress.json"


def _chunk(args) -> tuple[int, np.ndarray]:
    seed, k, n = args
    return k, random_games(n, np.random.default_rng(np.random.SeedSequence([seed, k])))


def _sha256(arr: np.ndarray, rows: int = 1_000_000) -> str:
    h = hashlib.sha256()
    for i in range(0, arr.shape[0], rows):
        h.update(np.ascontiguousarray(arr[i : i + rows]).tobytes())
    return h.hexdigest()


def generate_dataset(
    out: str | Path,
    games: int,
    seed: int = 0,
    chunk: int = 100_000,
    workers: int = 2,
    dedup: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate ``games`` random games into ``out``; returns the metadata written to games.json."""
    if games < 1 or chunk < 1 or workers < 1:
        raise WorkbenchError("--games, --chunk and --workers must be positive")
    out = Path(out)
    if (out / GAMES).exists() and not overwrite:
        raise WorkbenchError(f"{out / GAMES} already exists (use --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    spec = {"games": games, "seed": seed, "chunk": chunk}
    prog_path, partial = out / PROGRESS, out / PARTIAL
    done: set[int] = set()
    if prog_path.exists() and partial.exists():
        prog = json.loads(prog_path.read_text())
        if prog.get("spec") == spec:
            done = set(prog["done"])
    if not done:
        arr = np.lib.format.open_memmap(partial, mode="w+", dtype=np.int8, shape=(games, 60))
        del arr
    arr = np.lib.format.open_memmap(partial, mode="r+")
    n_chunks = (games + chunk - 1) // chunk
    todo = [(seed, k, min(chunk, games - k * chunk)) for k in range(n_chunks) if k not in done]
    bar = tqdm(
        total=games,
        initial=sum(min(chunk, games - k * chunk) for k in done),
        unit="game",
        desc="othello games",
        disable=not progress,
        unit_scale=True,
    )
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 and len(todo) > 1 else None
    try:
        results = pool.imap_unordered(_chunk, todo) if pool else map(_chunk, todo)
        for k, moves in results:
            arr[k * chunk : k * chunk + moves.shape[0]] = moves
            arr.flush()
            done.add(k)
            atomic.write_json(prog_path, {"spec": spec, "done": sorted(done)})
            bar.update(moves.shape[0])
    finally:
        bar.close()
        if pool:
            pool.terminate()
    removed = 0
    if dedup:
        arr, removed = _dedup(arr, out)
    meta = {
        **spec,
        "count": int(arr.shape[0]),
        "dedup": dedup,
        "duplicates_removed": removed,
        "sha256": _sha256(arr),
        "format": "int8 [count, 60] squares (row*8+col), -1 after the game ends",
    }
    del arr
    final_tmp = out / (PARTIAL if not dedup else "games.dedup.partial")
    os.replace(final_tmp, out / GAMES)
    for leftover in (out / PARTIAL, prog_path):
        leftover.unlink(missing_ok=True)
    atomic.write_json(out / META, meta)
    return meta


def _row_hash(block: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit hash of each 60-byte row, vectorised over rows (a loop over 8 words only)."""
    padded = np.zeros((block.shape[0], 64), dtype=np.int8)
    padded[:, :60] = block
    words = padded.view(np.uint64)  # [rows, 8]
    h = np.full(block.shape[0], np.uint64(0x9E3779B97F4A7C15 ^ salt), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(8):  # splitmix64-style mixing of each word into the running hash
            h ^= words[:, j] + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
            h = (h ^ (h >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(29)
    return h


def _dedup(arr: np.ndarray, out: Path, rows: int = 1_000_000) -> tuple[np.ndarray, int]:
    """Keep the first occurrence of every distinct game (by two independent 64-bit row hashes)."""
    keys = np.empty((arr.shape[0], 2), dtype=np.uint64)
    for i in range(0, arr.shape[0], rows):
        block = np.ascontiguousarray(arr[i : i + rows])
        keys[i : i + rows, 0] = _row_hash(block, 1)
        keys[i : i + rows, 1] = _row_hash(block, 2)
    _, first = np.unique(keys, axis=0, return_index=True)
    first.sort()
    dst = np.lib.format.open_memmap(out / "games.dedup.partial", mode="w+", dtype=np.int8, shape=(len(first), 60))
    for i in range(0, len(first), rows):
        dst[i : i + rows] = arr[first[i : i + rows]]
    dst.flush()
    return dst, int(arr.shape[0] - len(first))


def load_games(path: str | Path, check: bool = True, verify_rows: int = 10_000) -> np.ndarray:
    """Memory-map a games file (a dataset folder or its games.npy), with one-line errors.

    ``check`` replays the first ``verify_rows`` games, so an illegal game is caught early."""
    path = Path(path)
    file = path / GAMES if path.is_dir() else path
    if not file.is_file():
        raise WorkbenchError(f"games file not found: {file}")
    try:
        arr = np.load(file, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise WorkbenchError(f"games file {file} is corrupt or truncated ({e})") from None
    if arr.dtype != np.int8 or arr.ndim != 2 or arr.shape[1] != 60:
        raise WorkbenchError(f"games file {file} must be int8 [N, 60], got {arr.dtype} {list(arr.shape)}")
    if check and arr.shape[0]:
        try:
            replay(np.asarray(arr[:verify_rows]))
        except IllegalMoveError as e:
            raise WorkbenchError(f"games file {file}: {e}") from None
    return arr

"""The formal-language suite: the paper's setting trained on every language, scored by length bin.

Bhattamishra, Ahuja and Goyal (EMNLP 2020) train a small transformer, without positional encoding
and with it, on short words of each language and report, per test bin of longer words, the share
of words whose valid next symbols are predicted right at every position. This file runs that
check on our task (``training/tasks/formal_languages``): one run per language, positional
encoding and seed, from one suite file (``training/configs/formal_suite.json``), each scored by
the paper's word accuracy and by our TV, both per bin.

Runs train in spawned worker processes (one torch thread each by default: these models are
small), each worker taking every n-th run, each run in its own folder under ``DIR/runs/``; a run
is done once its ``word_accuracy.json`` is written (a failed one writes ``error.json``). Results
travel through these files, not through pipes or queues, so a killed worker or a Ctrl-C loses at
most the runs in progress. Running the command again on the same folder resumes: finished runs are read back,
interrupted ones resume from their last checkpoint (a resumed run's seconds count only the
call that finished it). The results go to ``DIR/suite.json`` and the
table to ``DIR/suite_table.md``, rewritten from all finished runs at the end of every call.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from training import atomic, runs
from training.errors import ConfigError, WorkbenchError
from training.experiments.runner import read_json, trial_config

SPEC = "suite_spec.json"
RESULTS = "suite.json"
TABLE = "suite_table.md"
WORD_ACC = "word_accuracy.json"
ERROR = "error.json"
KEYS = {"description", "base", "fixed", "languages", "positional", "seeds", "word_eval", "bins"}
POSITIONAL = ("none", "learned", "rotary")


@dataclass(frozen=True)
class Job:
    language: str
    positional: str
    seed: int

    @property
    def folder(self) -> str:
        return f"runs/{self.language}/{self.positional}-seed{self.seed}"

    def overrides(self) -> list[str]:
        return [f"formal.language={self.language}", f"model.positional={self.positional}", f"train.seed={self.seed}"]


def check_spec(spec, where: str) -> dict:
    """The suite file, checked whole before anything is written (one-line ConfigError)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a suite file is a JSON object")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (a suite file has {', '.join(sorted(KEYS))})")
    for key, kind in (("languages", str), ("positional", str), ("seeds", int)):
        values = spec.get(key)
        if not isinstance(values, list) or not values or not all(type(v) is kind for v in values):
            raise ConfigError(f"{where}: {key} must be a non-empty list of {kind.__name__}s, got {values!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: {key} lists a value twice")
    bad = [p for p in spec["positional"] if p not in POSITIONAL]
    if bad:
        raise ConfigError(f"{where}: positional must be among {', '.join(POSITIONAL)}, got {bad[0]!r}")
    if any(s < 0 or s >= 2**63 for s in spec["seeds"]):
        raise ConfigError(f"{where}: seeds must be in 0..2^63-1")
    n = spec.get("word_eval", 100)
    if type(n) is not int or n < 1:
        raise ConfigError(f"{where}: word_eval must be a positive integer, got {n!r}")
    if not isinstance(spec.get("base", ""), str) or not isinstance(spec.get("fixed", []), list):
        raise ConfigError(f"{where}: base must be a preset name or a .json path and fixed a list of overrides")
    # every language must give a valid run config (this also checks the language names)
    for language in spec["languages"]:
        for positional in spec["positional"]:
            cfg = trial_config(spec, {}, Job(language, positional, spec["seeds"][0]).overrides())
            if cfg.kind != "formal_language":
                raise ConfigError(f"{where}: the base config must be of kind 'formal_language', got {cfg.kind!r}")
    max_len = cfg.formal.max_eval_len
    bins = spec.get("bins")
    ok = (
        isinstance(bins, list)
        and bins
        and all(
            isinstance(b, list) and len(b) == 2 and all(type(x) is int for x in b) and 1 <= b[0] <= b[1] <= max_len
            for b in bins
        )
    )
    if not ok:
        raise ConfigError(f"{where}: bins must be a list of [lo, hi] word lengths within 1..{max_len}, got {bins!r}")
    return spec


def jobs(spec: dict) -> list[Job]:
    return [Job(lang, pos, seed) for lang in spec["languages"] for pos in spec["positional"] for seed in spec["seeds"]]


def _done(out: Path, job: Job) -> bool:
    return (out / job.folder / WORD_ACC).is_file()


def train_job(out: Path, spec: dict, job: Job) -> None:
    """In a worker: train (or resume) one run and score it into its ``word_accuracy.json``, or
    write why it failed into its ``error.json`` (any exception: a worker never prints a traceback)."""
    from training.tasks.formal_languages.task import FormalLanguageTask
    from training.trainer import train

    folder = out / job.folder
    t0 = time.time()
    try:
        (folder / ERROR).unlink(missing_ok=True)
        cfg = trial_config(spec, {}, job.overrides())
        runs.prepare_run(folder, cfg)
        train(cfg, folder, progress=False)
        model = runs.load_run(folder, "raw")
        acc = FormalLanguageTask(cfg.formal).word_accuracy(
            model, n=spec.get("word_eval", 100), seed=cfg.train.eval_seed
        )
        atomic.write_json(
            folder / WORD_ACC, {"seconds": time.time() - t0, "by_length": {str(k): v for k, v in acc.items()}}
        )
    except Exception as e:  # noqa: BLE001 - recorded for the parent, which reports it in one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_json(
            folder / ERROR, {"error": msg if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {msg}"}
        )


def _worker(out: str, spec: dict, todo: list[Job], threads: int, parent: int) -> None:
    """A spawned worker: its share of the runs, one after the other. Ctrl-C is the parent's to
    handle (it stops the workers); a worker ends itself if the parent dies."""
    import torch

    from training.experiments.runner import exit_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent)
    torch.set_num_threads(threads)
    # tqdm's default lock is a multiprocessing semaphore; a worker stopped by Ctrl-C could not
    # release it, and the resource tracker would warn about it on the user's terminal
    tqdm.set_lock(threading.RLock())
    for job in todo:
        train_job(Path(out), spec, job)


def read_row(out: Path, job: Job) -> dict:
    """One run's result row from its files: word accuracy and TV by length, or its error."""
    folder = out / job.folder
    if not _done(out, job):
        error = folder / ERROR
        why = read_json(error, "error record").get("error", "failed") if error.is_file() else "did not finish"
        return {"job": job.__dict__, "error": why}
    record = read_json(folder / WORD_ACC, "word accuracy")
    final = read_json(folder / runs.FINAL, "final metrics")["raw"]
    acc = {int(k): v for k, v in record["by_length"].items()}
    return {"job": job.__dict__, "word_acc": acc, "tv": final["values"]["tv"], "seconds": record["seconds"]}


def _bin_mean(values: dict[int, float], lo: int, hi: int) -> float:
    picked = [v for k, v in values.items() if lo <= k <= hi]
    return float(np.mean(picked)) if picked else float("nan")


def summarize(spec: dict, rows: list[dict]) -> dict:
    """Per language and positional encoding: word accuracy and TV per bin, per seed and their mean."""
    out: dict = {}
    for row in rows:
        if "error" in row:
            continue
        j = row["job"]
        tv = {i + 1: v for i, v in enumerate(row["tv"])}
        cell = out.setdefault(j["language"], {}).setdefault(j["positional"], {"seeds": {}})
        cell["seeds"][str(j["seed"])] = {
            "word_acc": [_bin_mean(row["word_acc"], lo, hi) for lo, hi in spec["bins"]],
            "tv": [_bin_mean(tv, lo, hi) for lo, hi in spec["bins"]],
        }
    for by_pos in out.values():
        for cell in by_pos.values():
            for key in ("word_acc", "tv"):
                per_seed = np.array([s[key] for s in cell["seeds"].values()])
                cell[key] = per_seed.mean(0).tolist()
                cell[f"{key}_min"] = per_seed.min(0).tolist()
                cell[f"{key}_max"] = per_seed.max(0).tolist()
    return out


def table(spec: dict, summary: dict) -> str:
    """Word accuracy (%) per bin, mean over seeds with the range, one row per language."""
    bins = [f"{lo}-{hi}" for lo, hi in spec["bins"]]
    head = ["language"] + [f"{p} {b}" for p in spec["positional"] for b in bins]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for language in spec["languages"]:
        cells = [language]
        for p in spec["positional"]:
            c = summary.get(language, {}).get(p)
            for i in range(len(bins)):
                if c is None:
                    cells.append("-")
                else:
                    lo, hi, m = (100 * c[k][i] for k in ("word_acc_min", "word_acc_max", "word_acc"))
                    cells.append(f"{m:.1f} ({lo:.0f}-{hi:.0f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_suite(
    out: str | Path, spec_path: str | Path | None, workers: int = 2, threads: int = 1, progress: bool = True
) -> dict:
    """Run (or resume) the suite in ``out``; ``spec_path`` None resumes with the stored suite file."""
    out = Path(out)
    stored = out / SPEC
    if spec_path is None:
        if not stored.is_file():
            raise WorkbenchError(f"{out} holds no suite to resume ({SPEC} is missing)")
        spec = check_spec(read_json(stored, "suite file"), str(stored))
    else:
        spec = check_spec(read_json(spec_path, "suite file"), str(spec_path))
        if stored.is_file() and read_json(stored, "suite file") != spec:
            raise WorkbenchError(f"{out} holds another suite (resume it without --spec, or use another --out)")
    if workers < 1 or threads < 1:
        raise ConfigError("--workers and --threads must be positive")
    out.mkdir(parents=True, exist_ok=True)
    if not stored.is_file():
        atomic.write_json(stored, spec)
    todo = jobs(spec)
    pending = [j for j in todo if not _done(out, j)]
    t0 = time.time()
    bar = tqdm(
        total=len(todo), initial=len(todo) - len(pending), desc="suite runs", disable=not progress, dynamic_ncols=True
    )
    # each worker takes every n-th pending run; results travel through the run folders, so a
    # killed worker or an interrupted suite loses at most the runs in progress (they resume)
    ctx = get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(str(out), spec, pending[i::workers], threads, os.getpid()))
        for i in range(min(workers, len(pending)))
    ]
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            bar.update(sum(_done(out, j) for j in todo) - bar.n)
    except BaseException:  # Ctrl-C: stop the workers now; their runs resume from the last checkpoint
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise
    finally:
        bar.update(sum(_done(out, j) for j in todo) - bar.n)
        bar.close()
    rows = [read_row(out, j) for j in todo]
    summary = summarize(spec, rows)
    result = {
        "spec": spec,
        "seconds_this_call": time.time() - t0,
        "run_seconds": sum(r.get("seconds", 0.0) for r in rows),
        "failures": [r for r in rows if "error" in r],
        "languages": summary,
    }
    atomic.write_json(out / RESULTS, result)
    atomic.write_text(out / TABLE, table(spec, summary))
    return result

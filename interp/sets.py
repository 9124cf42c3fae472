"""Fixed-seed batches of random sets for every length at once, shared by all probes.

A batch holds the first ``max_len`` items of random permutations; with causal attention the
position of item ``s`` ends a uniformly random ``s``-set, so one batch covers lengths 1..max_len.
The same seed gives the same sets to every model and every probe.
"""

from __future__ import annotations

from typing import Iterator

import torch

from training.tasks.set_complement import SetComplementBatch, SetComplementTask


def set_batches(
    task: SetComplementTask,
    sets_per_length: int,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> Iterator[SetComplementBatch]:
    """Yield batches totalling ``sets_per_length`` sequences of ``max_len`` items."""
    max_len = task.cfg.max_eval_len if max_len is None else max_len
    gen = torch.Generator(device=device).manual_seed(seed)
    done = 0
    while done < sets_per_length:
        n = min(batch_size, sets_per_length - done)
        yield task.sample_batch(n, max_len=max_len, generator=gen, device=device)
        done += n


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device

"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A reader (or a resumed run after ``kill -9``) therefore sees either the old file or the new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:  # name the file the caller asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(target)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            # mkstemp makes the file private (0600), and some writers (safetensors) replace it
            # with another private file: give the result the mode an ordinary open() would
            os.chmod(tmp_path, 0o666 & ~umask())
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, target)
        finally:
            full = _disk_full(target.parent)  # before the temporary file is removed
    except OSError as e:  # name the file the caller asked for, not the temporary one
        tmp_path.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(target)) from None
    except Exception as e:
        tmp_path.unlink(missing_ok=True)
        if full:  # torch.save and safetensors report a full disk as their own errors
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has no block left for this user."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def umask() -> int:
    """The process's umask, read without setting it where the system says it (Linux): setting it,
    even to restore it at once, would briefly change the caller's process for its other threads."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # elsewhere the only portable way to read it
    os.umask(mask)
    return mask


def write_with(target: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_with(target, lambda p: p.write_text(text))


def write_json(target: str | os.PathLike, data) -> None:
    write_text(target, json.dumps(data, indent=2) + "\n")

"""Shared command-line plumbing: one-line errors, exit codes, argparse without tracebacks."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

from training.errors import WorkbenchError

DEFAULT_THREADS = 1
"""Torch threads of a command that trains or probes in its own process. These models are tiny: a
second thread gains little on a quiet machine and stalls every step when another process holds a
core (``benchmarks/threads.py``; docs/benchmarks.md). Study and sweep workers have their own."""


def say(message: str) -> None:
    """Print ``message`` on stderr as exactly one line: characters that a terminal or a reader of
    lines would break or hide (a newline in a path, a control character in an argument) are
    shown escaped."""
    print("".join(c if c.isprintable() else repr(c)[1:-1] for c in message), file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line on stderr, exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        say(f"{self.prog}: error: {message}")
        raise SystemExit(2)


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads N`` on a command that trains or probes (``DEFAULT_THREADS`` unless given)."""
    p.add_argument(
        "--threads",
        dest="torch_threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"torch threads (default {DEFAULT_THREADS}: fastest for these small models on a machine shared "
        "with other work; docs/benchmarks.md)",
    )


def _threads(args: argparse.Namespace):
    """The command's ``--threads`` for the length of the command (put back after, for a caller
    that runs ``main`` in its own process, such as the tests); nothing for one without it."""
    from contextlib import nullcontext

    from training.scoped import num_threads

    n = getattr(args, "torch_threads", None)
    if n is None:
        return nullcontext()
    if n < 1:
        raise WorkbenchError(f"--threads must be positive, got {n}")
    return num_threads(n)


OUTPUT_FILES = ("json",)
"""Arguments that name a file a command writes."""
OUTPUT_FOLDERS = ("out",)
"""Arguments that name a folder a command creates or writes into."""


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_outputs(
    args: argparse.Namespace, files: tuple[str, ...] = OUTPUT_FILES, folders: tuple[str, ...] = OUTPUT_FOLDERS
) -> None:
    """Every output path a command was given, checked before it does any work or writes anything:
    a file argument must not be a folder, a folder argument must not be a file, and the nearest
    folder that exists above either must be a writable folder (a file in the way is named).
    ``files`` and ``folders`` name the arguments of each kind (a script's ``--out`` may be a file)."""
    for kind, names in (("file", files), ("folder", folders)):
        for name in names:
            path = getattr(args, name, None)
            if not isinstance(path, Path):
                continue
            flag = f"--{name}"
            if kind == "file" and path.is_dir():
                raise WorkbenchError(f"{flag} {path} is a folder; it needs a file name")
            if kind == "folder" and path.exists() and not path.is_dir():
                raise WorkbenchError(f"{flag} {path} is a file; it needs a folder")
            above = _nearest_existing(path if kind == "folder" else path.parent)
            if not above.is_dir():
                raise WorkbenchError(f"{flag} {path}: {above} is a file, not a folder")
            try:  # a real write test (os.access says yes to root on read-only and virtual file systems)
                tempfile.TemporaryFile(dir=above).close()
            except OSError as e:
                raise WorkbenchError(f"{flag} {path}: cannot write in {above} ({e.strerror or e})") from None


def run_cli(
    handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, interrupted: str = "interrupted"
) -> int:
    """Run a subcommand (at its ``--threads``, for those that have it); user-facing errors become
    one line on stderr and exit status 2, and Ctrl-C prints ``interrupted`` (each command line
    says what an interruption leaves behind)."""

    def body() -> int | None:
        check_outputs(args)
        with _threads(args):
            return handler(args)

    return guarded(body, interrupted)


def guarded(body: Callable[[], int | None], interrupted: str = "interrupted") -> int:
    """``body()``'s exit status, with the errors a user can cause (a bad value, a path that cannot
    be read or written, a failed database) as one line on stderr and status 2, and Ctrl-C as
    ``interrupted`` and status 130. Anything else is a bug and keeps its traceback."""
    try:
        return body() or 0
    except WorkbenchError as e:
        say(f"error: {e}")
        return 2
    except OSError as e:  # a path that cannot be made, read or written (permissions, a file in the way, disk full)
        where = f" ({e.filename})" if e.filename else ""
        say(f"error: {e.strerror or type(e).__name__}{where}")
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as e:  # a database that failed under a report or a notebook-style reader
        from training.experiments.runner import database_fault, database_message

        fault = database_fault(e)
        if fault is None:
            raise
        say(f"error: {database_message(fault)}")
        return 2


def positive_int(text: str) -> int:
    """An argparse ``type``: a count of at least 1 (steps, rounds, threads, games); anything else
    is a usage error naming the argument, before any work starts."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number of at least 1, got {text!r}")
    return n


def run_script(main: Callable[[], int | None]) -> None:
    """The ``__main__`` of a script or benchmark: exit with ``main()``'s status, its user-facing
    errors one line each as a command's are (``guarded``)."""
    sys.exit(guarded(main))

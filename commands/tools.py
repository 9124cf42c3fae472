"""Shared command-line plumbing: one-line errors, exit codes, argparse without tracebacks."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from training.errors import WorkbenchError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line on stderr, exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def run_cli(
    handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, interrupted: str = "interrupted"
) -> int:
    """Run a subcommand; user-facing errors become one line on stderr and exit status 2, and
    Ctrl-C prints ``interrupted`` (each command line says what an interruption leaves behind)."""
    try:
        return handler(args) or 0
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be made, read or written (permissions, a file in the way, disk full)
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130

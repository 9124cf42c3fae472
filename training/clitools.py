"""Shared command-line plumbing: one-line errors, exit codes, argparse without tracebacks."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import WorkbenchError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line on stderr, exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def run_cli(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand; user-facing errors become one line on stderr and exit status 2."""
    try:
        return handler(args) or 0
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (resume with: python -m training resume RUN_DIR)", file=sys.stderr)
        return 130

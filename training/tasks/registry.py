"""The task registry: a run config's ``kind`` names a task class and the config section it reads.

This is the one place that knows which tasks exist. The config loader, the trainer, the
experiments and the command lines look a kind up here and then talk to the ``Task`` interface
(``training/tasks/base.py``). A new task is a new file with its config dataclass and its ``Task``
subclass, plus one line in ``TASKS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.errors import ConfigError, WorkbenchError
from training.tasks.base import Task, TaskShape
from training.tasks.formal_languages.task import FormalLanguageConfig, FormalLanguageTask
from training.tasks.othello.task import OthelloConfig, OthelloTask
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask


@dataclass(frozen=True)
class TaskEntry:
    section: str
    """The run config's section holding this task's settings."""
    config_cls: type
    task_cls: type[Task]
    default_section: bool = False
    """Fill the section with its defaults when a config leaves it out (the set task's ``task``
    section always has been), instead of requiring it."""


TASKS: dict[str, TaskEntry] = {
    "set_complement": TaskEntry("task", SetComplementConfig, SetComplementTask, default_section=True),
    "othello": TaskEntry("othello", OthelloConfig, OthelloTask),
    "formal_language": TaskEntry("formal", FormalLanguageConfig, FormalLanguageTask),
}


def entry(kind: str) -> TaskEntry:
    if kind not in TASKS:
        raise ConfigError(f"kind must be one of {', '.join(repr(k) for k in TASKS)}, got {kind!r}")
    return TASKS[kind]


def sections() -> dict[str, TaskEntry]:
    """Every task section name with its entry."""
    return {e.section: e for e in TASKS.values()}


def task_shape(kind: str, section_cfg: Any) -> TaskShape:
    return entry(kind).task_cls.shape(section_cfg)


def make_task(kind: str, section_cfg: Any) -> Task:
    """The task object (for Othello this memory-maps and checks the dataset)."""
    return entry(kind).task_cls(section_cfg)


def require(kind: str, wanted: str, what: str) -> None:
    """Stop with one line when a tool made for task ``wanted`` is given a run of another kind."""
    if kind != wanted:
        other = entry(kind).task_cls.report_command
        article = "an" if wanted[0] in "aeiou" else "a"
        raise WorkbenchError(
            f"{what} needs {article} {wanted!r} run, this one is {kind!r} (try python -m interp {other})"
        )

"""The layout's rules, read off the source: dependencies run one way (``training`` never imports
``interp`` or the command lines), tests and benchmarks never import each other, and ``interp`` has
no submodule directly under it whose name would shadow an exported function."""

from __future__ import annotations

import ast
from pathlib import Path

import interp

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def offenders(folder: str, banned: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.name in skip:
            continue
        for m in imported_modules(path):
            if m.split(".")[0] in banned:
                found.append(f"{path.relative_to(ROOT)} imports {m}")
    return found


def test_a_planted_import_is_found(tmp_path):
    """The checker itself, on a file that imports interp inside a function."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("import os\n\ndef f():\n    from interp.core import attention\n")
    assert imported_modules(tmp_path / "pkg" / "m.py") == {"os", "interp.core"}


def test_training_never_imports_interp_or_the_command_lines():
    # __main__.py is the launcher of `python -m training`: it hands over to commands.train
    assert offenders("training", ("interp", "commands"), skip=("__main__.py",)) == []


def test_interp_never_imports_the_command_lines():
    assert offenders("interp", ("commands",), skip=("__main__.py",)) == []


def test_tests_and_benchmarks_do_not_import_each_other():
    assert offenders("tests", ("benchmarks", "gpu")) == []
    assert offenders("benchmarks", ("tests",)) == []
    assert offenders("gpu", ("tests",)) == []


def test_no_interp_submodule_shadows_an_export():
    direct = {p.stem for p in (ROOT / "interp").glob("*.py")} | {
        p.name for p in (ROOT / "interp").iterdir() if p.is_dir()
    }
    assert direct & set(interp.__all__) == set()

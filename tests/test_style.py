"""Style is checked, not hoped for: ruff's linter and formatter (configured in pyproject.toml,
lines of at most 120 characters) pass on the whole repository."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lints_clean():
    out = _ruff("check", "--output-format", "concise", ".")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_ruff_format_leaves_every_file_as_it_is():
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_the_linter_catches_a_planted_long_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = '" + "a" * 130 + "'\n")
    out = _ruff("check", "--config", str(ROOT / "pyproject.toml"), "--output-format", "concise", str(bad))
    assert out.returncode == 1 and "E501" in out.stdout

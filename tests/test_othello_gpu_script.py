"""The GPU benchmark script runs end to end at a tiny size on the CPU, and names missing imports."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_tiny_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/othello_gpu.py", "--tiny", "--device", "cpu", "--out", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for words in ("games/s", "tokens/s:", "MFU:", "legal top-1: in range", "legal top-1 by move index"):
        assert words in out, words
    assert (tmp_path / "run" / "final_metrics.json").exists()


def test_gpu_script_names_missing_packages(tmp_path):
    # Hide transformer_lens behind a stub that makes find_spec fail, as on a bare GPU machine.
    code = ("import importlib.util, sys, runpy; real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'transformer_lens' else real(name, *a)\n"
            "sys.argv = ['othello_gpu.py', '--tiny']\n"
            f"runpy.run_path({str(ROOT / 'benchmarks' / 'othello_gpu.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "missing Python packages: transformer-lens" in proc.stderr

"""The GPU benchmark script runs end to end at a tiny size on the CPU, names packages that do not
import, and installs missing ones from a folder of wheels."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "gpu" / "othello_gpu.py")


@pytest.fixture(scope="module")
def tiny_gpu_run(tmp_path_factory):
    """One tiny CPU run of the GPU script (eager and compiled timed), shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("gpu_script")
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--tiny",
            "--device",
            "cpu",
            "--compile",
            "auto",
            "--out",
            str(tmp_path / "run"),
            "--json",
            str(tmp_path / "figures.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp_path, proc.stdout


def test_gpu_script_tiny_on_cpu(tiny_gpu_run):
    tmp_path, out = tiny_gpu_run
    for words in (
        "games/s",
        "eager:",
        "compiled:",
        "tokens/s:",
        "MFU:",
        "legal top-1: in range",
        "legal top-1 by move index",
        "plain PyTorch (nanoGPT style, same shape",
        "ours / plain =",
    ):
        assert words in out, words
    final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    figures = json.loads((tmp_path / "figures.json").read_text())
    # the figures file repeats the run's own final evaluation, and the step time it chose
    assert figures["legal_top1_by_move"] == [round(x, 4) for x in final["raw"]["values"]["legal_top1"]]
    assert figures["tokens_per_s"] > 0 and figures["steps"] == final["step"] == 20
    assert figures["ours_over_plain"] == figures["tokens_per_s"] / figures["plain_tokens_per_s"]
    chosen = "compiled_ms_per_step" if figures["compiled"] else "eager_ms_per_step"
    assert (
        abs(figures["batch"] * 30 / (figures[chosen] / 1e3) - figures["tokens_per_s"]) < 1e-6 * figures["tokens_per_s"]
    )


def _fake_transformer_lens(tmp_path: Path) -> dict:
    """A transformer_lens that fails to import because a dependency is missing, as when a GPU
    machine has the package but not everything it needs."""
    fake = tmp_path / "fake"
    (fake / "transformer_lens").mkdir(parents=True, exist_ok=True)
    (fake / "transformer_lens" / "__init__.py").write_text("import wm_missing_dep\n")
    return {**os.environ, "PYTHONPATH": str(fake)}


def test_gpu_script_names_what_does_not_import(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_fake_transformer_lens(tmp_path),
    )
    assert proc.returncode == 2
    assert "transformer-lens does not import (ModuleNotFoundError: No module named 'wm_missing_dep')" in proc.stderr
    assert "missing Python packages: transformer-lens" in proc.stderr and "Traceback" not in proc.stderr


def test_gpu_script_installs_missing_packages_from_wheels(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    dist = "wm_missing_dep-0.1.dist-info"
    with zipfile.ZipFile(wheels / "wm_missing_dep-0.1-py3-none-any.whl", "w") as z:
        z.writestr("wm_missing_dep.py", "VALUE = 1\n")
        z.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: wm-missing-dep\nVersion: 0.1\n")
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}/RECORD", f"wm_missing_dep.py,,\n{dist}/METADATA,,\n{dist}/WHEEL,,\n{dist}/RECORD,,\n")
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--check-only", "--wheels", str(wheels)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_fake_transformer_lens(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "installing 1 wheels" in proc.stdout and "imports ok" in proc.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--check-only", "--wheels", str(empty)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_fake_transformer_lens(tmp_path),
    )
    assert proc.returncode == 2 and f"no wheel files in {empty}" in proc.stderr


def test_gpu_profile_script_tiny_on_cpu():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "gpu" / "othello_gpu_profile.py"),
            "--tiny",
            "--device",
            "cpu",
            "--compile",
            "off",
            "--batch",
            "8",
            "--scale-batch",
            "0",
            "--steps",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("eager, batch 8:"))
    assert "ms/step" in line and "matmul" in line and "tokens/s" in line
    kernels = [x for x in proc.stdout.splitlines() if x.startswith("    ")]
    assert kernels and any("[mm]" in k for k in kernels)  # the matmuls are found and labelled


def test_profile_counts_each_gpu_kernel_once():
    # An op's row carries the device time of the kernels it launched: on a GPU only kernel rows
    # may be summed (a first H100 run summed both and reported twice the busy time).
    import torch

    sys.path.insert(0, str(ROOT / "gpu"))
    from othello_gpu_profile import device_rows, is_matmul

    CPU, CUDA = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    ev = lambda key, dev, dev_us, cpu_us, n: type(  # noqa: E731
        "E",
        (),
        dict(
            key=key,
            device_type=dev,
            self_device_time_total=dev_us,
            self_cpu_time_total=cpu_us,
            count=n,
        ),
    )()
    events = [
        ev("aten::mm", CPU, 4000, 50, 4),
        ev("nvjet_sm90_tst_128x128", CUDA, 4000, 0, 4),
        ev("aten::add", CPU, 1000, 20, 2),
        ev("triton_poi_fused_add_0", CUDA, 1000, 0, 2),
    ]
    rows = device_rows(events, steps=2, cuda=True)
    assert rows == [("nvjet_sm90_tst_128x128", 2.0, 2), ("triton_poi_fused_add_0", 0.5, 1)]
    assert sum(r[1] for r in rows if is_matmul(r[0])) == 2.0
    cpu_rows = device_rows(events, steps=2, cuda=False)
    assert cpu_rows == [("aten::mm", 0.025, 2), ("aten::add", 0.01, 1)]


def test_pack_and_unpack_a_run_keeps_it_usable(tiny_gpu_run, tmp_path):
    # pack -> unpack must give a run dir that loads, with weights equal to the fp16 rounding of the
    # original and the held-out games unchanged.
    import numpy as np
    import torch
    from safetensors.torch import load_file

    run = tiny_gpu_run[0] / "run"
    pack = str(ROOT / "gpu" / "pack_run.py")
    for args in (
        ["pack", str(run), str(tmp_path / "packed")],
        ["unpack", str(tmp_path / "packed"), str(tmp_path / "back")],
    ):
        proc = subprocess.run([sys.executable, pack, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(f.stat().st_size < 15_000_000 for f in (tmp_path / "packed").iterdir())
    a, b = (
        load_file(str(run / "weights_raw.safetensors")),
        load_file(str(tmp_path / "back" / "weights_raw.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k].half().float(), b[k]) for k in a)
    src = np.load(json.loads((run / "config.json").read_text())["othello"]["data"] + "/games.npy")
    back = np.load(tmp_path / "back" / "data" / "games.npy")
    assert np.array_equal(back[-2000:], src[-2000:]) and np.array_equal(back[:2000], src[:2000])
    from training import runs

    assert isinstance(runs.load_run(tmp_path / "back"), torch.nn.Module)
    assert runs.read_run_config(tmp_path / "back").othello.val_games == 2000
    proc = subprocess.run(
        [sys.executable, pack, "unpack", str(tmp_path / "nothing"), str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "holds no meta.tar" in proc.stderr and "Traceback" not in proc.stderr

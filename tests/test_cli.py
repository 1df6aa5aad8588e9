"""The invoke front door: bad input gets one clear line and exit 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, build_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NPUKIT_BUILD_DIR": str(build_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["build", "softmax"], "error: unknown kernel 'softmax'; known kernels: attention"),
    (["build", "attention", "--param", "tiles"], "error: --param 'tiles' is not key=value"),
    (["build", "attention", "--param", "colour=red"], "error: unknown parameter 'colour'"),
    (["build", "attention", "--param", "head_dim=70"], "error: head_dim 70 is not a multiple of 8"),
    (["build", "attention", "--param", "tiles=100000"], "error: tiles 100000 is above the maximum"),
    (["build", "attention", "--target", "fpga"], "error: --target 'fpga' is not one of"),
    (["build", "attention", "--all"], "error: give one kernel (attention, gelu"),
    (["build"], "error: give one kernel (attention, gelu"),
    (["test-hw", "--seeds", "1", "--backend", "emu"], "--seeds 1 is too few"),
])
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = invoke(*args, build_dir=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert message in out
    assert len(out.strip().splitlines()) == 1


def test_build_writes_an_emulation_artifact_and_says_what_is_missing(tmp_path: Path) -> None:
    proc = invoke("build", "attention", "--target", "emu", build_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attention built" in proc.stdout and "emulation-only artifact" in proc.stdout
    assert (tmp_path / "attention" / "default" / "manifest.json").is_file()
    again = invoke("build", "--all", "--target", "emu", build_dir=tmp_path)
    assert again.returncode == 0 and "attention up to date" in again.stdout


def test_list_and_doctor(tmp_path: Path) -> None:
    listing = invoke("list", build_dir=tmp_path)
    assert listing.returncode == 0 and "head_dim" in listing.stdout
    doctor = invoke("doctor", build_dir=tmp_path)
    assert doctor.returncode == 0 and "host c++" in doctor.stdout

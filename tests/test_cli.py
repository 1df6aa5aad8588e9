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
    (["build", "attention", "--all"], "No idea what '--all' is!"),
    (["build"], "'build' did not receive required positional arguments: 'kernel'"),
    (["build", "attention", "-p"], "Flag '--param' needed value and was not given one!"),
    (["build", "attention", "-p", "--target", "emu"], "Flag '--param' needed value"),
    (["test-hw", "--seeds", "1", "--backend", "emu"], "--seeds 1 is outside 2..1000"),
    (["build", "attention", "-p", "tiles=2", "-p", "tiles=3"], "--param tiles is given twice"),
    (["test-hw", "--report", "README.md/x.json", "--backend", "emu"],
     "error: --report README.md/x.json: File exists; give a writable path"),
    (["test-hw", "--junit", "d" * 300 + "/j.xml"], "d/j.xml: File name too long; give a"),
    (["build", "layernorm", "-p", "gamma=" + "g" * 300 + ".npy"],
     "g.npy': File name too long (304 characters); give a shorter path"),
    (["test-hw", "attention", "--backend", "emu"], "No idea what 'attention' is!"),
    (["build", "--help"], "'--help' is not a kernel name; for the task's flags, run"),
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
    again = invoke("build-all", "--target", "emu", build_dir=tmp_path)
    assert again.returncode == 0 and "attention up to date" in again.stdout


def test_optional_kernels_are_flags_and_help_is_help(tmp_path: Path) -> None:
    """No optional positional (invoke has none): `--kernel` narrows test-hw and publish."""
    for name in ("build-all", "test-hw", "publish"):
        helped = invoke(name, "--help", build_dir=tmp_path)
        assert helped.returncode == 0 and "Usage:" in helped.stdout, helped.stdout
    assert "-k STRING, --kernel=STRING" in invoke("test-hw", "--help", build_dir=tmp_path).stdout
    missing = invoke("test-hw", "--kernel", "gelu", "--backend", "emu", build_dir=tmp_path)
    assert missing.returncode == 1 and "no artifacts for gelu" in missing.stderr


def test_list_and_doctor(tmp_path: Path) -> None:
    listing = invoke("list", build_dir=tmp_path)
    assert listing.returncode == 0 and "head_dim" in listing.stdout
    doctor = invoke("doctor", build_dir=tmp_path)
    assert doctor.returncode == 0 and "host c++" in doctor.stdout


def test_publish_and_verify_bundle_from_the_command_line(tmp_path: Path) -> None:
    build_dir, dist = tmp_path / "build", tmp_path / "dist"
    assert invoke("build", "gelu", "-p", "length=256", build_dir=build_dir).returncode == 0
    refused = invoke("publish", "--out", str(dist), build_dir=build_dir)
    assert refused.returncode == 1 and "emulation-only artifact" in refused.stdout
    published = invoke("publish", "--out", str(dist), "--allow-unverified", build_dir=build_dir)
    assert published.returncode == 0, published.stdout + published.stderr
    (bundle,) = dist.glob("gelu-*.tar.gz")
    strict = invoke("verify-bundle", str(bundle), build_dir=build_dir)
    assert strict.returncode == 1 and "intact but unverified" in strict.stdout
    assert "Traceback" not in strict.stdout + strict.stderr
    lenient = invoke("verify-bundle", str(bundle), "--allow-unverified", build_dir=build_dir)
    assert lenient.returncode == 0 and "intact, unverified" in lenient.stdout
    for bad in (["bench", "--calls", "0"], ["test-hw", "--seeds", "abc"]):
        proc = invoke(*bad, build_dir=build_dir)
        assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr


def _one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert message in out and len(out.strip().splitlines()) == 1, out


def test_clean_deletes_only_a_build_directory_npukit_made(tmp_path: Path) -> None:
    """NPUKIT_BUILD_DIR naming a user's directory (here a checkout with .git) is refused."""
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "notes.txt").write_text("mine")
    _one_line_error(invoke("clean", build_dir=checkout),
                    f"error: {checkout}: not a directory npukit made (no .npukit-build-root")
    assert sorted(p.name for p in checkout.iterdir()) == [".git", "notes.txt"]

    from codegen.kernels import spec_from_params
    from codegen.pipeline import build

    made = tmp_path / "build"
    build(spec_from_params("gelu", {"length": "256"}), made, target="emu")
    proc = invoke("clean", build_dir=made)
    assert proc.returncode == 0 and "removed build/" in proc.stdout, proc.stdout + proc.stderr
    assert not made.exists()


def test_clean_of_a_read_only_build_directory_is_one_line(tmp_path: Path) -> None:
    from codegen.kernels import spec_from_params
    from codegen.pipeline import build
    from tests.conftest import read_only

    made = tmp_path / "build"
    build(spec_from_params("gelu", {"length": "256"}), made, target="emu")
    with read_only(made):
        _one_line_error(invoke("clean", build_dir=made), f"error: {made}: cannot delete")
    assert (made / ".npukit-build-root").is_file()  # the marker goes last: clean can be rerun
    assert invoke("clean", build_dir=made).returncode == 0 and not made.exists()


def test_clean_dist_only_when_publish_made_it(tmp_path: Path) -> None:
    from codegen.buildroot import CleanError
    from codegen.cli import clean

    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "keep.tar.gz").write_text("someone else's")
    with pytest.raises(CleanError, match="not a directory npukit made"):
        clean(tmp_path / "no-build", dist=True, dist_root=dist)
    assert (dist / "keep.tar.gz").is_file()

"""Bad tools, bad arguments and Ctrl-C: one line each, never a traceback, never ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from codegen.toolchain import discover, require_cxx
from runtime.errors import RunError, ToolchainError
from runtime.kernel import NpuKernel

ROOT = Path(__file__).resolve().parent.parent
GELU = {"length": "256"}


# -- the host compiler ------------------------------------------------------------------------
def test_a_cxx_that_does_not_exist_is_one_line_not_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    tc = discover(None, tmp_path / "tools.json")
    with pytest.raises(ToolchainError, match=r"^CXX='/nonexistent/g\+\+': /nonexistent/g\+\+ is "
                                             r"not an executable on PATH; set CXX"):
        require_cxx(tc)
    with pytest.raises(ToolchainError, match="not an executable on PATH"):
        build(spec_from_params("gelu", GELU), tmp_path, target="emu")


def test_a_cxx_command_line_is_split_like_a_shell(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """CXX="wrapper g++" (ccache's form) runs the wrapper with g++ as its first argument."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "bin" / "wrap cc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CXX", f"'{wrapper}' g++")
    result = build(spec_from_params("gelu", GELU), tmp_path / "build", target="emu")
    calls = log.read_text().splitlines()
    assert calls[0] == "g++ --version"
    assert any(c.startswith("g++ -O2") and "-fstack-usage" in c for c in calls)
    assert list(result.manifest.tools["cxx"]["args"]) == ["g++"]


def test_a_compiler_that_exits_0_without_output_is_named(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "true")
    with pytest.raises(ToolchainError) as e:
        build(spec_from_params("gelu", GELU), tmp_path, target="emu")
    line = str(e.value)
    assert line.startswith("host compile of gelu.cc: ") and "exited 0 but wrote no .o" in line
    assert "is CXX a C++ compiler" in line and "/tmp" not in line and "\n" not in line


# -- NpuKernel.load's arguments, on every backend ---------------------------------------------
@pytest.mark.parametrize("where", [None, 42, 1.5, ["build"]])
def test_load_refuses_a_path_that_is_not_one(where: object) -> None:
    with pytest.raises(RunError, match=r"artifact_dir must be a path \(str or os\.PathLike\)"):
        NpuKernel.load(where)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["emu", "xrt", "auto"])
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layout": "no-such-layout"}, "unknown BO layout 'no-such-layout'"),
    ({"layout": 3}, "layout must be 'baseline', 'legacy' or a BoLayout, got int"),
    ({"timeout_ms": -5}, "timeout_ms=-5: expected whole milliseconds 0..4294967295"),
    ({"timeout_ms": 1 << 32}, "timeout_ms=4294967296: expected whole milliseconds"),
    ({"timeout_ms": 1.5}, "timeout_ms=1.5: expected whole milliseconds"),
    ({"timeout_ms": None}, "timeout_ms=None: expected whole milliseconds"),
    ({"timeout_ms": True}, "timeout_ms=True: expected whole milliseconds"),
])
def test_load_validates_layout_and_timeout_on_every_backend(
        artifact: Path, backend: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RunError) as e:
        NpuKernel.load(artifact, backend=backend, **kwargs)  # type: ignore[arg-type]
    assert message in str(e.value)


def test_load_accepts_the_edges_of_the_timeout(artifact: Path) -> None:
    for timeout_ms in (0, 1, (1 << 32) - 1):  # 0: no timeout, as XRT's run.wait(0)
        with NpuKernel.load(artifact, backend="emu", timeout_ms=timeout_ms, layout="legacy"):
            pass


# -- Ctrl-C -----------------------------------------------------------------------------------
def _invoke(*args: str, build_dir: Path, python: list[str] | None = None,
            env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "NPUKIT_BUILD_DIR": str(build_dir), "COLUMNS": "200", **(env or {})}
    return subprocess.Popen([sys.executable, *(python or []), "-m", "invoke", *args], cwd=ROOT,
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _interrupted(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C as a terminal sends it (to the whole process group); the output afterwards."""
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    text = out + err
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.strip().splitlines()[-1] == "interrupted", text
    assert text.count("interrupted") == 1
    return text


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_during_a_build_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Ctrl-C while the host compiler runs (it gets the SIGINT too, as from a terminal)."""
    started = tmp_path / "compiling"
    slow = tmp_path / "slow-cxx"
    slow.write_text(f'#!/bin/sh\ncase "$*" in *" -c "*) touch "{started}"; sleep 30;; esac\n'
                    'exec g++ "$@"\n')
    slow.chmod(0o755)
    proc = _invoke("build", "gelu", "-p", "length=512", "--target", "emu", build_dir=tmp_path,
                   env={"CXX": str(slow)})
    deadline = time.monotonic() + 60
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    _interrupted(proc)
    assert not list((tmp_path / ".cache").glob("*/.tmp-*")), "a stage's temporary was left"
    assert not (tmp_path / "gelu").exists() or not list((tmp_path / "gelu").glob(".*tmp*"))


def test_ctrl_c_while_tasks_py_is_still_importing_is_one_line_and_exit_130(
        tmp_path: Path) -> None:
    """Before any task runs: tasks.py installs the handler before its own (slow) imports.

    `-X importtime` reports each import as it ends; rich's comes after that first line."""
    proc = _invoke("build", "gelu", "--target", "emu", build_dir=tmp_path, python=["-X",
                                                                                  "importtime"])
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.rstrip().endswith("rich.console"):
            break
    _interrupted(proc)


@pytest.fixture
def built(tmp_path: Path) -> Path:
    root = tmp_path / "build"
    build(spec_from_params("gelu", GELU), root, target="emu")
    return root


def _wait_for_child(proc: subprocess.Popen[str]) -> int:
    """The pid of test-hw's verifying child (not multiprocessing's resource tracker), once it
    has had a second to import and start verifying."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for kid in _children(proc.pid):
            if "spawn_main" in Path(f"/proc/{kid}/cmdline").read_text():
                time.sleep(1.0)
                return kid
        time.sleep(0.05)
    raise AssertionError("test-hw started no child process")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_during_test_hw_stops_the_child_without_its_traceback(built: Path) -> None:
    proc = _invoke("test-hw", "--backend", "emu", "--iterations", "1000000", build_dir=built)
    child = _wait_for_child(proc)
    _interrupted(proc)
    time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(
        f"/proc/{child}/stat").read_text().split()[2]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_test_hw_child_is_quiet_when_its_parent_is_killed(built: Path) -> None:
    proc = _invoke("test-hw", "--backend", "emu", "--iterations", "200", build_dir=built)
    _wait_for_child(proc)
    proc.kill()  # the parent only; the child finishes and finds no one to report to
    _out, err = proc.communicate(timeout=120)  # the pipes close when the child exits
    assert "BrokenPipeError" not in err and "Traceback" not in err, err

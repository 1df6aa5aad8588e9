"""Each cache key covers what the README says it covers: a change to any of them rebuilds.

Every test builds once, changes one input of one stage's key (the checks' code, the linters'
code, the host compiler binary, its flags, bootgen) and asserts that exactly that stage runs
again. A key that forgot the input would report the second build as up to date.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from codegen import pipeline
from codegen.kernels import spec_from_params
from codegen.pipeline import build
from tests.conftest import FAKES


def _built(stages: list[tuple[str, str]]) -> set[str]:
    return {name for name, status in stages if status == "built"}


def _digest_changing_for(monkeypatch: pytest.MonkeyPatch, paths: tuple[str, ...]) -> None:
    """From now on, the digest of exactly `paths` is that of edited code."""
    real = pipeline.code_digest

    def digest(which: tuple[str, ...]) -> str:
        out = real(which)
        return out + "-edited" if which == paths else out

    monkeypatch.setattr(pipeline, "code_digest", digest)


def test_the_checks_code_is_in_the_check_key(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_from_params("gelu")
    build(spec, tmp_path, target="emu")
    _digest_changing_for(monkeypatch, pipeline.CHECK_CODE)
    again = build(spec, tmp_path, target="emu")
    assert "check" in _built(again.stages)
    assert "host-core" not in _built(again.stages)  # the checks do not change the core


def test_the_linters_code_is_in_the_lint_key(tmp_path: Path, fake_toolchain: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_from_params("gelu")
    build(spec, tmp_path, target="hw")
    _digest_changing_for(monkeypatch, pipeline.LINT_CODE)
    again = build(spec, tmp_path, target="hw")
    assert "lint" in _built(again.stages)
    assert "aiecc" not in _built(again.stages)


def _wrapper(path: Path, real: str) -> Path:
    path.write_text(f'#!/bin/sh\nexec {real} "$@"\n')
    path.chmod(0o755)
    return path


def test_the_host_compiler_binary_is_in_the_host_core_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    assert real, "the test needs a host C++ compiler"
    cxx = _wrapper(tmp_path / "c++", real)
    monkeypatch.setenv("CXX", str(cxx))
    spec = spec_from_params("gelu")
    build(spec, tmp_path / "b", target="emu")
    # The same path and version, another binary (an upgrade in place): the core is rebuilt.
    cxx.write_text(cxx.read_text() + "# rebuilt\n")
    again = build(spec, tmp_path / "b", target="emu")
    assert "host-core" in _built(again.stages)


def test_the_host_flags_are_in_the_host_core_key(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_from_params("gelu")
    build(spec, tmp_path, target="emu")
    flags = (*pipeline.HOST_FLAGS, "-DNPUKIT_KEY_PROBE=1")
    monkeypatch.setattr(pipeline, "HOST_FLAGS", flags)
    from codegen import hostcore

    monkeypatch.setattr(hostcore, "HOST_FLAGS", flags)
    again = build(spec, tmp_path, target="emu")
    assert "host-core" in _built(again.stages)


def test_bootgen_is_in_the_aiecc_key(tmp_path: Path, fake_toolchain: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    shutil.copy2(FAKES / "bin" / "bootgen", tools / "bootgen")
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    spec = spec_from_params("gelu")
    build(spec, tmp_path / "b", target="hw")
    bootgen = tools / "bootgen"
    bootgen.write_text(bootgen.read_text() + "\n# another build of the same version\n")
    again = build(spec, tmp_path / "b", target="hw")
    assert "aiecc" in _built(again.stages)
    assert "aie-core" not in _built(again.stages)  # Peano's output does not depend on bootgen

"""The core-path switch (`path` = scalar | vector): one define for the host-core and aie-core
stages, part of both cache keys, recorded in the manifest with what compiled the core."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codegen import pipeline
from codegen.kernels.matmul import MatmulSpec
from codegen.pipeline import Build, build
from codegen.render import render
from codegen.spec import SpecError
from runtime.errors import ToolchainError
from runtime.manifest import load_manifest


class PathProbe(MatmulSpec):
    """matmul and its `path` parameter, for the plumbing alone."""


@pytest.fixture
def no_peano(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("PEANO_INSTALL_DIR", raising=False)


def test_path_is_scalar_or_vector() -> None:
    assert PathProbe().core_path == "scalar"
    assert PathProbe({"path": "vector"}).core_path == "vector"
    with pytest.raises(SpecError, match="path simd is not one of: scalar, vector"):
        PathProbe({"path": "simd"})


def test_the_path_define_reaches_the_host_compile_and_its_key(tmp_path: Path,
                                                              no_peano: None) -> None:
    scalar, vector = PathProbe(), PathProbe({"path": "vector"})
    assert scalar.variant != vector.variant
    keys = [Build(s, tmp_path, target="emu").keys for s in (scalar, vector)]
    assert keys[0]["host-core"] != keys[1]["host-core"]
    # the same core sources, another define (the design differs only by the vector path's
    # larger stack_size)
    sources = [render(s).files for s in (scalar, vector)]
    assert {n: sources[0][n] for n in sources[0] if n != "aie.mlir"} == {
        n: sources[1][n] for n in sources[1] if n != "aie.mlir"}

    for spec, flag in ((scalar, "-DNPUKIT_VECTOR=0"), (vector, "-DNPUKIT_VECTOR=1")):
        result = build(spec, tmp_path, target="emu")
        key = Build(spec, tmp_path, target="emu").keys["host-core"]
        compile_cmd = json.loads(
            (tmp_path / ".cache" / "host-core" / key / "command.json").read_text())[0]
        assert flag in compile_cmd and "-DNPUKIT_AIE_ARCH=20" in compile_cmd
        assert any(a.startswith("-I") and a.endswith("host_aie_api") for a in compile_cmd)
        record = load_manifest(result.artifact_dir).core_build
        assert record["path"] == spec.core_path
        assert record["aie"] == "not compiled for aie2: Peano missing"
        assert ("host AIE API subset" in record["host"]) == (spec.core_path == "vector")


def test_npu2_builds_model_aie2p_on_the_host(tmp_path: Path, no_peano: None) -> None:
    spec = PathProbe({"path": "vector", "device": "npu2_1col"})
    result = build(spec, tmp_path, target="emu")
    assert "-DNPUKIT_AIE_ARCH=21" in pipeline.host_core_flags(spec)
    assert load_manifest(result.artifact_dir).core_build["aie"] == (
        "not compiled for aie2p: Peano missing")


def test_a_change_to_the_host_aie_api_rebuilds_the_host_core(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = tmp_path / "api"
    shutil.copytree(pipeline.HOST_AIE_API, api)
    monkeypatch.setattr(pipeline, "HOST_AIE_API", api)
    spec = PathProbe({"path": "vector"})
    before = Build(spec, tmp_path / "b", target="emu").keys["host-core"]
    header = api / "aie_api" / "aie.hpp"
    header.write_text(header.read_text() + "\n// touched\n")
    assert Build(spec, tmp_path / "b", target="emu").keys["host-core"] != before


def test_the_vector_hw_build_gives_peano_the_define_and_the_real_headers(
        tmp_path: Path, fake_toolchain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlir_aie = tmp_path / "mlir_aie"
    (mlir_aie / "include" / "aie_api").mkdir(parents=True)
    (mlir_aie / "include" / "aie_api" / "aie.hpp").write_text("// stand-in\n")
    monkeypatch.setenv("MLIR_AIE_INSTALL_DIR", str(mlir_aie))
    peano_log = tmp_path / "peano.log"
    monkeypatch.setenv("FAKE_PEANO_LOG", str(peano_log))
    result = build(PathProbe({"path": "vector"}), tmp_path / "b", target="hw")
    calls = [json.loads(line)["argv"] for line in peano_log.read_text().splitlines()]
    compile_cmd = next(c for c in calls if "-c" in c)
    assert "-DNPUKIT_VECTOR=1" in compile_cmd
    assert f"-I{(mlir_aie / 'include').resolve()}" in compile_cmd
    assert not any("host_aie_api" in a for a in compile_cmd)  # the host subset stays on the host
    record = load_manifest(result.artifact_dir).core_build
    assert record["aie"].startswith("Peano clang version") and "aie_api headers" in record["aie"]
    obj = (result.artifact_dir / "matmul.o").read_bytes()
    assert b"NPUKIT_VECTOR=1" in obj

    scalar = Build(PathProbe(), tmp_path / "b", target="hw").keys["aie-core"]
    assert scalar != Build(PathProbe({"path": "vector"}), tmp_path / "b",
                           target="hw").keys["aie-core"]


def test_a_vector_hw_build_without_aie_api_headers_says_so(
        tmp_path: Path, fake_toolchain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLIR_AIE_INSTALL_DIR", raising=False)
    monkeypatch.setattr(pipeline, "discover", _without_include(pipeline.discover))
    with pytest.raises(ToolchainError, match=r"path=vector: Peano needs mlir-aie's aie_api "
                                             r"headers .* MLIR_AIE_INSTALL_DIR"):
        build(PathProbe({"path": "vector"}), tmp_path, target="hw")


def _without_include(discover):  # type: ignore[no-untyped-def]
    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        tc = discover(*args, **kwargs)
        tc.mlir_aie_include = None
        return tc
    return wrapped

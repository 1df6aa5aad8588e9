"""The staged build: emulation artifacts, the cache, the fake toolchain, lint and failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codegen import render as render_mod
from codegen.kernels import spec_from_params
from codegen.pipeline import Build, BuildError, build
from runtime.errors import ArtifactError, ToolchainError
from runtime.manifest import load_manifest


def test_emulation_artifact_contents(tmp_path: Path) -> None:
    result = build(spec_from_params("attention"), tmp_path, target="emu")
    art = tmp_path / "attention" / "default"
    assert result.artifact_dir == art
    names = {p.name for p in art.iterdir()}
    assert {"aie.mlir", "attention.cc", "libattention.host.so", "manifest.json"} <= names
    m = load_manifest(art)
    assert m.emulation_only and m.file_for("xclbin") is None
    assert [(b.name, b.arg_index, b.nbytes) for b in m.buffers] == [
        ("qkv", 3, 12288), ("out", 4, 4096)]
    assert m.bo_layout["instr"] == {"arg_index": 1, "flags": "cacheable"}
    assert m.host_libraries == {"attention.o": "libattention.host.so"}
    assert result.missing_line and result.missing_line.startswith("no xclbin:")


def test_second_build_is_a_cache_hit_and_changes_rebuild(tmp_path: Path) -> None:
    statuses: list[tuple[str, str]] = []
    spec = spec_from_params("attention")
    build(spec, tmp_path, target="emu")
    again = Build(spec, tmp_path, target="emu", log=lambda s, st: statuses.append((s, st))).run()
    assert again.up_to_date
    assert statuses == [("validate", "ok")]  # no stage ran again

    other = build(spec_from_params("attention", {"tiles": "2"}), tmp_path, target="emu")
    assert not other.up_to_date
    assert ("host-core", "built") in other.stages


def test_template_and_core_source_changes_rebuild(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mlir = tmp_path / "mlir"
    shutil.copytree(render_mod.MLIR_ROOT, mlir)
    monkeypatch.setattr(render_mod, "MLIR_ROOT", mlir)
    monkeypatch.setattr(render_mod, "COMMON", mlir / "common")
    monkeypatch.setattr(render_mod, "_ENV", render_mod._ENV.overlay(
        loader=render_mod.jinja2.FileSystemLoader(str(mlir))))
    root = tmp_path / "build"
    spec = spec_from_params("attention")
    build(spec, root, target="emu")

    design = mlir / "attention" / "design.mlir.j2"
    design.write_text(design.read_text().replace("per invocation", "per call"))
    after_template = build(spec, root, target="emu")
    assert not after_template.up_to_date
    assert "tile(s) per call" in (root / "attention/default/aie.mlir").read_text()

    shared = mlir / "common" / "stream.mlir.j2"
    shared.write_text(shared.read_text().replace("do not edit.", "do not edit!"))
    assert not build(spec, root, target="emu").up_to_date

    core = mlir / "attention" / "attention.cc"
    core.write_text(core.read_text() + "\n// touched\n")
    after_core = build(spec, root, target="emu")
    assert ("host-core", "built") in after_core.stages


def test_fake_toolchain_gets_the_exact_commands(tmp_path: Path, fake_toolchain: Path) -> None:
    result = build(spec_from_params("attention", {"tiles": "2"}), tmp_path, target="hw")
    calls = [json.loads(line) for line in fake_toolchain.read_text().splitlines()]
    calls = [c for c in calls if c["argv"][1:] != ["--version"]]
    assert len(calls) == 1
    argv = calls[0]["argv"]
    assert argv[1:6] == ["--aie-generate-xclbin", "--aie-generate-npu-insts", "--no-xchesscc",
                         "--no-xbridge", "--peano"]
    assert Path(argv[6]).name == "peano"
    assert argv[7:10] == ["--xclbin-name=final.xclbin", "--npu-insts-name=insts.bin",
                          "--alloc-scheme=bank-aware"]
    assert argv[10].startswith("--tmpdir=") and argv[11] == "aie.mlir"
    assert (Path(calls[0]["cwd"]) / "attention.o").is_file()

    m = load_manifest(result.artifact_dir)
    assert not m.emulation_only
    assert m.file_for("xclbin") == "final.xclbin" and m.file_for("insts") == "insts.bin"
    assert m.n_insts_words == (result.artifact_dir / "insts.bin").stat().st_size // 4
    assert m.alloc_scheme == "bank-aware"
    assert m.tools["aiecc"]["version"].startswith("aiecc")
    assert [s for s, st in result.stages if st == "built"] == [
        "render", "check", "host-core", "aie-core", "aiecc", "lint"]


def test_aiecc_failure_shows_work_dir_and_removes_stale_artifact(
        tmp_path: Path, fake_toolchain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_from_params("attention")
    build(spec, tmp_path, target="hw")
    art = tmp_path / "attention" / "default"
    assert (art / "final.xclbin").is_file()

    # A new core source must go through aiecc again; that link overflows.
    monkeypatch.setenv("FAKE_AIECC_FAIL", "overflow")
    changed = spec_from_params("attention", {"o_scale": "0.02"})
    with pytest.raises(BuildError) as err:
        build(changed, tmp_path, target="hw")
    text = str(err.value)
    assert "overflowed by 1234 bytes" in text
    assert str(tmp_path / ".work" / "attention" / changed.variant / "aiecc") in text
    assert not (tmp_path / "attention" / changed.variant).exists()

    # The same variant rebuilt (forced) with a failing link: the old xclbin is not kept.
    with pytest.raises(BuildError):
        Build(spec, tmp_path, target="hw", force=True).run()
    assert not art.exists()


def test_lying_insts_fails_lint(tmp_path: Path, fake_toolchain: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AIECC_FAIL", "badinsts")
    for _ in range(2):  # the bad output is not cached: aiecc runs again and fails again
        with pytest.raises(ArtifactError, match=r"lint of aiecc's output failed: .*insts\.bin: "
                           r"header size word says \d+ bytes, the file has \d+"):
            build(spec_from_params("attention"), tmp_path, target="hw")
    assert not (tmp_path / "attention" / "default").exists()
    runs = [c for c in fake_toolchain.read_text().splitlines() if "--tmpdir" in c]
    assert len(runs) == 2


def test_target_hw_without_toolchain_says_what_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("PEANO_INSTALL_DIR", raising=False)
    with pytest.raises(ToolchainError, match=r"no xclbin: aiecc \(mlir-aie\)"):
        build(spec_from_params("attention"), tmp_path, target="hw")


def test_corrupted_cache_entry_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    spec = spec_from_params("attention")
    build(spec, tmp_path, target="emu")
    lib = next((tmp_path / ".cache" / "host-core").glob("*/libattention.host.so"))
    lib.write_bytes(b"garbage")
    shutil.rmtree(tmp_path / "attention")
    again = build(spec, tmp_path, target="emu")
    assert ("host-core", "built") in again.stages
    m = load_manifest(again.artifact_dir)
    assert m.files["libattention.host.so"]["bytes"] > 1000


def test_peano_replaced_in_place_rebuilds(tmp_path: Path, fake_toolchain: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    peano = tmp_path / "peano"
    shutil.copytree(Path(__file__).parent / "fakes" / "peano", peano)
    monkeypatch.setenv("PEANO_INSTALL_DIR", str(peano))
    spec = spec_from_params("attention")
    build(spec, tmp_path / "b", target="hw")
    clang = peano / "bin" / "clang++"
    clang.write_text(clang.read_text() + "\n# a new build of the same version\n")
    again = build(spec, tmp_path / "b", target="hw")
    assert not again.up_to_date and ("aie-core", "built") in again.stages


def test_check_code_changes_invalidate_the_check_stage(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from codegen import pipeline

    code = tmp_path / "code"
    (code / "codegen").mkdir(parents=True)
    (code / "codegen" / "checks.py").write_text("A = 1\n")
    monkeypatch.setattr(pipeline, "CODE_ROOT", code)
    before = pipeline.code_digest(("codegen/checks.py",))
    (code / "codegen" / "checks.py").write_text("A = 2\n")
    assert pipeline.code_digest(("codegen/checks.py",)) != before


def test_a_stack_smaller_than_the_core_frames_fails_the_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NPU_FACTS 6.9: a frame larger than stack_size corrupts the tile's buffers silently."""
    from codegen.kernels.attention import AttentionSpec

    monkeypatch.setattr(AttentionSpec, "scratch_bytes", property(lambda self: 0))
    spec = spec_from_params("attention")
    assert spec.stack_size == 1024  # the estimate no longer covers the real frame
    with pytest.raises(BuildError, match=r"attention_i8 \d[\d,]*; -fstack-usage\) \+ 256 for "
                                         r"calls need [\d,]+ bytes, but the design gives its "
                                         r"core 1,024"):
        build(spec, tmp_path, target="emu")
    assert not list((tmp_path / ".cache").glob("host-core/*/stack.json"))  # nothing cached

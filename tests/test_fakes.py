"""The fake toolchain behaves like the real one where npukit depends on it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.errors import ArtifactError
from runtime.insts import lint_insts, read_insts
from runtime.xclbin import lint_xclbin
from tests.fakes.artifacts import make_multi_xclbin, make_xclbin

FAKES = Path(__file__).resolve().parent / "fakes"
AIECC = FAKES / "bin" / "aiecc"
PEANO = FAKES / "peano"
CLANG = PEANO / "bin" / "clang++"
Mutation = Callable[[list[str]], list[str]]

DESIGN = """module {
  aie.device(%(device)s) {
    %%shim = aie.tile(0, 0)
    %%core = aie.tile(0, 2)
    func.func private @k(memref<64xi8>, memref<64xi8>) attributes {link_with = "k.o"}
    aie.runtime_sequence(%%a : memref<256xi8>, %%unused : memref<4xi8>, %%b : memref<256xi8>) {
      aiex.npu.dma_memcpy_nd(%%a[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1])
          {metadata = @inq, id = 1 : i64} : memref<256xi8>
      aiex.npu.dma_memcpy_nd(%%b[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1])
          {metadata = @outq, id = 0 : i64} : memref<256xi8>
      aiex.npu.dma_wait {symbol = @outq}
    }
  }
}
"""


def aiecc_cmd(tmpdir: str = "aie.mlir.prj", scheme: str = "bank-aware") -> list[str]:
    return [
        str(AIECC),
        "--aie-generate-xclbin",
        "--aie-generate-npu-insts",
        "--no-xchesscc",
        "--no-xbridge",
        "--peano",
        str(PEANO),
        "--xclbin-name=final.xclbin",
        "--npu-insts-name=insts.bin",
        f"--alloc-scheme={scheme}",
        f"--tmpdir={tmpdir}",
        "aie.mlir",
    ]


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")}
    full_env.update(env)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)


@pytest.fixture
def design_dir(tmp_path: Path) -> Path:
    (tmp_path / "aie.mlir").write_text(DESIGN % {"device": "npu1_1col"})
    (tmp_path / "k.o").write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 9)
    return tmp_path


def test_fakes_are_executable() -> None:
    for tool in (AIECC, CLANG, FAKES / "bin" / "bootgen"):
        assert os.access(tool, os.X_OK), tool
        assert tool.read_text().startswith("#!/usr/bin/env python3\n")


def test_aiecc_version(tmp_path: Path) -> None:
    r = run([str(AIECC), "--version"], tmp_path)
    assert r.returncode == 0 and "aiecc" in r.stdout


def test_aiecc_exact_command_builds_lintable_artifacts(design_dir: Path) -> None:
    log = design_dir / "aiecc.log"
    r = run(aiecc_cmd(), design_dir, FAKE_AIECC_LOG=str(log))
    assert r.returncode == 0, r.stderr
    # runtime-sequence args a, unused, b -> kernel args 3, 4, 5; only a and b are moved
    insts = lint_insts(design_dir / "insts.bin", device="npu1_1col", bound_args=[3, 4, 5])
    assert insts.patched_args == (3, 5)
    assert insts.count("sync") == 1
    xclbin = lint_xclbin(design_dir / "final.xclbin", n_data_buffers=3, device="npu1_1col")
    assert [a.name for a in xclbin.kernel_args][3:] == ["bo0", "bo1", "bo2"]
    assert any((design_dir / "aie.mlir.prj").iterdir())
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["argv"][1:] == aiecc_cmd()[1:] and entry["cwd"] == str(design_dir)


def test_aiecc_npu2_device(design_dir: Path) -> None:
    (design_dir / "aie.mlir").write_text(DESIGN % {"device": "npu2"})
    assert run(aiecc_cmd(), design_dir).returncode == 0
    assert read_insts(design_dir / "insts.bin").dev_gen == 4
    lint_xclbin(design_dir / "final.xclbin", n_data_buffers=3, device="npu2")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: [*c, "--verbose"],
        lambda c: [x for x in c if x != "--no-xbridge"],
        lambda c: [x.replace("--xclbin-name=final.xclbin", "--xclbin-name=x.xclbin") for x in c],
        lambda c: [*c[:-1], "design.mlir"],
        lambda c: [x for x in c if not x.startswith("--tmpdir")],
        lambda c: [c[0], "--no-compile-host", *c[1:]],
        lambda c: [x for x in c if not x.startswith("--alloc-scheme")],
        lambda c: [x.replace("=bank-aware", "=greedy") for x in c],
    ],
)
def test_aiecc_rejects_other_commands(design_dir: Path, mutate: Mutation) -> None:
    r = run(mutate(aiecc_cmd()), design_dir)
    assert r.returncode == 2
    assert "usage: aiecc" in r.stderr
    assert not (design_dir / "final.xclbin").exists()


def test_aiecc_needs_link_with_object(design_dir: Path) -> None:
    (design_dir / "k.o").unlink()
    r = run(aiecc_cmd(), design_dir)
    assert r.returncode == 1 and "k.o not found" in r.stderr
    assert not (design_dir / "final.xclbin").exists()


def test_aiecc_rejects_non_elf_object(design_dir: Path) -> None:
    (design_dir / "k.o").write_text("not an object")
    r = run(aiecc_cmd(), design_dir)
    assert r.returncode == 1 and "unknown file type" in r.stderr


def test_aiecc_rejects_old_sequence_spelling(design_dir: Path) -> None:
    text = (design_dir / "aie.mlir").read_text()
    (design_dir / "aie.mlir").write_text(
        text.replace("aie.runtime_sequence", "aiex.runtime_sequence")
    )
    r = run(aiecc_cmd(), design_dir)
    assert r.returncode != 0 and "'aiex.runtime_sequence' is unknown" in r.stderr


def test_aiecc_overflow_failure(design_dir: Path) -> None:
    r = run(aiecc_cmd(), design_dir, FAKE_AIECC_FAIL="overflow")
    assert r.returncode == 1
    assert (
        "ld.lld: error: section '.bss' will not fit in region 'data': overflowed by 1234 bytes"
        in (r.stderr)
    )
    assert not (design_dir / "final.xclbin").exists()
    assert any((design_dir / "aie.mlir.prj").iterdir())  # partial files left in the tmpdir


def test_aiecc_badinsts_is_caught_by_the_linter(design_dir: Path) -> None:
    assert run(aiecc_cmd(), design_dir, FAKE_AIECC_FAIL="badinsts").returncode == 0
    with pytest.raises(ArtifactError, match="header size word says"):
        read_insts(design_dir / "insts.bin")


def clang_cmd(src: str = "k.cc", target: str = "aie2-none-unknown-elf") -> list[str]:
    return [
        str(CLANG),
        "-O2",
        "-std=c++20",
        f"--target={target}",
        "-DNDEBUG",
        "-I/opt/mlir_aie/include",
        "-Iinc",
        "-c",
        src,
        "-o",
        "k.o",
    ]


@pytest.mark.parametrize("target", ["aie2-none-unknown-elf", "aie2p-none-unknown-elf"])
def test_clang_compiles_stub_object(tmp_path: Path, target: str) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "params.h").write_text("#define N 4\n")
    (tmp_path / "k.cc").write_text('#include "params.h"\nextern "C" void k() {}\n')
    r = run(clang_cmd(target=target), tmp_path)
    assert r.returncode == 0, r.stderr
    obj = (tmp_path / "k.o").read_bytes()
    assert obj.startswith(b"\x7fELF") and target.encode() in obj


def test_clang_missing_header(tmp_path: Path) -> None:
    (tmp_path / "k.cc").write_text('#include "params.h"\n')
    r = run(clang_cmd(), tmp_path)
    assert r.returncode == 1 and "'params.h' file not found" in r.stderr


def test_clang_missing_source(tmp_path: Path) -> None:
    r = run(clang_cmd("gone.cc"), tmp_path)
    assert r.returncode == 1 and "gone.cc" in r.stderr
    assert not (tmp_path / "k.o").exists()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: [x.replace("-O2", "-O0") for x in c],
        lambda c: [x.replace("aie2-none", "x86_64-none") for x in c],
        lambda c: [x for x in c if not x.startswith("-I")],
        lambda c: [x for x in c if x != "-DNDEBUG"],
        lambda c: [x for x in c if x != "-c"],
    ],
)
def test_clang_rejects_other_flags(tmp_path: Path, mutate: Mutation) -> None:
    (tmp_path / "k.cc").write_text("\n")
    r = run(mutate(clang_cmd()), tmp_path)
    assert r.returncode == 2 and "usage: clang++" in r.stderr


def test_clang_version(tmp_path: Path) -> None:
    r = run([str(CLANG), "--version"], tmp_path)
    assert r.returncode == 0 and "clang version" in r.stdout


def test_fake_aiecc_runs_under_this_interpreter_path(design_dir: Path) -> None:
    # the pipeline may run it through `sys.executable` on systems without /usr/bin/env python3
    r = run([sys.executable, *aiecc_cmd()], design_dir)
    assert r.returncode == 0, r.stderr


def test_bootgen_help_and_pdi(tmp_path: Path) -> None:
    bootgen = FAKES / "bin" / "bootgen"
    r = run([str(bootgen), "-help"], tmp_path)
    assert r.returncode == 0 and "Bootgen" in r.stdout
    (tmp_path / "d.bif").write_text("all:\n{\n}\n")
    cmd = [str(bootgen), "-arch", "versal", "-image", "d.bif", "-o", "d.pdi", "-w"]
    assert run(cmd, tmp_path).returncode == 0
    assert (tmp_path / "d.pdi").stat().st_size > 0
    assert run([*cmd[:2], "versalx", *cmd[3:]], tmp_path).returncode == 2
    assert run([*cmd[:4], "missing.bif", *cmd[5:]], tmp_path).returncode == 1


def test_aiecc_bank_aware_refuses_a_fifo_element_above_a_bank(design_dir: Path) -> None:
    """As mlir-aie's allocator: bank-aware places each buffer within one 16 KiB bank."""
    text = (design_dir / "aie.mlir").read_text().replace(
        "    func.func private",
        "    aie.objectfifo @inq(%shim, {%core}, 2 : i32) : !aie.objectfifo<memref<18432xi8>>\n"
        "    func.func private")
    (design_dir / "aie.mlir").write_text(text)
    r = run(aiecc_cmd(), design_dir)
    assert r.returncode == 1 and "Failed to allocate buffer: inq_buff_0" in r.stderr
    assert run(aiecc_cmd(scheme="basic-sequential"), design_dir).returncode == 0


@pytest.mark.parametrize(("case", "size", "digest"), [
    ("default", 2392, "7e69b6d5c364ffed6363e1556860629dc14435a2c38b3bc084ade77d0890e519"),
    ("variant", 3440, "8b4d7fd66a1d8a0df7a5ec05b7fa18b4a154dc4dafab0213c9e935106d060006"),
    ("multi", 3672, "a96926aa7e94d9858a1e1414fe148905d5b12216ec8ca2061b78bd9e4f69937c"),
])
def test_fake_xclbins_share_one_container_and_keep_their_bytes(case: str, size: int,
                                                               digest: str) -> None:
    """The single- and multi-kernel fakes wrap their sections in one axlf container writer;
    the bytes are pinned to those each wrote with its own copy before they shared it."""
    data = {
        "default": lambda: make_xclbin(),
        "variant": lambda: make_xclbin(3, 2, kernel_name="gelu_a", other_kernels=("mm_b",),
                                       omit_sections=("GROUP_TOPOLOGY",)),
        "multi": lambda: make_multi_xclbin([("gelu", "gelu_i", 0x901, 3),
                                            ("ln", "ln_i", 0x902, 2)], 1, (1, 2, 3, 4)),
    }[case]()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest)

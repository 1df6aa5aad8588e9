"""The matmul vector MAC (mlir/matmul/matmul_mac_vector.h) compiled for the host with npukit's AIE
API subset: acc += A·B over blocked tiles equals a plain numpy product of the same tiles."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen.hostcore import HostCore
from codegen.render import COMMON, HOST_AIE_API, MLIR_ROOT

HEADER = MLIR_ROOT / "matmul" / "matmul_mac_vector.h"
BLOCKS = {"aie2": (20, (4, 8, 8)), "aie2p": (21, (8, 8, 8))}
SHIM = """#include "matmul_mac_vector.h"
extern "C" void mac(const int8_t *a, const int8_t *b, int32_t *acc) {
  npukit_mac_tile_vector(a, b, acc);
}
"""


def blocked(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[R, C] row-major -> [R/rows][C/cols][rows][cols], the layout of shared contract 1."""
    r, c = x.shape
    return np.ascontiguousarray(x.reshape(r // rows, rows, c // cols, cols).transpose(0, 2, 1, 3))


def unblocked(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r, c = shape
    return x.transpose(0, 2, 1, 3).reshape(r, c)


def build_mac(tmp: Path, arch: str, tm: int, tk: int, tn: int) -> HostCore:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    arch_id, (r, s, t) = BLOCKS[arch]
    (tmp / "matmul_params.h").write_text(
        f"#define MM_TM {tm}\n#define MM_TK {tk}\n#define MM_TN {tn}\n"
        f"#define MM_R {r}\n#define MM_S {s}\n#define MM_T {t}\n")
    (tmp / "shim.cc").write_text(SHIM)
    out = tmp / "libmac.so"
    proc = subprocess.run(
        [cxx, "-std=c++20", "-O2", "-fPIC", "-shared", f"-DNPUKIT_AIE_ARCH={arch_id}",
         f"-I{tmp}", f"-I{HEADER.parent}", f"-I{COMMON}", f"-I{HOST_AIE_API}",
         str(tmp / "shim.cc"), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return HostCore(out)


@pytest.mark.parametrize(("arch", "tm", "tk", "tn"), [
    ("aie2", 32, 64, 32),   # even block counts: the four-accumulator loop
    ("aie2", 12, 16, 24),   # odd block counts: one block at a time
    ("aie2p", 64, 64, 64),
    ("aie2p", 24, 8, 40),
])
def test_vector_mac_equals_numpy_on_blocked_tiles(tmp_path: Path, arch: str, tm: int, tk: int,
                                                   tn: int) -> None:
    core = build_mac(tmp_path, arch, tm, tk, tn)
    r, s, t = BLOCKS[arch][1]
    rng = np.random.default_rng(tm * tk + tn)
    pairs = [(rng.integers(-128, 128, (tm, tk), dtype=np.int8),
              rng.integers(-128, 128, (tk, tn), dtype=np.int8)) for _ in range(2)]
    pairs.append((np.full((tm, tk), -128, dtype=np.int8), np.full((tk, tn), -128, dtype=np.int8)))
    acc = np.zeros((tm // r, tn // t, r, t), dtype=np.int32)
    want = np.zeros((tm, tn), dtype=np.int64)
    for a, b in pairs:  # three k tiles into one accumulator, as the core's k loop does
        core.call("mac", blocked(a, r, s), blocked(b, s, t), acc)
        want += a.astype(np.int64) @ b.astype(np.int64)
        np.testing.assert_array_equal(unblocked(acc, (tm, tn)), want)


def test_vector_mac_rejects_tiles_off_the_block_grid(tmp_path: Path) -> None:
    """A tile size that is not a multiple of the mmul block fails to compile with its reason."""
    with pytest.raises(AssertionError, match="multiples of the mmul block"):
        build_mac(tmp_path, "aie2", 6, 16, 16)

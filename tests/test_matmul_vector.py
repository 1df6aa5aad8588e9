"""The matmul vector path (mlir/matmul/matmul_mac_vector.h) compiled for the host with npukit's
AIE API subset: acc += A·B over blocked tiles equals a plain numpy product of the same tiles, and
the vector requantisation equals the integer formula of the matmul spec's docstring."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen.hostcore import HostCore
from codegen.render import COMMON, HOST_AIE_API, MLIR_ROOT
from codegen.spec import quantize_multiplier

HEADER = MLIR_ROOT / "matmul" / "matmul_mac_vector.h"
BLOCKS = {"aie2": (20, (4, 8, 8)), "aie2p": (21, (8, 8, 8))}
SHIM = """#include "matmul_mac_vector.h"
extern "C" void mac(const int8_t *a, const int8_t *b, int32_t *acc) {
  npukit_mac_tile_vector(a, b, acc);
}
extern "C" void requant(const int32_t *acc, int8_t *c, int32_t n_index) {
  npukit_requant_tile_vector(acc, c, n_index);
}
"""


def _array(name: str, values: list[int]) -> str:
    return f"static const int32_t {name}[{len(values)}] = {{ {', '.join(map(str, values))} }};\n"


def blocked(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[R, C] row-major -> [R/rows][C/cols][rows][cols], the layout of shared contract 1."""
    r, c = x.shape
    return np.ascontiguousarray(x.reshape(r // rows, rows, c // cols, cols).transpose(0, 2, 1, 3))


def unblocked(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r, c = shape
    return x.transpose(0, 2, 1, 3).reshape(r, c)


def build_mac(tmp: Path, arch: str, tm: int, tk: int, tn: int, mults: list[int] | None = None,
              shifts: list[int] | None = None, bias: list[int] | None = None) -> HostCore:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    arch_id, (r, s, t) = BLOCKS[arch]
    (tmp / "matmul_params.h").write_text(
        f"#define MM_TM {tm}\n#define MM_TK {tk}\n#define MM_TN {tn}\n"
        f"#define MM_R {r}\n#define MM_S {s}\n#define MM_T {t}\n"
        f"#define MM_PER_COLUMN {int(len(mults or [0]) > 1)}\n"
        f"#define MM_HAS_BIAS {int(bool(bias))}\n"
        + _array("mm_mult", mults or [1 << 30]) + _array("mm_shift", shifts or [30])
        + (_array("mm_bias", bias) if bias else ""))
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


def requant_reference(acc: np.ndarray, mults: np.ndarray, shifts: np.ndarray,
                      bias: np.ndarray) -> np.ndarray:
    """sat(round_half_away((acc + bias_j) * mult_j / 2^shift_j)) in Python integers."""
    out = np.empty(acc.shape, dtype=np.int8)
    for (i, j), v in np.ndenumerate(acc):
        x = (int(v) + int(bias[j])) * int(mults[j])
        q, rem = divmod(abs(x), 1 << int(shifts[j]))
        q += rem >= 1 << (int(shifts[j]) - 1)
        out[i, j] = max(-128, min(127, q if x >= 0 else -q))
    return out


@pytest.mark.parametrize(("arch", "scales", "with_bias"), [
    ("aie2", "tensor", False),
    ("aie2", "column-uniform", True),   # per-column multipliers sharing one shift: vector
    ("aie2", "column-mixed", True),     # shifts differing inside a block: the scalar fallback
    ("aie2p", "column-mixed", False),
])
def test_vector_requant_equals_the_integer_formula(tmp_path: Path, arch: str, scales: str,
                                                   with_bias: bool) -> None:
    tm, tn, n_tiles = 8, 16, 3
    n = tn * n_tiles
    rng = np.random.default_rng(len(scales) + with_bias)
    if scales == "tensor":
        real = np.array([2.0e-4])
    elif scales == "column-uniform":
        real = rng.uniform(1.25e-4, 2.4e-4, n)  # inside one binade: one shift
    else:
        real = rng.uniform(2.0e-5, 4.0e-4, n)
    pairs = [quantize_multiplier(float(x), 31, "test") for x in real]
    mults, shifts = [m for m, _ in pairs], [s for _, s in pairs]
    assert (len(set(shifts)) == 1) == (scales != "column-mixed")
    bias = rng.integers(-(1 << 20), 1 << 20, n).tolist() if with_bias else None
    core = build_mac(tmp_path, arch, tm, 8, tn, mults, shifts, bias)
    r, _, t = BLOCKS[arch][1]
    full = np.broadcast_to
    for n_index in range(n_tiles):
        acc = rng.integers(-(1 << 21), 1 << 21, (tm, tn)).astype(np.int32)
        acc[0, :4] = [2**31 - 1, -(2**31), 0, 1]  # extremes saturate
        c = np.zeros((tm // r, tn // t, r, t), dtype=np.int8)
        core.call("requant", blocked(acc, r, t), c, n_index)
        cols = slice(n_index * tn, (n_index + 1) * tn)
        m = full(np.array(mults), (n,))[cols] if len(mults) > 1 else full(mults[0], (tn,))
        s = full(np.array(shifts), (n,))[cols] if len(shifts) > 1 else full(shifts[0], (tn,))
        b = np.array(bias)[cols] if bias else np.zeros(tn, dtype=np.int64)
        want = requant_reference(acc, m, s, b)
        np.testing.assert_array_equal(unblocked(c, (tm, tn)), want)
        assert len(np.unique(want)) > 20  # not a saturated or constant tile


@pytest.mark.parametrize("arch", sorted(BLOCKS))
def test_vector_requant_rounds_ties_away_from_zero(tmp_path: Path, arch: str) -> None:
    """A scale of 1/2 makes every odd accumulator an exact tie: the vector conversion must round
    them as the scalar path does (away from zero), and saturate past ±127."""
    mult, shift = quantize_multiplier(0.5, 31, "test")
    core = build_mac(tmp_path, arch, 8, 8, 16, [mult], [shift])
    r, _, t = BLOCKS[arch][1]
    acc = np.arange(-64, 64, dtype=np.int32).reshape(8, 16) * 5
    c = np.zeros((8 // r, 16 // t, r, t), dtype=np.int8)
    core.call("requant", blocked(acc, r, t), c, 0)
    half_away = np.sign(acc) * ((np.abs(acc) + 1) // 2)
    np.testing.assert_array_equal(unblocked(c, (8, 16)), np.clip(half_away, -128, 127))

"""npukit's host AIE API subset (mlir/common/host_aie_api): one test per documented behaviour the
kernels use, each citing the section of the AIE API User Guide (UG1529, AIE-API 2026.1) it checks.
Expected values come from Python integer arithmetic, never from the subset itself."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codegen.hostcore import HostCore
from codegen.render import HOST_AIE_API

DRIVER = Path(__file__).parent / "host_aie_api" / "driver.cc"
ARCHES = {"aie2": 20, "aie2p": 21}
ROUNDING = ("floor", "ceil", "positive_inf", "negative_inf", "symmetric_inf", "symmetric_zero",
            "conv_even", "conv_odd")
SATURATION = ("none", "truncate", "saturate", "symmetric")


def _cxx() -> str:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    return cxx


def _compile(source: Path, out: Path, arch: int | None, extra: tuple[str, ...] = ()
             ) -> subprocess.CompletedProcess[str]:
    cmd = [_cxx(), "-std=c++20", "-O1", "-fPIC", "-shared", f"-I{HOST_AIE_API}", *extra]
    if arch is not None:
        cmd.append(f"-DNPUKIT_AIE_ARCH={arch}")
    return subprocess.run([*cmd, str(source), "-o", str(out)], capture_output=True, text=True)


@pytest.fixture(scope="module", params=sorted(ARCHES))
def lib(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> HostCore:
    out = tmp_path_factory.mktemp("aieapi") / f"driver_{request.param}.so"
    proc = _compile(DRIVER, out, ARCHES[request.param])
    assert proc.returncode == 0, proc.stderr
    return HostCore(out)


def _i32(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int32)


def _round(value: Fraction, mode: str) -> int:
    """The guide's rounding modes on an exact rational (Configuration, rounding_mode)."""
    lo = value.numerator // value.denominator
    frac = value - lo
    if mode == "floor" or frac == 0:
        return lo
    if mode == "ceil":
        return lo + 1
    if frac != Fraction(1, 2):
        return lo + (frac > Fraction(1, 2))
    tie = {"positive_inf": lo + 1, "negative_inf": lo,
           "symmetric_inf": lo + 1 if value > 0 else lo,
           "symmetric_zero": lo if value > 0 else lo + 1,
           "conv_even": lo + (lo & 1), "conv_odd": lo + 1 - (lo & 1)}
    return tie[mode]


def _conv(lib: HostCore, a: list[int], b: list[int], shift: int, rounding: str,
          saturation: str, bits: int) -> list[int]:
    out = np.zeros(16, dtype=np.int32)
    lib.call("conv_mul", _i32(a), _i32(b), shift, ROUNDING.index(rounding),
             SATURATION.index(saturation), bits, out)
    return out.tolist()


# Values a*b whose shift by 3 lands below, on and above every half-way point, both signs.
TIE_A = [4, 12, -4, -12, 3, 5, -3, -5, 20, -20, 11, -11, 0, 8, -8, 1]
TIE_B = [1] * 16


@pytest.mark.parametrize("mode", ROUNDING)
def test_rounding_modes_on_to_vector(lib: HostCore, mode: str) -> None:
    """Configuration: rounding_mode (floor, ceil, positive_inf, negative_inf, symmetric_inf,
    symmetric_zero, conv_even, conv_odd), as set_rounding applies it in accumulator to vector
    conversions (Basic Types: accum::to_vector, "shift-round-saturate")."""
    got = _conv(lib, TIE_A, TIE_B, 3, mode, "saturate", 32)
    assert got == [_round(Fraction(x, 8), mode) for x in TIE_A]


def test_symmetric_inf_is_round_half_away_from_zero(lib: HostCore) -> None:
    """Configuration: symmetric_inf "Round to nearest integer, with preference away from zero at
    half-way": npukit's requantisation rounding, at the shifts its scales produce (up to 62)."""
    rng = np.random.default_rng(1)
    a = rng.integers(-(1 << 31), 1 << 31, 16).tolist()
    b = rng.integers(1 << 30, 1 << 31, 16).tolist()
    for shift in (1, 17, 31, 40, 62):
        got = _conv(lib, a, b, shift, "symmetric_inf", "none", 32)
        want = []
        for x, y in zip(a, b, strict=True):
            q, r = divmod(abs(x * y), 1 << shift)
            q += r >= 1 << (shift - 1)
            want.append(((q if x * y >= 0 else -q) + (1 << 31)) % (1 << 32) - (1 << 31))
        assert got == want, shift


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("mode", SATURATION)
def test_saturation_modes_on_to_vector(lib: HostCore, mode: str, bits: int) -> None:
    """Configuration: saturation_mode: none "allows values to overflow", saturate "retain
    maximum/minimum value", truncate its deprecated spelling, symmetric "max and min limits have
    exactly the same absolute value"; applied by to_vector to int8 and int16 (Basic Types)."""
    hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    values = [0, 1, -1, hi, lo, hi + 1, lo - 1, 3 * hi, -3 * hi, 1 << 20, -(1 << 20), lo + 1,
              hi - 1, 77, -77, 1 << bits]
    got = _conv(lib, values, [1] * 16, 0, "floor", mode, bits)
    if mode == "none":
        want = [(v - lo) % (1 << bits) + lo for v in values]
    elif mode == "symmetric":
        want = [max(-hi, min(hi, v)) for v in values]
    else:
        want = [max(lo, min(hi, v)) for v in values]
    assert got == want


def test_to_vector_shift_zero_keeps_values(lib: HostCore) -> None:
    """Basic Types: accum::to_vector(shift = 0): no downshift, so no rounding; values that fit the
    element type come back unchanged under every rounding mode."""
    a = [5, -5, 123456, -123456, 0, 1, -1, 7] * 2
    for mode in ROUNDING:
        assert _conv(lib, a, [3] * 16, 0, mode, "saturate", 32) == [3 * x for x in a]


def test_int32_products_accumulate_in_acc64(lib: HostCore) -> None:
    """Arithmetic: mul of int32 by int32 defaults to an acc64 accumulator (table "Default
    accumulator tag for different integral factor types", AIE-ML/XDNA2), and mac adds the
    element-wise product to it: products beyond 32 bits are exact."""
    rng = np.random.default_rng(2)
    a, b, c, d = (rng.integers(-(1 << 31), 1 << 31, 16) for _ in range(4))
    hi = np.zeros(16, dtype=np.int32)
    lo = np.zeros(16, dtype=np.uint32)
    lib.call("mac_mul", *(x.astype(np.int32) for x in (a, b, c, d)), hi, lo)
    got = [(int(h) << 32) | int(low) for h, low in zip(hi, lo, strict=True)]
    want = [int(x) * int(y) + int(z) * int(w) for x, y, z, w in zip(a, b, c, d, strict=True)]
    assert got == want


def test_from_vector_upshifts(lib: HostCore) -> None:
    """Basic Types: accum::from_vector(v, shift) "updates the contents of the accumulator using
    the values in the given vector after applying the requested upshift"."""
    v = _i32([1, -1, 3, -3, 1000, -1000, 0, 7, 2, -2, 5, -5, 11, -11, 64, -64])
    for shift in (0, 1, 5):
        out = np.zeros(16, dtype=np.int32)
        lib.call("from_vector_acc32", v, shift, out)
        assert out.tolist() == [int(x) << shift for x in v]


def test_modes_read_back_as_set(lib: HostCore) -> None:
    """Configuration: set_rounding/get_rounding and set_saturation/get_saturation."""
    fn = lib._lib.modes_round_trip
    fn.restype = ctypes.c_int
    for r in range(len(ROUNDING)):
        for s in range(len(SATURATION)):
            assert fn(r, s) == r * 16 + s


def test_load_v_and_store_v_move_contiguous_elements(lib: HostCore) -> None:
    """Memory: load_v<Elems>(ptr) reads Elems consecutive elements, store_v(ptr, v) writes them;
    Basic Types: vector::get, vector::set and operator[] address element idx."""
    src = np.arange(-64, 64, dtype=np.int8)
    dst = np.zeros(128, dtype=np.int8)
    lib.call("load_store", src, dst, 32)
    want = np.zeros(128, dtype=np.int8)
    want[32:64] = src[32:64]
    want[33] += 1
    want[34] -= 1
    np.testing.assert_array_equal(dst, want)


def _mmul(lib: HostCore, shape: tuple[int, int, int], seed: int, *, from_vector: bool,
          twice: bool) -> tuple[np.ndarray, ...]:
    m, k, n = shape
    rng = np.random.default_rng(seed)
    a, a2 = (rng.integers(-128, 128, (m, k), dtype=np.int8) for _ in range(2))
    b, b2 = (rng.integers(-128, 128, (k, n), dtype=np.int8) for _ in range(2))
    init = rng.integers(-(1 << 20), 1 << 20, (m, n)).astype(np.int32)
    c = np.zeros((m, n), dtype=np.int32)
    lib.call("mmul_{}x{}x{}".format(*shape), a, b, a2, b2, init, int(from_vector), int(twice), c)
    return a, b, a2, b2, init, c


@pytest.mark.parametrize("shape", [(4, 8, 8), (8, 8, 8)])
def test_mmul_mul_is_a_row_major_block_product(lib: HostCore, shape: tuple[int, int, int]) -> None:
    """Matrix Multiplication: mmul::mul "Initialize the result value with the multiplication of
    the two given matrices", A M x K and B K x N "with row-major data layout"; to_accum and the
    mmul(accum) constructor carry the result unchanged."""
    a, b, _, _, _, c = _mmul(lib, shape, 3, from_vector=False, twice=False)
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("shape", [(4, 8, 8), (8, 8, 8)])
def test_mmul_mac_accumulates(lib: HostCore, shape: tuple[int, int, int]) -> None:
    """Matrix Multiplication: mmul::mac "Multiply the two given matrices and add it to the
    result", after mul and after the mmul(vector) constructor ("Data is initialized from the
    given vector", row-major)."""
    a, b, a2, b2, init, c = _mmul(lib, shape, 4, from_vector=False, twice=True)
    i64 = np.int64
    np.testing.assert_array_equal(c, a.astype(i64) @ b.astype(i64) + a2.astype(i64) @ b2)
    a, b, a2, b2, init, c = _mmul(lib, shape, 5, from_vector=True, twice=True)
    np.testing.assert_array_equal(c, init + a.astype(i64) @ b.astype(i64) + a2.astype(i64) @ b2)


def test_mmul_mul_overwrites_earlier_data(lib: HostCore) -> None:
    """Matrix Multiplication: mmul::mul "Data is overwritten regardless how it was
    initialised"."""
    rng = np.random.default_rng(6)
    a = rng.integers(-128, 128, (4, 8), dtype=np.int8)
    b = rng.integers(-128, 128, (8, 8), dtype=np.int8)
    init = np.full((4, 8), 999, dtype=np.int32)
    c = np.zeros((4, 8), dtype=np.int32)
    lib.call("mmul_mul_overwrites", a, b, init, c)
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b)


@pytest.mark.parametrize(("arch", "shape", "ok"), [
    ("aie2", (4, 8, 8), True), ("aie2", (4, 16, 8), True), ("aie2", (8, 16, 8), False),
    ("aie2p", (8, 8, 8), True), ("aie2p", (4, 8, 8), True), ("aie2p", (4, 16, 8), False),
])
def test_mmul_accepts_only_the_documented_int8_modes(tmp_path: Path, arch: str,
                                                    shape: tuple[int, int, int], ok: bool) -> None:
    """Matrix Multiplication, "Supported Matrix Multiplication Modes", 8b x 8b column: AIE-ML
    lists 4x8x8 (native) and 4x16x8 among others, XDNA2 only 4x8x8 and 8x8x8; a shape outside the
    table does not compile, as with the real headers."""
    src = tmp_path / "shape.cc"
    src.write_text("#include <aie_api/aie.hpp>\n"
                   "void f() {{ aie::mmul<{}, {}, {}, int8, int8, acc32> m; (void)m; }}\n"
                   .format(*shape))
    proc = _compile(src, tmp_path / "shape.so", ARCHES[arch])
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert "not among the 8b x 8b modes" in proc.stderr


def test_the_subset_needs_an_architecture(tmp_path: Path) -> None:
    """The architecture decides the modes (Matrix Multiplication table rows): without
    NPUKIT_AIE_ARCH the subset refuses to compile, naming the define."""
    src = tmp_path / "bare.cc"
    src.write_text("#include <aie_api/aie.hpp>\n")
    proc = _compile(src, tmp_path / "bare.so", None)
    assert proc.returncode != 0 and "define NPUKIT_AIE_ARCH" in proc.stderr


@pytest.mark.parametrize(("spelling", "ok"), [("acc32", True), ("acc64", True),
                                               ("aie::acc32", False)])
def test_accumulator_tags_are_global(tmp_path: Path, spelling: str, ok: bool) -> None:
    """Accumulator Element Types: the tags are global structs (`struct acc32`), used as
    aie::accum<acc32, 16>; code that compiles against the subset must compile against the real
    headers, so the subset offers no aie::acc32."""
    src = tmp_path / "tag.cc"
    src.write_text(f"#include <aie_api/aie.hpp>\nvoid f() {{ aie::accum<{spelling}, 16> a; "
                   "(void)a; }\n")
    assert (_compile(src, tmp_path / "tag.so", 20).returncode == 0) == ok

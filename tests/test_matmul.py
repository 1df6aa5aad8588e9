"""matmul: golden vs integer arithmetic and the float reference; host core vs golden."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from codegen.hostcore import HostCore
from codegen.kernels import spec_from_params
from codegen.kernels.matmul import MatmulSpec
from codegen.pipeline import build
from codegen.spec import SpecError


def blocked(x: np.ndarray, r: int, s: int) -> np.ndarray:
    """A row-major rows x cols tile as [rows/r][cols/s][r][s] (the layout contract)."""
    rows, cols = x.shape
    return np.ascontiguousarray(x.reshape(rows // r, r, cols // s, s).transpose(0, 2, 1, 3)).ravel()


def unblocked(y: np.ndarray, rows: int, cols: int, r: int, t: int) -> np.ndarray:
    """The inverse of `blocked` for an [rows/r][cols/t][r][t] tile."""
    return y.reshape(rows // r, cols // t, r, t).transpose(0, 2, 1, 3).reshape(rows, cols)


def run_tiled_host_core(spec: MatmulSpec, lib: Path, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Drive the host-compiled core tile by tile, as each core's loops do, in blocked layout:
    k_tiles weight tiles, then matmul_out_i8 with the column block's index or, with
    runtime_params=1, B's record tile (as the mem tile streams it)."""
    core = HostCore(lib)
    r, s, t = spec.block
    b = b.reshape(spec.b_rows, spec.N)
    c = np.zeros((spec.M, spec.N), dtype=np.int8)
    acc = np.zeros(spec.tm * spec.tn, dtype=np.int32)
    for mi in range(spec.m_tiles):
        rows = slice(mi * spec.tm, (mi + 1) * spec.tm)
        for ni in range(spec.n_tiles):
            cols = slice(ni * spec.tn, (ni + 1) * spec.tn)
            for ki in range(spec.k_tiles):
                ks = slice(ki * spec.tk, (ki + 1) * spec.tk)
                core.call("matmul_acc_i8", blocked(a[rows, ks], r, s), blocked(b[ks, cols], s, t),
                          acc, ki)
            tile = np.zeros(spec.tm * spec.tn, dtype=np.int8)
            out_arg = blocked(b[spec.K:, cols], s, t) if spec.runtime else ni
            core.call("matmul_out_i8", acc, tile, out_arg)
            c[rows, cols] = unblocked(tile, spec.tm, spec.tn, r, t)
    return c


def test_blocked_layout_is_the_contract() -> None:
    """Block (1, 0) of a 4x8-blocked 8x16 tile starts at element 32 and holds A[0:4, 8:16]."""
    x = np.arange(8 * 16).reshape(8, 16)
    y = blocked(x, 4, 8)
    np.testing.assert_array_equal(y[32:64].reshape(4, 8), x[0:4, 8:16])
    np.testing.assert_array_equal(unblocked(y, 8, 16, 4, 8), x)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mm")
    rng = np.random.default_rng(11)
    np.save(d / "scales.npy", rng.uniform(0.05, 0.2, 128) / 127)
    np.save(d / "bias.npy", rng.integers(-3000, 3000, 128))
    return d


@pytest.mark.parametrize("params", [
    {},
    {"M": "128", "K": "192", "N": "128", "tm": "32", "tk": "64", "tn": "32"},
    {"M": "64", "K": "128", "N": "128", "b_scales": "@scales.npy", "bias": "@bias.npy"},
    {"M": "64", "K": "64", "N": "128", "tn": "32", "device": "npu2", "b_scales": "@scales.npy"},
])
def test_host_core_matches_golden_and_targets(params: dict[str, str], data_dir: Path,
                                               tmp_path: Path) -> None:
    params = {k: str(data_dir / v[1:]) if v.startswith("@") else v for k, v in params.items()}
    spec = spec_from_params("matmul", params)
    assert isinstance(spec, MatmulSpec)
    result = build(spec, tmp_path, target="emu")
    lib = result.artifact_dir / result.manifest.host_libraries[spec.object_name]
    cases = [(f"seed{s}", spec.random_inputs(s)) for s in range(3)] + spec.edge_inputs()
    for name, (a, b) in cases:
        got = run_tiled_host_core(spec, lib, a, b)
        want = spec.golden([a, b])[0]
        assert np.array_equal(got, want), f"{spec.variant} {name}: host core differs"
    a, b = spec.random_inputs(5)
    golden, ref = spec.golden([a, b])[0], spec.reference([a, b])[0]
    diff = np.abs(golden.astype(int) - ref.astype(int))
    print(f"matmul {spec.variant}: within 1 LSB {np.mean(diff <= 1):.4%}, "
          f"exact {np.mean(diff == 0):.4%}, max diff {diff.max()}, std {golden.std():.1f} LSB")
    assert diff.max() <= 1 and golden.std() > 8


def test_golden_is_integer_arithmetic() -> None:
    """Against a plain int64 numpy product, requantised with the spec's integers."""
    spec = spec_from_params("matmul", {"M": "64", "K": "256", "N": "64", "tk": "64"})
    assert isinstance(spec, MatmulSpec)
    a, b = spec.random_inputs(3)
    acc = a.astype(np.int64) @ b.astype(np.int64)
    (mult,), (shift,) = spec.requant()
    exact = np.clip([round_half_away_int(int(v) * mult, shift) for v in acc.ravel()], -128, 127)
    np.testing.assert_array_equal(spec.golden([a, b])[0].ravel(), exact)


def round_half_away_int(x: int, shift: int) -> int:
    q, r = divmod(abs(x), 1 << shift)
    q += r >= 1 << (shift - 1)
    return q if x >= 0 else -q


@pytest.mark.parametrize(("params", "message"), [
    ({"M": "100"}, "tm 64 does not divide M 100; pad M to a multiple of tm"),
    ({"columns": "2"}, "columns 2 is more than device npu1_1col has (1)"),
    ({"rows": "4", "M": "192"}, "3 row(s) of tiles (M/tm) do not split evenly over 4 rows"),
    ({"columns": "4", "device": "npu1"}, "1 column(s) of tiles (N/tn) do not split evenly over 4"),
    ({"rows": "3", "columns": "2", "device": "npu1_2col", "M": "192", "N": "128"},
     "rows 3 do not split evenly over the 2 columns that carry A"),
    ({"tm": "36", "M": "72", "device": "npu2"}, "tm 36 is not a multiple of 8, the aie2p"),
    ({"rows": "4", "tm": "256", "M": "1024", "tk": "32", "K": "32", "tn": "32", "N": "32",
      "fifo_depth": "1"}, "rows·tm = 1024 C rows per mem-tile element"),
    ({"tm": "128", "tk": "128", "tn": "128", "M": "128", "K": "128", "N": "128"},
     "tile buffers need"),
    ({"b_scales": "missing.npy"}, "b_scales 'missing.npy': no such .npy file"),
    ({"N": "8192"}, "N/(tn·columns) = 128 column blocks, at most 64"),
    ({"N": "8192", "K": "64", "tk": "32", "M": "64", "columns": "4", "device": "npu1",
      "a_scale": "1e-9"}, "outside 1..62"),
])
def test_invalid_parameters_fail_before_rendering(params: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        spec_from_params("matmul", params)


@pytest.mark.parametrize(("params", "grid"), [
    ({}, (1, 1)),  # one 64x64 tile: one core
    ({"M": "1536", "K": "512", "N": "2048", "device": "npu1"}, (4, 4)),
    ({"M": "1536", "K": "512", "N": "2048", "device": "npu2"}, (4, 8)),
    ({"M": "192", "N": "128", "device": "npu1_2col"}, (3, 1)),  # 3 rows cannot share 2 A shims
    ({"M": "256", "N": "256", "columns": "2", "device": "npu1"}, (4, 2)),
    ({"M": "1536", "K": "512", "N": "2048", "rows": "1", "columns": "4", "device": "npu1"},
     (1, 4)),
])
def test_grid_defaults_to_the_largest_that_divides(params: dict[str, str],
                                                    grid: tuple[int, int]) -> None:
    spec = spec_from_params("matmul", params)
    assert isinstance(spec, MatmulSpec)
    assert spec.grid == grid


def test_a_column_whose_multiplier_underflows_does_not_refuse_the_build(tmp_path: Path) -> None:
    """Column 3's scale is below 2^-63 (exactly 0, as the reference rounds it) and column 5's
    keeps only a few bits at shift 62; the other columns are unchanged, and the emulated
    design still equals the golden model."""
    from runtime.kernel import NpuKernel

    scales = np.full(64, 0.1 / 127)
    scales[3], scales[5] = 1e-25, 1e-17
    path = tmp_path / "scales.npy"
    np.save(path, scales)
    spec = spec_from_params("matmul", {"b_scales": str(path)})
    assert isinstance(spec, MatmulSpec)
    mults, shifts = spec.requant()
    assert (mults[3], shifts[3]) == (0, 62) and shifts[5] == 62 and 0 < mults[5] < 1 << 30
    (note,) = spec.notes()
    assert "2 column(s) (first 3)" in note and "1 of them are exactly 0" in note
    a, b = spec.random_inputs(0)
    golden, ref = spec.golden([a, b])[0], spec.reference([a, b])[0]
    assert np.all(golden[:, 3] == 0) and np.abs(golden.astype(int) - ref).max() <= 1
    result = build(spec, tmp_path / "build", target="emu")
    assert note in result.manifest.notes
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        np.testing.assert_array_equal(kernel([a, b])[0], golden)
    # One scale for the whole tensor that small still refuses: every output would be 0.
    with pytest.raises(SpecError, match=r"outside 1\.\.62"):
        spec_from_params("matmul", {"b_scale": "1e-25"})

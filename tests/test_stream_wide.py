"""`cores` > 1 for gelu, layernorm and mel: an invocation's tiles over columns, then rows.

Emulated builds over 2..16 cores equal the golden model and the one-core build on the same
inputs, bit for bit (runtime_params 0 and 1); refusals are one line; rendered designs pass the
static checks on several devices; the workload's bytes are what the emulator moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codegen.checks import check_design, read_design
from codegen.kernels import spec_from_params
from codegen.kernels.mel import MelSpec
from codegen.pipeline import BuildResult, build
from codegen.render import DESIGN_NAME, render
from codegen.spec import SpecError
from codegen.stream import StreamSpec
from codegen.wide import device_cores, grid
from runtime.kernel import NpuKernel
from tests.test_cost import design_shim_bytes, emulated_shim_bytes

SHAPES: dict[str, dict[str, str]] = {
    "gelu": {"length": "4096", "max_tile": "256"},  # 16 tiles
    "layernorm": {"rows": "16", "d": "64", "tile_rows": "1"},  # 16 tiles, a row each
    "mel": {"frames": "32", "tile_frames": "2"},  # 16 tiles of overlapping frames
}
# (cores, device): one column of 2 rows (mem tile), 4 columns, 4 x 2, the whole npu1 array
WIDE = [(2, "npu1_1col"), (4, "npu1"), (8, "npu1"), (16, "npu1")]


def wide_spec(kernel: str, rt: int, cores: int = 1, device: str = "npu1_1col") -> Any:
    """A StreamSpec (gelu, layernorm) or the MelSpec (no runtime_params) of SHAPES."""
    rt_param = {"runtime_params": str(rt)} if kernel != "mel" else {}
    spec = spec_from_params(kernel, {**SHAPES[kernel], **rt_param, "cores": str(cores),
                                     "device": device})
    assert isinstance(spec, StreamSpec | MelSpec)
    return spec


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wide-build")


@pytest.fixture(scope="module")
def one_core(root: Path) -> dict[tuple[str, int], BuildResult]:
    return {(k, rt): build(wide_spec(k, rt), root, target="emu") for k, rt in KERNEL_RT}


def _cases(spec: Any) -> list[list[np.ndarray]]:
    """Two seeds (with runtime_params=1 two value sets through one build) and the edge inputs."""
    return [spec.random_inputs(0), spec.random_inputs(1),
            *(inputs for _, inputs in spec.edge_inputs())]


KERNEL_RT = [("gelu", 0), ("gelu", 1), ("layernorm", 0), ("layernorm", 1), ("mel", 0)]


@pytest.mark.parametrize(("cores", "device"), WIDE)
@pytest.mark.parametrize(("kernel", "rt"), KERNEL_RT)
def test_wide_build_equals_golden_and_the_one_core_build(
        kernel: str, cores: int, device: str, rt: int, root: Path,
        one_core: dict[tuple[str, int], BuildResult]) -> None:
    spec = wide_spec(kernel, rt, cores, device)
    result = build(spec, root, target="emu")
    cases = _cases(spec)
    with NpuKernel.load(one_core[(kernel, rt)].artifact_dir, backend="emu") as npu:
        single = [npu(*inputs)[0] for inputs in cases]
    with NpuKernel.load(result.artifact_dir, backend="emu") as npu:
        for k, inputs in enumerate(cases):
            (got,) = npu(*inputs)
            (want,) = spec.golden(inputs)
            bad = np.flatnonzero(got.ravel() != want.ravel())
            assert bad.size == 0, f"case {k}: {bad.size} bytes differ, first at {bad[0]}"
            assert np.array_equal(got, single[k])
        calls = [c.calls for c in npu.backend.design.cores]
    # every core ran its share of the last invocation: 16 tiles over `cores` cores
    assert len(calls) == cores and set(calls) == {spec.tiles_per_core} == {16 // cores}


@pytest.mark.parametrize(("cores", "device", "layout"), [
    (2, "npu1_1col", (1, 2)), (4, "npu1_1col", (1, 4)), (3, "npu1_3col", (3, 1)),
    (6, "npu1_3col", (3, 2)), (4, "npu1", (4, 1)), (12, "npu1", (4, 3)), (16, "npu1", (4, 4)),
    (8, "npu2", (8, 1)), (16, "npu2", (8, 2)), (32, "npu2", (8, 4)),
])
@pytest.mark.parametrize(("kernel", "rt"), KERNEL_RT)
def test_rendered_designs_pass_the_static_checks(kernel: str, rt: int, cores: int, device: str,
                                                 layout: tuple[int, int]) -> None:
    """Columns first, then rows; the checks (channels, BDs, routes, memory plan per core and
    mem tile, every element moved) pass on the rendered design."""
    params = {"gelu": {"length": str(96 * 256), "max_tile": "256"},  # 96 tiles
              "layernorm": {"rows": "96", "d": "64", "tile_rows": "1"},
              "mel": {"frames": "96", "tile_frames": "1"}}[kernel]
    rt_param = {"runtime_params": str(rt)} if kernel != "mel" else {}
    spec = spec_from_params(kernel, {**params, **rt_param, "cores": str(cores), "device": device})
    assert spec.layout == layout
    text = render(spec).files[DESIGN_NAME]
    passed = check_design(spec, text)
    assert f"{cores} core(s) run forever" in passed
    design = read_design(text)
    mems = {t for f in design.fifos.values() for t in (f.producer, *f.consumers) if t.kind == "mem"}
    assert len(mems) == (layout[0] if layout[1] > 1 else 0)
    plans = spec.memory_plan()
    assert len(plans) == cores + len(mems)


def test_grid_is_columns_first() -> None:
    assert [grid(k, "npu1") for k in (1, 2, 3, 4, 8, 16)] == [
        (1, 1), (2, 1), (3, 1), (4, 1), (4, 2), (4, 4)]
    assert grid(5, "npu1") is None and grid(17, "npu1") is None
    assert device_cores("npu1_1col") == [1, 2, 3, 4]


@pytest.mark.parametrize(("kernel", "params", "match"), [
    ("layernorm", {"rows": "16", "d": "64", "tile_rows": "1", "cores": "5", "device": "npu1"},
     r"^cores 5 do not fit device npu1 \(4 column\(s\) of 4 cores, columns first\); use cores "
     r"1, 2, 3, 4, 6, 8, 9, 12, 16$"),
    ("layernorm", {"rows": "16", "d": "64", "tile_rows": "1", "cores": "3", "device": "npu1"},
     r"^cores 3: the 16 tile\(s\) .* use cores 1, 2, 4, 8, 16, or split the invocation "
     r"otherwise \(its 16 rows are not a multiple of 3: no tile_rows splits them\)$"),
    ("gelu", {"length": "1024", "max_tile": "256", "cores": "8", "device": "npu1"},
     r"^cores 8: the 4 tile\(s\) .* use cores 1, 2, 4, or max_tile 128 \(8 tiles\)$"),
    ("layernorm", {"rows": "1500", "d": "64", "tile_rows": "4", "cores": "12",
                   "device": "npu1"},
     r"^cores 12: the 375 tile\(s\) .* use cores 1, 3, or tile_rows 5 \(300 tiles\)$"),
    ("mel", {"frames": "32", "tile_frames": "2", "cores": "32", "device": "npu1"},
     r"^cores 32 do not fit device npu1 .*; use cores 1, 2, 3, 4, 6, 8, 9, 12, 16$"),
    ("mel", {"frames": "32", "tile_frames": "8", "cores": "8", "device": "npu1"},
     r"^cores 8: the 4 tile\(s\) .* use cores 1, 2, 4, or tile_frames 4 \(8 tiles\)$"),
    ("gelu", {"length": "1024", "max_tile": "256", "cores": "2", "device": "npu1_1col",
              "fifo_depth": "1"}, None),
])
def test_refusals_are_one_line(kernel: str, params: dict[str, str], match: str | None) -> None:
    if match is None:
        spec_from_params(kernel, params)  # a shape that splits builds
        return
    with pytest.raises(SpecError, match=match) as info:
        spec_from_params(kernel, params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("kernel", "rt", "cores", "device"), [
    ("gelu", 0, 2, "npu1_1col"), ("gelu", 1, 8, "npu1"), ("layernorm", 1, 4, "npu1"),
    ("layernorm", 0, 16, "npu1"), ("layernorm", 1, 16, "npu1"), ("mel", 0, 8, "npu1"),
])
def test_workload_is_what_the_emulator_moves(kernel: str, rt: int, cores: int, device: str,
                                             root: Path) -> None:
    """Shim bytes per channel as the design's transfers and the emulator's channels count them,
    the transfers issued, per-core cycles = that core's calls x the per-tile count, and every
    mem-tile and core channel carrying its share."""
    spec = wide_spec(kernel, rt, cores, device)
    result = build(spec, root, target="emu")
    with NpuKernel.load(result.artifact_dir, backend="emu") as k:
        k(*spec.random_inputs(0))
        design = k.backend.design
        emulated = emulated_shim_bytes(design)
        transfers = sum(len(c.queue) for c in design.channels.values())
        calls = {str(c.spec.tile).replace("tile", "core"): c.calls for c in design.cores}
    w = spec.workload()
    assert w.shim_bytes == emulated == design_shim_bytes(read_design(
        render(spec).files[DESIGN_NAME]))
    assert w.bds == transfers == spec.columns * (2 + rt)
    assert w.scalar_cycles == {c: n * spec.wide_cycles_per_tile() for c, n in calls.items()}
    assert w.cores == cores and set(calls.values()) == {16 // cores}
    tiles = spec.n_tiles * spec.wide_in_tile * np.dtype(spec.in_dtype).itemsize
    assert sum(v for key, v in w.core_bytes.items() if "@inq" in key) == tiles
    assert sum(v for key, v in w.mem_tile_bytes.items() if "S2MM @inq" in key) == (
        tiles if spec.core_rows > 1 else 0)
    params = sum(v for key, v in w.core_bytes.items() if "@paramq" in key)
    assert params == rt * cores * spec.wide_params_bytes
    one = wide_spec(kernel, rt).workload()
    assert sum(one.scalar_cycles.values()) == sum(w.scalar_cycles.values())

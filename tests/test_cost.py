"""The cost model: its arithmetic, its assumptions' sources, and workloads against the designs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from codegen.checks import read_design
from codegen.cli import cost_report
from codegen.cost import DEVICES, PATHS, Workload, device_family, project
from codegen.kernels import spec_from_params
from codegen.pipeline import BuildResult, build
from codegen.render import DESIGN_NAME, render
from codegen.spec import KernelSpec, SpecError
from codegen.stream import StreamSpec
from runtime.emulator import EmulatedDesign, load_design
from runtime.emulator.model import Design
from runtime.kernel import NpuKernel


def _workload(**kw: object) -> Workload:
    base: dict[str, object] = {
        "kernel": "t", "device": "npu1", "path": "vector",
        "macs": {"core(0, 2)": 256 * 1000, "core(1, 2)": 256 * 10},
        "shim_bytes": {"shim(0) MM2S @a": 4 * 10},
    }
    base.update(kw)
    return Workload(**base)  # type: ignore[arg-type]


def test_compute_bound_projection_is_the_busiest_core() -> None:
    p = project(_workload(), "npu1")
    clock = DEVICES["npu1"].clock_hz.value
    assert p.compute_s == pytest.approx(1000 / clock)  # 256 MACs/cycle on aie2
    assert p.dma_s == pytest.approx(10 / clock)
    assert p.seconds == pytest.approx(1000 / clock + 42e-6)
    assert p.bound == "dispatch"  # 1000 cycles is well below 42 µs
    assert p.busiest_core == "core(0, 2)"


def test_dma_bound_and_scalar_cycles_and_invocations() -> None:
    w = _workload(shim_bytes={"shim(0) MM2S @a": 4 * 10**6, "shim(0) MM2S @b": 8},
                  scalar_cycles={"core(1, 2)": 5 * 10**6}, invocations=3)
    p = project(w, "npu2_4col")
    clock = DEVICES["npu2"].clock_hz.value
    assert p.family == "npu2"
    # core(1, 2): 2560 / 512 + 5e6 scalar cycles beats core(0, 2)'s 256000 / 512
    assert p.busiest_core == "core(1, 2)" and p.bound.startswith("compute")
    assert p.compute_s == pytest.approx(3 * (5 + 5 * 10**6) / clock)
    assert p.dma_s == pytest.approx(3 * 10**6 / clock)
    assert p.seconds == pytest.approx(3 * ((5 + 5e6) / clock + 50e-6))
    assert project(w, "npu1", "scalar").compute_s > p.compute_s


def test_every_assumption_names_a_source() -> None:
    for model in DEVICES.values():
        for path in PATHS:
            for a in model.assumptions(path):
                assert a.value > 0 and len(a.source) > 20, a


def test_bad_device_and_path_are_one_line_errors() -> None:
    with pytest.raises(SpecError, match="the cost model knows npu1, npu2"):
        device_family("xcve2802")
    with pytest.raises(SpecError, match="path 'simd'"):
        project(_workload(), "npu1", "simd")
    with pytest.raises(SpecError, match="no cost model yet"):
        KernelSpec.workload(spec_from_params("gelu"))  # the base class's, for a new kernel
    with pytest.raises(SpecError, match="no cost model yet"):
        StreamSpec.core_cycles_per_tile(spec_from_params("gelu"))


@pytest.mark.parametrize("params", [
    {},
    {"M": "256", "K": "128", "N": "256", "columns": "2", "device": "npu1_2col"},
])
def test_matmul_shim_bytes_are_what_its_design_moves(params: dict[str, str]) -> None:
    """The workload's bytes per shim channel, recounted from the rendered design's transfers."""
    spec = spec_from_params("matmul", params)
    design = read_design(render(spec).files[DESIGN_NAME])
    w = spec.workload()
    assert w.shim_bytes == design_shim_bytes(design)
    assert w.bds == sum(1 for t in design.sequence if hasattr(t, "length"))
    assert w.total_macs == spec.M * spec.K * spec.N


def design_shim_bytes(design: Design) -> dict[str, int]:
    """Bytes per shim channel of one run, recounted from a rendered design's transfers."""
    moved: Counter[str] = Counter()
    for t in design.sequence:
        if hasattr(t, "length"):
            fifo = design.fifos[t.fifo]
            shim = fifo.producer if t.to_fifo else next(
                c for c in fifo.consumers if c.kind == "shim")
            moved[f"shim({shim.col}) {'MM2S' if t.to_fifo else 'S2MM'} @{t.fifo}"] += (
                t.length * fifo.dtype.itemsize)
    return dict(moved)


def emulated_shim_bytes(design: EmulatedDesign) -> dict[str, int]:
    """Bytes per shim channel as the emulator's channels counted them in one run."""
    out = {}
    for name, c in design.channels.items():
        spec = c.fifo.spec
        shim = next(t for t in (spec.producer, *spec.consumers) if t.kind == "shim")
        out[f"shim({shim.col}) {'MM2S' if c.to_fifo else 'S2MM'} @{name}"] = c.bytes
    return out


def emulate_once(spec: KernelSpec, result: BuildResult
                 ) -> tuple[EmulatedDesign, list[np.ndarray], dict[str, Any]]:
    """Load a host build's design in the emulator and run it once on seed 0's inputs and a
    zeroed output: the design, the buffers (the output filled) and the run's stats."""
    art = result.artifact_dir
    libraries = {n: art / so for n, so in result.manifest.host_libraries.items()}
    design = load_design(art / DESIGN_NAME, libraries=libraries)
    buffers = [np.asarray(x) for x in spec.random_inputs(0)]
    (output,) = spec.outputs()
    buffers.append(np.zeros(output.shape, dtype=output.dtype))
    return design, buffers, design.run(buffers)


def test_cost_report_prints_projections_and_sources() -> None:
    console = Console(record=True, width=200)
    projections = cost_report("matmul", {"M": "128"}, console)
    text = console.export_text()
    assert len(projections) == 4
    assert "not a measurement" in text and "AM020" in text and "xdna-driver" in text


def test_whisper_cost_table_shapes_are_accepted_and_2048_cubed_reaches_6_tops() -> None:
    """The README table's shapes all validate; its 2048^3 claim holds under the stated model,
    and the measured stock-kernel MAC rate would not reach it (what the README says)."""
    from bench.whisper_matmul_cost import rows, what_if

    table = rows()
    assert len(table) == 6 and all(len(r) == 6 for r in table)
    assert what_if(256, 1.6e9)[1] >= 6.0
    assert what_if(107, 1.6e9)[1] < 6.0


@pytest.mark.parametrize(("kernel", "params"), [
    ("gelu", {"length": "1024", "max_tile": "256"}),
    ("gelu", {"length": "1024", "max_tile": "256", "runtime_params": "1"}),
    ("layernorm", {"rows": "8", "d": "64", "tile_rows": "4"}),
    ("layernorm", {"rows": "8", "d": "64", "tile_rows": "4", "runtime_params": "1"}),
    ("mel", {"frames": "16", "tile_frames": "8"}),
    ("attention", {"tiles": "2", "n_queries": "16", "n_keys": "32", "causal": "1"}),
])
def test_stream_workload_is_what_the_emulator_moves(kernel: str, params: dict[str, str],
                                                    tmp_path: Path) -> None:
    """Bytes per shim channel as the emulator's channels count them in one run (the params
    buffer's with runtime_params=1), the transfers issued, and core cycles = core calls x the
    per-call count."""
    spec = spec_from_params(kernel, params)
    result = build(spec, tmp_path, target="emu")
    with NpuKernel.load(result.artifact_dir, backend="emu") as k:
        k(*spec.random_inputs(0))
        design = k.backend.design
        shim = emulated_shim_bytes(design)
        core = {f"core(0, 2) {'S2MM' if c.to_fifo else 'MM2S'} @{name}": c.bytes
                for name, c in design.channels.items()}
        transfers = sum(len(c.queue) for c in design.channels.values())
        calls = sum(c.calls for c in design.cores)
    w = spec.workload()
    assert w.shim_bytes == shim and w.core_bytes == core and not w.mem_tile_bytes
    assert w.bds == transfers == 2 + ("runtime_params" in params)
    if "runtime_params" in params:
        assert shim["shim(0) MM2S @paramq"] == spec.params_bytes == (
            256 if kernel == "gelu" else 4 * (2 + 3 * 64))
    per_call = (spec.tile_frames * spec.core_cycles_per_frame() if kernel == "mel"
                else spec.core_cycles_per_tile())
    assert w.scalar_cycles == {"core(0, 2)": calls * per_call} and calls == spec.n_tiles
    assert project(w, "npu1", "vector").seconds == project(w, "npu1").seconds  # scalar only


def test_stream_op_counts_follow_the_core_code_loops() -> None:
    """Layernorm: rows x (d x per-element ops + per-row ops); GELU: elements x its ops; mel:
    the DFT's 201 bins x 199 pairs dominate a frame."""
    from codegen.kernels import gelu, layernorm, mel

    ln = spec_from_params("layernorm", {"rows": "8", "d": "64", "tile_rows": "2"})
    assert ln.workload().scalar_cycles["core(0, 2)"] == 8 * (
        64 * (layernorm.STATS_OPS + layernorm.NORM_OPS) + layernorm.ROW_OPS)
    g = spec_from_params("gelu", {"length": "4096"})
    assert g.workload().scalar_cycles["core(0, 2)"] == 4096 * gelu.OPS_PER_ELEMENT
    m = spec_from_params("mel", {"frames": "8"})
    dft = mel.N_BINS * (mel.N_FFT // 2 - 1) * mel.DFT_OPS
    assert dft < m.core_cycles_per_frame() < 1.1 * dft

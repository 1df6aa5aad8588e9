"""Every kernel variant: golden vs float reference (KERNELS.md targets), host core vs golden."""

from __future__ import annotations

from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.hostcore import HostCore
from codegen.kernels import spec_from_params
from codegen.pipeline import BuildResult
from codegen.spec import KernelSpec, accuracy_figures
from codegen.stream import StreamSpec


def host_library(spec: KernelSpec, result: BuildResult) -> Path:
    return result.artifact_dir / result.manifest.host_libraries[spec.object_name]


def run_stream_core(spec: KernelSpec, library: Path, x: np.ndarray) -> np.ndarray:
    """Call the host-compiled core once per tile, as the design's core loop does."""
    assert isinstance(spec, StreamSpec)
    out = np.full((spec.n_tiles, spec.out_tile_bytes), 99, dtype=np.int8)
    HostCore(library).run_tiles(spec.CORE_SYMBOLS[0],
                                np.asarray(x).reshape(spec.n_tiles, spec.in_tile_bytes), out)
    return out.reshape(-1)


def test_golden_meets_accuracy_targets(variant: tuple[KernelSpec, BuildResult]) -> None:
    spec, _ = variant
    target = spec.ACCURACY
    for seed in range(4):
        inputs = spec.random_inputs(seed)
        p, within1, worst = accuracy_figures(spec.golden(inputs)[0], spec.reference(inputs)[0])
        print(f"{spec.name} {spec.variant} seed {seed}: pearson {p:.6f}, "
              f"within 1 LSB {within1:.4%}, max diff {worst} LSB")
        assert target.met(p, within1, worst)
        assert spec.accuracy_problems(inputs) == []


def test_host_core_matches_golden_bit_for_bit(variant: tuple[KernelSpec, BuildResult]) -> None:
    spec, result = variant
    cases = [(f"seed{s}", spec.random_inputs(s)) for s in range(5)] + spec.edge_inputs()
    for name, inputs in cases:
        got = run_stream_core(spec, host_library(spec, result), inputs[0])
        want = spec.golden(inputs)[0]
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{spec.variant} {name}: {bad.size} bytes differ, first at {bad[0]}"


def test_outputs_depend_on_inputs(variant: tuple[KernelSpec, BuildResult]) -> None:
    spec, _ = variant
    a, b = (spec.golden(spec.random_inputs(s))[0] for s in (1, 2))
    assert not np.array_equal(a, b)
    assert len(np.unique(a)) > 16


@pytest.mark.parametrize("name", ["attention-rect", "gelu-odd", "layernorm-384"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_host_core_matches_golden_on_arbitrary_bytes(
        emu_builds: dict[str, BuildResult], name: str, data: st.DataObject) -> None:
    """Any int8 input at all, not only realistic draws: host core and golden agree."""
    result = emu_builds[name]
    spec = spec_from_params(result.manifest.kernel, result.manifest.params)
    x = data.draw(hnp.arrays(np.int8, spec.buffers()[0].shape, elements=st.integers(-128, 127)))
    got = run_stream_core(spec, host_library(spec, result), x)
    np.testing.assert_array_equal(got, spec.golden([x])[0])

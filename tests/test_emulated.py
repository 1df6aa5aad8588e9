"""Every kernel's rendered design, run by the emulator, equals its golden model bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.kernels.matmul import MatmulSpec
from codegen.pipeline import BuildResult, build
from codegen.spec import KernelSpec
from runtime.kernel import NpuKernel

MATMUL_SHAPES = [
    {},  # one 64x64x64 tile on one core
    {"M": "256", "K": "256", "N": "256", "device": "npu1"},  # 16 cores
    {"M": "256", "K": "256", "N": "256", "rows": "1", "columns": "4", "device": "npu1"},
    {"M": "192", "K": "512", "N": "128", "tm": "32", "tn": "32", "device": "npu1_2col"},
    # non-square on the whole npu2 array (32 cores, 8x8x8 blocks), K not a power of two
    {"M": "128", "K": "320", "N": "512", "tm": "32", "tn": "64", "device": "npu2"},
    # the vector path (AIE API MAC and requantisation, host subset) on both arrays
    {"M": "256", "K": "256", "N": "256", "device": "npu1", "path": "vector"},
    {"M": "128", "K": "320", "N": "512", "tm": "32", "tn": "64", "device": "npu2",
     "path": "vector"},
]
# Whisper-base's MLP up-projection (1,500 positions padded to 1,536): the full size, once per
# device, on the whole array: 16 cores on npu1 (scalar path, about 4 s per emulated call here),
# 32 on npu2 (vector path, about 8 s per call: the host AIE API subset is slow).
WHISPER_FC1 = {"M": "1536", "K": "512", "N": "2048"}


def verify_emulated(spec: KernelSpec, result: BuildResult, seeds: int = 2,
                    edges: tuple[str, ...] | None = None) -> None:
    cases = [(f"seed{s}", spec.random_inputs(s)) for s in range(seeds)] + [
        (name, inputs) for name, inputs in spec.edge_inputs() if edges is None or name in edges]
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        for name, inputs in cases:
            got = kernel(*inputs)
            for out, want in zip(got, spec.golden(inputs), strict=True):
                bad = np.flatnonzero(out.ravel() != want.ravel())
                assert bad.size == 0, (
                    f"{spec.name}/{spec.variant} {name}: {bad.size} elements differ from the "
                    f"golden model, first at {bad[0]}"
                )


def test_emulated_design_matches_golden(variant: tuple[KernelSpec, BuildResult]) -> None:
    spec, result = variant
    verify_emulated(spec, result)


@pytest.mark.parametrize("params", MATMUL_SHAPES, ids=lambda p: "_".join(p.values()) or "tile")
def test_emulated_matmul_matches_golden(params: dict[str, str], tmp_path: Path) -> None:
    spec = spec_from_params("matmul", params)
    verify_emulated(spec, build(spec, tmp_path, target="emu"))


@pytest.mark.parametrize(("device", "path"), [("npu1", "scalar"), ("npu2", "vector")])
def test_emulated_whisper_matmul_on_the_whole_array(device: str, path: str,
                                                    tmp_path: Path) -> None:
    spec = spec_from_params("matmul", {**WHISPER_FC1, "device": device, "path": path})
    assert isinstance(spec, MatmulSpec)
    assert spec.grid == {"npu1": (4, 4), "npu2": (4, 8)}[device]
    verify_emulated(spec, build(spec, tmp_path, target="emu"), seeds=1, edges=("extremes",))


def test_emulated_matmul_with_per_column_scales_and_bias(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "scales.npy", rng.uniform(0.05, 0.2, 256) / 127)
    np.save(tmp_path / "bias.npy", rng.integers(-5000, 5000, 256))
    spec = spec_from_params("matmul", {
        "M": "128", "K": "128", "N": "256", "columns": "2", "device": "npu1_2col",
        "b_scales": str(tmp_path / "scales.npy"), "bias": str(tmp_path / "bias.npy")})
    verify_emulated(spec, build(spec, tmp_path / "build", target="emu"))

"""matmul's vector path (AIE API mmul and vector requantisation, on the host through npukit's
AIE API subset) run by the emulator: the same bytes as the scalar path and the golden model, on
the inputs that take each branch of the vector code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.kernels.matmul import MatmulSpec
from codegen.pipeline import build
from runtime.kernel import NpuKernel

# Small whole-array shapes: npu1's 4x8x8 blocks and npu2's 8x8x8, odd and even block counts.
SHAPES = {
    "npu1": {"M": "128", "K": "192", "N": "256", "tm": "32", "tk": "64", "tn": "64",
             "device": "npu1"},
    "npu2": {"M": "128", "K": "128", "N": "512", "tm": "16", "tk": "64", "tn": "64",
             "device": "npu2"},
}


def _scales(data: Path, n: int, spread: str) -> dict[str, str]:
    """Per-column scales inside one binade (every block column shares a shift: the vector
    requantisation) or across four (shifts differ inside blocks: its scalar fallback)."""
    rng = np.random.default_rng(len(spread))
    lo, hi = (0.126, 0.246) if spread == "one-binade" else (0.02, 0.3)
    np.save(data / f"scales-{spread}.npy", rng.uniform(lo, hi, n) / 127)
    np.save(data / "bias.npy", rng.integers(-20000, 20000, n))
    return {"b_scales": str(data / f"scales-{spread}.npy"), "bias": str(data / "bias.npy")}


def _run(params: dict[str, str], root: Path, inputs: list[np.ndarray]) -> np.ndarray:
    spec = spec_from_params("matmul", params)
    result = build(spec, root, target="emu")
    assert result.manifest.core_build["path"] == params.get("path", "scalar")
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        return kernel(*inputs)[0]


@pytest.mark.parametrize(("device", "scales"), [
    ("npu1", "per-tensor"), ("npu1", "four-binades"), ("npu2", "one-binade")])
def test_vector_path_equals_scalar_path_and_golden(device: str, scales: str,
                                                   tmp_path: Path) -> None:
    params = dict(SHAPES[device])
    if scales != "per-tensor":
        params.update(_scales(tmp_path, int(params["N"]), scales))
    spec = spec_from_params("matmul", {**params, "path": "vector"})
    assert isinstance(spec, MatmulSpec)
    shifts = set(spec.requant()[1])
    assert (len(shifts) == 1) == (scales != "four-binades")
    for name, inputs in [("seed7", spec.random_inputs(7)), *spec.edge_inputs()[-1:]]:
        want = spec.golden(inputs)[0]
        vector = _run({**params, "path": "vector"}, tmp_path / "b", inputs)
        scalar = _run({**params, "path": "scalar"}, tmp_path / "b", inputs)
        assert np.array_equal(vector, scalar), f"{device} {scales} {name}: vector != scalar"
        assert np.array_equal(vector, want), f"{device} {scales} {name}: vector != golden"
        assert len(np.unique(want)) > 16  # neither constant nor saturated


def test_whisper_fc1_vector_path_on_16_cores(tmp_path: Path) -> None:
    """The one full-size vector run on npu1: Whisper-base's MLP up-projection, 1536x512x2048
    (1,500 positions padded), on the whole Phoenix array."""
    spec = spec_from_params("matmul", {"M": "1536", "K": "512", "N": "2048", "device": "npu1",
                                       "path": "vector"})
    assert isinstance(spec, MatmulSpec)
    inputs = spec.random_inputs(3)
    got = _run(dict(spec.params), tmp_path, inputs)
    np.testing.assert_array_equal(got, spec.golden(inputs)[0])

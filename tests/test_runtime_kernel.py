"""NpuKernel: input validation, tamper refusal at load, the emu backend and per-call timing."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from runtime.errors import ArtifactError, RunError
from runtime.kernel import NpuKernel
from tests.test_runtime_support import (
    N,
    emu_of,
    make_standin,
    standin_buffers,
)

X = np.arange(-32, 32, dtype=np.int8)


@pytest.fixture(params=["xrt", "emu"])
def kernel(request: pytest.FixtureRequest, artifact: Path) -> NpuKernel:
    return NpuKernel.load(artifact, backend=request.param)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (X.astype(np.float32), "input 'in': expected int8 (64,), got float32 (64,)"),
        (X.reshape(8, 8), "input 'in': expected int8 (64,), got int8 (8, 8)"),
        (np.zeros((64, 192), np.float32), "input 'in': expected int8 (64,), got float32 (64, 192)"),
        (np.zeros(128, np.int8)[::2], "input 'in': not C-contiguous"),
        ([list(range(64))], "input 'in': expected a numpy array int8 (64,), got list"),
    ],
)
def test_bad_inputs_get_a_clear_message(kernel: NpuKernel, value: object, message: str) -> None:
    with pytest.raises(RunError) as e:
        kernel(value)
    assert str(e.value).startswith(message)


def test_wrong_input_count_names_the_inputs(kernel: NpuKernel) -> None:
    with pytest.raises(RunError, match=r"expected 1 input\(s\) \['in'\], got 2"):
        kernel(X, X)
    with pytest.raises(RunError, match=r"missing \['in'\], unknown \['qkv'\]"):
        kernel({"qkv": X})


def test_inputs_by_position_list_or_name_agree(kernel: NpuKernel) -> None:
    expected = X + 1
    by_keyword = kernel(**{"in": X})  # type: ignore[arg-type]
    for out in (kernel(X), kernel([X]), kernel({"in": X}), by_keyword):
        np.testing.assert_array_equal(out[0], expected)
    assert len(kernel.timings) == 4
    assert kernel.last_call_s == kernel.timings[-1] > 0


@pytest.mark.parametrize("name", ["aie.mlir", "final.xclbin", "insts.bin", "libstandin.host.so"])
@pytest.mark.parametrize("backend", ["xrt", "emu", "auto"])
def test_tampered_artifact_is_refused_naming_the_file(
    artifact: Path, name: str, backend: str
) -> None:
    path = artifact / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{name}: content does not match its manifest hash"):
        NpuKernel.load(artifact, backend=backend)


def test_unknown_backend_is_refused(artifact: Path) -> None:
    with pytest.raises(RunError, match="unknown backend 'npu'"):
        NpuKernel.load(artifact, backend="npu")


def test_emu_backend_allocates_once_and_runs_the_design(artifact: Path) -> None:
    k = NpuKernel.load(artifact, backend="emu")
    buffers = emu_of(k).buffers
    for i in range(3):
        np.testing.assert_array_equal(k(X - i)[0], X - i + 1)
    assert emu_of(k).buffers is buffers
    assert [b.shape for b in buffers] == [b.shape for b in standin_buffers()]


def test_backends_follow_the_manifest_sequence_order(fake: ModuleType, tmp_path: Path) -> None:
    art = make_standin(tmp_path / "rev", order=("out", "in"))
    for backend in ("xrt", "emu"):
        (out,) = NpuKernel.load(art, backend=backend)(np.full(N, 5, dtype=np.int8))
        np.testing.assert_array_equal(out, np.full(N, 6, dtype=np.int8))



def test_a_closed_kernel_refuses_calls(tmp_path: Path) -> None:
    from codegen.kernels import spec_from_params
    from codegen.pipeline import build

    spec = spec_from_params("gelu", {"length": "256"})
    kernel = NpuKernel.load(build(spec, tmp_path, target="emu").artifact_dir, backend="emu")
    x = spec.random_inputs(0)
    kernel(x)
    kernel.close()
    with pytest.raises(RunError, match="this kernel was closed; load it again"):
        kernel(x)


def test_calls_from_several_threads_each_get_their_own_result(kernel: NpuKernel) -> None:
    """One kernel, one set of buffers: concurrent calls are serialised, never interleaved."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    problems: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(30):
            x = rng.integers(-128, 128, N, dtype=np.int8)
            try:
                (out,) = kernel(x)
            except Exception as e:  # any error is a failure of this test
                problems.append(f"thread {seed}: {e!r}")
                return
            if not np.array_equal(out, (x.astype(np.int16) + 1).astype(np.int8)):
                problems.append(f"thread {seed}: another call's output")
    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert problems == []

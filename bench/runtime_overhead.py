"""Host overhead per call of the npukit runtime vs two direct-pyxrt patterns, on the fake pyxrt.

The patterns: the seed's exact per-call pattern (BOs and the instruction BO made once; per
call bo.write + sync + kernel(...) + wait + sync + read, a new run each call), and the heavier
one that also allocates its BOs and writes the instructions on every call. The fake driver
skips execution, so only host-side work is timed: argument checks, copies, BO and run handling.
Real BO allocation adds ioctls and mmaps the fake does not have, so the second ratio is a lower
bound on what reusing BOs saves on hardware; the first compares like with like.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from runtime.kernel import NpuKernel
from runtime.manifest import BufferSpec
from runtime.xrt import XrtBackend

FAKES = Path(__file__).resolve().parents[1] / "tests" / "fakes"
OPCODE, COMPLETED = 3, 4
NPUKIT = "npukit (outputs copied)"
SEED = "seed per-call pattern (BOs made once)"
ALLOCATING = "allocating per-call pattern (new BOs)"
FLOOR = "fake driver floor (start+wait)"
# attention's default host layout (KERNELS.md): Q||K||V in, O out, int8
BUFFERS = [
    BufferSpec("qkv", "int8", (12288,), "in", 0),
    BufferSpec("out", "int8", (4096,), "out", 1),
]


def fake_pyxrt() -> ModuleType:
    """Import the fake pyxrt from tests/fakes, configured not to execute designs."""
    if str(FAKES) not in sys.path:
        sys.path.insert(0, str(FAKES))
    import pyxrt

    if not hasattr(pyxrt, "reset"):
        raise SystemExit(f"the real pyxrt shadows the fake ({pyxrt.__file__}); run without XRT")
    pyxrt.reset()
    pyxrt.config.execute = False
    return pyxrt


def per_call_us(fn: Callable[[], object], calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    return samples


def _opened(xrt: ModuleType, artifact: Path) -> tuple[Any, Any, bytes]:
    dev = xrt.device(0)
    xb = xrt.xclbin(str(artifact / "final.xclbin"))
    dev.register_xclbin(xb)
    kernel = xrt.kernel(xrt.hw_context(dev, xb.get_uuid()), "MLIR_AIE")
    return dev, kernel, (artifact / "insts.bin").read_bytes()


def seed_pattern(xrt: ModuleType, artifact: Path, x: np.ndarray) -> Callable[[], np.ndarray]:
    """The seed's call: BOs made once; write + sync + kernel(...) + wait + sync + read."""
    dev, kernel, insts = _opened(xrt, artifact)
    to_dev = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
    from_dev = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE
    out_bytes = BUFFERS[1].nbytes
    instr = xrt.bo(dev, len(insts), xrt.bo.cacheable, kernel.group_id(1))
    instr.write(insts, 0)
    instr.sync(to_dev, len(insts), 0)
    # groups as in the baseline layout, so the fake's clone warnings do not dominate
    bo_in = xrt.bo(dev, x.nbytes, xrt.bo.host_only, kernel.group_id(3))
    bo_out = xrt.bo(dev, out_bytes, xrt.bo.host_only, kernel.group_id(4))
    n_words = len(insts) // 4

    def call() -> np.ndarray:
        bo_in.write(x, 0)
        bo_in.sync(to_dev, x.nbytes, 0)
        state = kernel(OPCODE, instr, n_words, bo_in, bo_out).wait(10_000)
        if int(state) != COMPLETED:
            raise RuntimeError(f"run ended in {state}")
        bo_out.sync(from_dev, out_bytes, 0)
        return bo_out.read(out_bytes, 0)

    return call


def allocating_pattern(xrt: ModuleType, artifact: Path, x: np.ndarray) -> Callable[[], np.ndarray]:
    """The heavier call: new BOs, instructions written and a new run every call."""
    dev, kernel, insts = _opened(xrt, artifact)
    to_dev = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
    from_dev = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE
    out_bytes = BUFFERS[1].nbytes

    def call() -> np.ndarray:
        instr = xrt.bo(dev, len(insts), xrt.bo.cacheable, kernel.group_id(1))
        instr.write(insts, 0)
        instr.sync(to_dev, len(insts), 0)
        bo_in = xrt.bo(dev, x.nbytes, xrt.bo.host_only, kernel.group_id(3))
        bo_out = xrt.bo(dev, out_bytes, xrt.bo.host_only, kernel.group_id(4))
        bo_in.write(x, 0)
        bo_in.sync(to_dev, x.nbytes, 0)
        state = kernel(OPCODE, instr, len(insts) // 4, bo_in, bo_out).wait(10_000)
        if int(state) != COMPLETED:
            raise RuntimeError(f"run ended in {state}")
        bo_out.sync(from_dev, out_bytes, 0)
        return bo_out.read(out_bytes, 0)

    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per pattern")
    args = parser.parse_args(argv)
    xrt = fake_pyxrt()
    from pyxrt.artifact import make_artifact

    x = np.random.default_rng(0).integers(-128, 128, BUFFERS[0].shape, dtype=np.int8)
    with tempfile.TemporaryDirectory(prefix="npukit-bench-") as tmp:
        artifact = make_artifact(Path(tmp) / "art", BUFFERS)
        kernel = NpuKernel.load(artifact, backend="xrt")
        if not isinstance(kernel.backend, XrtBackend):
            raise SystemExit(f"expected the xrt backend on the fake, got {kernel.backend_name}")
        handle = kernel.backend.run_handle
        patterns = {
            NPUKIT: lambda: kernel(x),
            "npukit (zero-copy views)": lambda: kernel(x, copy=False),
            SEED: seed_pattern(xrt, artifact, x),
            ALLOCATING: allocating_pattern(xrt, artifact, x),
            FLOOR: lambda: (handle.start(), handle.wait(10_000)),
        }
        results = {}
        for name, fn in patterns.items():
            per_call_us(fn, max(10, args.calls // 10))  # warm-up
            results[name] = per_call_us(fn, args.calls)
        kernel.close()

    print(f"runtime host overhead per call, fake pyxrt, {args.calls} calls, "
          f"{BUFFERS[0].nbytes} B in / {BUFFERS[1].nbytes} B out")
    for name, us in results.items():
        print(f"  {name:40s} median {statistics.median(us):8.2f} µs   "
              f"mean {statistics.fmean(us):8.2f} µs   p99 {np.percentile(us, 99):8.2f} µs")
    median = {name: statistics.median(us) for name, us in results.items()}
    floor = median[FLOOR]
    for other in (SEED, ALLOCATING):
        print(f"ratio {other} / npukit (medians): {median[other] / median[NPUKIT]:.2f}x; "
              f"above the fake driver's floor: "
              f"{(median[other] - floor) / (median[NPUKIT] - floor):.2f}x")
    print("(the fake allocates a BO as a bytearray; on amdxdna each allocation is also an "
          "ioctl and an mmap, which only the allocating pattern pays per call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of emulating a design against its golden model, measured in one run.

For each kernel variant: the median time of one call through the emulator backend (DMA,
object FIFOs, the cooperative cores and the host-compiled core code) beside the median time of
the numpy golden model on the same inputs, and their ratio. Issue target: one 64x64 attention
tile costs no more than about 20x its golden model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from runtime.kernel import NpuKernel

CASES: list[tuple[str, dict[str, str]]] = [
    ("attention", {}),
    ("attention", {"tiles": "8"}),
    ("gelu", {}),
    ("layernorm", {}),
]


def median_us(fn: Callable[[], object], calls: int) -> float:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per measurement")
    args = parser.parse_args(argv)
    print(f"emulator vs golden model, median of {args.calls} calls each")
    with tempfile.TemporaryDirectory(prefix="npukit-bench-") as tmp:
        for kernel, params in CASES:
            spec = spec_from_params(kernel, params)
            result = build(spec, Path(tmp), target="emu")
            inputs = spec.random_inputs(0)
            with NpuKernel.load(result.artifact_dir, backend="emu") as k:
                k(*inputs)  # warm-up: first call binds the libraries
                emu = median_us(lambda k=k, x=inputs: k(*x), args.calls)
            gold = median_us(lambda s=spec, x=inputs: s.golden(x), args.calls)
            print(f"  {kernel:<10} {spec.variant:<12} emulator {emu:9.1f} µs   "
                  f"golden {gold:9.1f} µs   ratio {emu / gold:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

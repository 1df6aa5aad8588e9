"""The README's cost table: Whisper-base's matmul shapes, projected by the cost model.

`python -m bench.whisper_matmul_cost` prints it as Markdown, then what-if lines for 2048^3 on
the whole npu1 array. Every figure is a projection of `codegen/cost.py` from its stated
assumptions, not a measurement (not a benchmark: nothing is timed). With `--emulate` it also
builds each shape for the whole npu1 and npu2 arrays, both paths, and checks one seeded call
on the emulator against the golden model, bit for bit (a few minutes).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from codegen.cost import DEVICES, project
from codegen.kernels.matmul import MatmulSpec

# (what, M, K, N, per encoder): Whisper-base, 1,500 positions padded to 1,536, width 512; the
# convolutions as matmuls over (kernel 3 x channels) windows, K padded to the tile.
SHAPES = [
    ("q/k/v/out projection", 1536, 512, 512, 24),
    ("MLP up (fc1)", 1536, 512, 2048, 6),
    ("MLP down (fc2)", 1536, 2048, 512, 6),
    ("conv1 (3x80 -> 512, 3,000 frames)", 3072, 256, 512, 1),
    ("conv2 (3x512 -> 512, stride 2)", 1536, 1536, 512, 1),
    ("2048^3 (the TOPS figure)", 2048, 2048, 2048, 0),
]
GRIDS = [  # (label, device, rows, columns)
    ("npu1 4 cores", "npu1", 1, 4),
    ("npu1 16 cores", "npu1", 4, 4),
    ("npu2 32 cores", "npu2", 4, 8),
]


def _ms(spec_params: dict[str, object], path: str) -> tuple[float, float, str]:
    spec = MatmulSpec({**spec_params, "path": path})
    p = project(spec.workload(), spec.device)
    return p.seconds * 1e3, p.tops, p.bound.split(" (")[0]


def rows() -> list[list[str]]:
    out = []
    for what, m, k, n, count in SHAPES:
        cells = [what, f"{m}x{k}x{n}", str(count) if count else "-"]
        for _, device, r, c in GRIDS:
            params = {"M": m, "K": k, "N": n, "device": device, "rows": r, "columns": c}
            s_ms, _, _ = _ms(params, "scalar")
            v_ms, v_tops, bound = _ms(params, "vector")
            cells.append(f"{s_ms:,.1f} / {v_ms:,.2f} ({v_tops:.1f} TOPS, {bound})")
        out.append(cells)
    return out


def what_if(mac_rate: float, clock_hz: float) -> tuple[float, float]:
    """(ms, TOPS) of 2048^3 on the 16 npu1 cores, vector path, at another MAC rate and clock."""
    base = DEVICES["npu1"]
    model = dataclasses.replace(
        base,
        clock_hz=dataclasses.replace(base.clock_hz, value=clock_hz),
        macs_per_cycle={**base.macs_per_cycle,
                        "vector": dataclasses.replace(base.macs_per_cycle["vector"],
                                                      value=mac_rate)},
    )
    spec = MatmulSpec({"M": 2048, "K": 2048, "N": 2048, "device": "npu1", "path": "vector"})
    p = project(spec.workload(), "npu1", model=model)
    return p.seconds * 1e3, p.tops


def emulate(build_root: Path) -> bool:
    """Each shape on 16 (npu1) and 32 (npu2) cores, scalar and vector, against golden."""
    from codegen.pipeline import build
    from runtime.kernel import NpuKernel

    exact = True
    for _, m, k, n, _ in SHAPES:
        for device in ("npu1", "npu2"):
            for path in ("scalar", "vector"):
                spec = MatmulSpec({"M": m, "K": k, "N": n, "device": device, "path": path})
                result = build(spec, build_root, target="emu")
                inputs = spec.random_inputs(0)
                with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
                    (out,) = kernel(*inputs)
                same = bool(np.array_equal(out, spec.golden(inputs)[0]))
                exact &= same
                rows_, cols = spec.grid
                print(f"{m}x{k}x{n} {device} {rows_ * cols} cores {path}: "
                      f"{'bit-exact' if same else 'DIFFERS from golden'}", flush=True)
    return exact


def main(argv: list[str] | None = None) -> int:
    head = ["shape", "M x K x N", "per encoder",
            *(f"{g[0]}: scalar / vector ms (vector TOPS, bound)" for g in GRIDS)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows():
        print("| " + " | ".join(cells) + " |")
    total = {}
    for label, device, r, c in GRIDS:
        for path in ("scalar", "vector"):
            total[(label, path)] = sum(
                count * _ms({"M": m, "K": k, "N": n, "device": device, "rows": r, "columns": c},
                            path)[0] for _, m, k, n, count in SHAPES)
    print("| encoder matmuls, total | | | " + " | ".join(
        f"{total[(g[0], 'scalar')]:,.0f} / {total[(g[0], 'vector')]:,.1f}" for g in GRIDS) + " |")
    print()
    for rate, clock, why in ((256, 1.6e9, "the stated assumptions"),
                             (107, 1.6e9, "the stock kernel's measured MAC rate (NPU_FACTS 8)"),
                             (256, 1.028e9, "the driver's 1,028 MHz reference clock")):
        ms, tops = what_if(rate, clock)
        print(f"2048^3, npu1, 16 cores, vector, {rate} MAC/cycle at {clock / 1e9:.3g} GHz "
              f"({why}): {ms:.2f} ms, {tops:.1f} TOPS")
    if "--emulate" in (sys.argv[1:] if argv is None else argv):
        with tempfile.TemporaryDirectory() as tmp:
            return 0 if emulate(Path(tmp)) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

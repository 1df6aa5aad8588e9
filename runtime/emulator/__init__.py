"""The hardware-free backend: runs a rendered MLIR-AIE design (`aie.mlir`) on the host.

`load_design` parses the design once (with xDSL, into the ops of `dialect.py`) and binds each
core function to a host-compiled library; `EmulatedDesign.run` then executes the runtime
sequence, object FIFOs, mem-tile links and cores on numpy buffers, as often as needed. As on
the NPU, the cores' programs start once and carry on across runs; a core whose program ended
makes the next run fail (CoreEndedError), since on the NPU that invocation would hang.

Supported: one `aie.device` with `aie.tile`, `aie.buffer` on core tiles, `aie.objectfifo`
(one depth; `dimensionsToStream` on non-shim producers), `aie.objectfifo.link` split/join
through a mem tile, `aie.core` bodies of `scf.for`, integer `arith.constant/addi/subi/muli/
index_cast`, acquire/subview.access/release and `func.call` to private `func.func`
declarations, and one `aie.runtime_sequence` of `aiex.npu.dma_memcpy_nd` (static offsets,
sizes, strides) and `aiex.npu.dma_wait`. Anything else is a DesignError naming op and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runtime.emulator.corelib import bind_functions
from runtime.emulator.engine import EmulatedDesign
from runtime.emulator.faults import (
    CoreEndedError,
    DeadlockError,
    DesignSyntaxError,
    DmaError,
    EmulationFault,
    FifoError,
    IncompleteRunError,
    UnsupportedOpError,
)
from runtime.emulator.lower import lower
from runtime.emulator.program import Call, For
from runtime.emulator.reader import parse_design, read_text

__all__ = [
    "CoreEndedError",
    "DeadlockError",
    "DesignSyntaxError",
    "DmaError",
    "EmulatedDesign",
    "EmulationFault",
    "FifoError",
    "IncompleteRunError",
    "UnsupportedOpError",
    "load_design",
]


def load_design(
    design: str | Path, libraries: Mapping[str, Path | str] | None = None
) -> EmulatedDesign:
    """Parse `design` (a path, or the MLIR text) and bind its core functions.

    `libraries` maps each `link_with` name (e.g. "attention.o") to the host shared library
    built from the same core source. Without it the design can be inspected but not run.
    Raises a DesignError subclass (with the line and op) for anything outside the subset.
    """
    text, name = read_text(design)
    model = lower(parse_design(text, name), name)
    functions = None
    if libraries is not None:
        called = {c.callee for core in model.cores for c in _calls(core.body)}
        functions = bind_functions(model.funcs, called, libraries, name)
    return EmulatedDesign(model, functions)


def _calls(block: tuple) -> list[Call]:
    found: list[Call] = []
    for ins in block:
        if isinstance(ins, Call):
            found.append(ins)
        elif isinstance(ins, For):
            found += _calls(ins.body)
    return found

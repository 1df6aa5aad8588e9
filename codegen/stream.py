"""StreamSpec: kernels whose design is one core streaming int8 tiles from one buffer to another.

Attention, GELU and layernorm share mlir/common/stream.mlir.j2: the host input is cut into
`n_tiles` FIFO elements, the core calls one function per tile, the output is gathered back.

With runtime_params=1 (GELU, layernorm) the per-layer values come in a second input, the params
buffer: one shim MM2S transfer into @paramq (depth 1), acquired by the core once per invocation
around its tile loop and passed to the core function as its last argument.

With `cores` > 1 the tiles spread over several cores (codegen/wide.py, WideStream,
mlir/common/stream_wide.mlir.j2); cores=1 renders this one-core design.

The cost model (`workload`, codegen/cost.py): one core, the shim's channels straight to it (no
mem tile); the core's scalar cycles are the kernel's own per-tile count of its core code
(`core_cycles_per_tile`), an estimate read off the code, not a measurement.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from codegen.cost import Workload
from codegen.spec import (
    CORE_MEMORY,
    KernelSpec,
    MemoryItem,
    SpecError,
    TilePlan,
    refuse_runtime_values,
)
from codegen.wide import WideStream
from runtime.manifest import BufferSpec

STACK_MARGIN = 1024  # bytes above the core function's own frame, for calls and spills
CORE = "core(0, 2)"


def stream_workload(spec: KernelSpec, in_bytes: int, out_bytes: int, params_bytes: int,
                    core_cycles: int, notes: tuple[str, ...] = ()) -> Workload:
    """The Workload of a one-core stream design (mlir/common/stream.mlir.j2): the input on
    @inq, the output on @outq, with runtime_params=1 the params buffer on @paramq (one more
    BD); every byte crosses one shim channel and one core channel, nothing a mem tile."""
    shim = {"shim(0) MM2S @inq": in_bytes, "shim(0) S2MM @outq": out_bytes}
    core = {f"{CORE} S2MM @inq": in_bytes, f"{CORE} MM2S @outq": out_bytes}
    if params_bytes:
        shim["shim(0) MM2S @paramq"] = params_bytes
        core[f"{CORE} S2MM @paramq"] = params_bytes
    return Workload(spec.name, spec.device, "scalar", {CORE: 0}, shim, {}, core,
                    {CORE: core_cycles}, bds=2 + bool(params_bytes), notes=(
                        "one core, scalar code only: the vector projection is the scalar one",
                        *notes))


class StreamSpec(WideStream, KernelSpec):
    """A one-core int8 stream; subclasses give the tile sizes, tables and the frame size."""

    in_name: str = "x"
    out_name: str = "y"
    #: with runtime_params=1: the params input's name, and the parameters it replaces
    params_name: str = "p"
    VALUE_PARAMS: tuple[str, ...] = ()

    @property
    @abstractmethod
    def in_tile_bytes(self) -> int: ...

    @property
    @abstractmethod
    def out_tile_bytes(self) -> int: ...

    @property
    @abstractmethod
    def n_tiles(self) -> int: ...

    @property
    @abstractmethod
    def scratch_bytes(self) -> int:
        """The core function's largest stack frame (its local arrays)."""

    def tables(self) -> list[MemoryItem]:
        """Constant tables the core code keeps in data memory."""
        return []

    @property
    def runtime(self) -> bool:
        """runtime_params=1: the per-layer values are the params input, not compiled in."""
        return bool(self.params.get("runtime_params", 0))

    @property
    def params_dtype(self) -> str:
        """The params input's element type (runtime_params=1)."""
        return "int8"

    @property
    def params_len(self) -> int:
        """Elements of the params input (runtime_params=1)."""
        return 0

    def pack_params(self, **values: Any) -> np.ndarray:
        """The params input of a runtime_params=1 build from the real-valued quantities."""
        raise NotImplementedError

    def core_cycles_per_tile(self) -> int:
        """Scalar-unit cycles of one core call (one tile), the kernel's count of its core code."""
        raise SpecError(f"kernel {self.name} has no cost model yet (its spec has no workload())")

    def workload(self) -> Workload:
        """Per invocation: the tiles' bytes on each channel, the params buffer's with
        runtime_params=1 (the core code's work is the same in both modes: only where the
        values are read from differs), and the core's cycles."""
        if self.cores > 1:
            return self.wide_workload(self.name, self.device)
        return stream_workload(self, self.n_tiles * self.in_tile_bytes,
                               self.n_tiles * self.out_tile_bytes,
                               self.params_bytes if self.runtime else 0,
                               self.n_tiles * self.core_cycles_per_tile())

    @property
    def wide_in_tile(self) -> int:
        return self.in_tile_bytes

    @property
    def wide_out_tile(self) -> int:
        return self.out_tile_bytes

    @property
    def in_len(self) -> int:
        return self.n_tiles * self.in_tile_bytes

    @property
    def out_len(self) -> int:
        return self.n_tiles * self.out_tile_bytes

    def wide_cycles_per_tile(self) -> int:
        return self.core_cycles_per_tile()

    def refuse_values(self) -> None:
        """With runtime_params=1 a value parameter set away from its default is refused."""
        refuse_runtime_values(self, self.VALUE_PARAMS, self.params_name)

    def core_data(self) -> list[MemoryItem]:
        return self.tables()

    def extra_context(self) -> dict[str, Any]:
        """Kernel-specific names the templates use (constants for the parameter header)."""
        return {}

    @property
    def stack_size(self) -> int:
        """The frame plus a margin, in whole KiB (NPU_FACTS 6.9: never the 1 KiB default)."""
        return (self.scratch_bytes + STACK_MARGIN + 1023) // 1024 * 1024

    def buffers(self) -> list[BufferSpec]:
        x = BufferSpec(self.in_name, "int8", (self.n_tiles * self.in_tile_bytes,), "in", 0)
        if self.runtime:
            return [x, BufferSpec(self.params_name, self.params_dtype, (self.params_len,), "in", 1),
                    BufferSpec(self.out_name, "int8", (self.n_tiles * self.out_tile_bytes,), "out",
                               2)]
        return [
            x,
            BufferSpec(self.out_name, "int8", (self.n_tiles * self.out_tile_bytes,), "out", 1),
        ]

    @property
    def params_bytes(self) -> int:
        return self.params_len * np.dtype(self.params_dtype).itemsize

    def edge_inputs(self) -> list[tuple[str, list[np.ndarray]]]:
        """The base cases on the data input; with runtime_params=1 the params input stays the
        one seed 0 draws (an int8 extreme is no params buffer at all)."""
        cases = super().edge_inputs()
        if not self.runtime:
            return cases
        params = self.random_inputs(0)[1]
        return [(label, [inputs[0], params]) for label, inputs in cases]

    def memory_plan(self) -> list[TilePlan]:
        depth = self.params["fifo_depth"]
        items = [
            MemoryItem("inq buffers", self.in_tile_bytes, depth),
            MemoryItem("outq buffers", self.out_tile_bytes, depth),
            *([MemoryItem("paramq buffer", self.params_bytes)] if self.runtime else []),
            *self.tables(),
            MemoryItem("stack", self.stack_size, kind="stack"),
        ]
        if self.cores > 1:
            return self.wide_memory_plan(items)
        return [TilePlan((0, 2), CORE_MEMORY, items)]

    def render_context(self) -> dict[str, Any]:
        return {
            **self.params,
            "kernel": self.name,
            "symbol": self.CORE_SYMBOLS[0],
            "object": self.object_name,
            "in_name": self.in_name,
            "out_name": self.out_name,
            "in_type": "i8",
            "out_type": "i8",
            "in_tile": self.in_tile_bytes,
            "out_tile": self.out_tile_bytes,
            "n_tiles": self.n_tiles,
            "in_len": self.in_len,
            "out_len": self.out_len,
            "stack_size": self.stack_size,
            "runtime_params": int(self.runtime),
            "params_name": self.params_name,
            "params_type": {"int8": "i8", "int32": "i32"}[self.params_dtype],
            "params_len": self.params_len,
            **(self.wide_context() if self.cores > 1 else {"stream_base": "common/stream.mlir.j2"}),
            **self.extra_context(),
        }

"""StreamSpec: kernels whose design is one core streaming int8 tiles from one buffer to another.

Attention, GELU and layernorm share mlir/common/stream.mlir.j2: the host input is cut into
`n_tiles` FIFO elements, the core calls one function per tile, the output is gathered back.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from codegen.spec import CORE_MEMORY, KernelSpec, MemoryItem, TilePlan
from runtime.manifest import BufferSpec

STACK_MARGIN = 1024  # bytes above the core function's own frame, for calls and spills


class StreamSpec(KernelSpec):
    """A one-core int8 stream; subclasses give the tile sizes, tables and the frame size."""

    in_name: str = "x"
    out_name: str = "y"

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
        return [
            BufferSpec(self.in_name, "int8", (self.n_tiles * self.in_tile_bytes,), "in", 0),
            BufferSpec(self.out_name, "int8", (self.n_tiles * self.out_tile_bytes,), "out", 1),
        ]

    def memory_plan(self) -> list[TilePlan]:
        depth = self.params["fifo_depth"]
        return [
            TilePlan((0, 2), CORE_MEMORY, [
                MemoryItem("inq buffers", self.in_tile_bytes, depth),
                MemoryItem("outq buffers", self.out_tile_bytes, depth),
                *self.tables(),
                MemoryItem("stack", self.stack_size, kind="stack"),
            ])
        ]

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
            "in_len": self.n_tiles * self.in_tile_bytes,
            "out_len": self.n_tiles * self.out_tile_bytes,
            "stack_size": self.stack_size,
            **self.extra_context(),
        }

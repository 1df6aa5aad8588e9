"""The emulator's static view of a design: what `lower.py` builds once and every run reuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from runtime.emulator.program import Block

SHIM_ROW = 0
MEM_TILE_ROW = 1


class Tile(NamedTuple):
    """A tile by (col, row): row 0 is the shim, row 1 the mem tile, rows 2+ compute cores."""

    col: int
    row: int

    def __str__(self) -> str:
        return f"tile({self.col}, {self.row})"

    @property
    def kind(self) -> str:
        if self.row == SHIM_ROW:
            return "shim"
        return "mem" if self.row == MEM_TILE_ROW else "core"


@dataclass(frozen=True)
class FifoSpec:
    """An `aie.objectfifo`: `depth` buffers of one element each, one producer, n consumers."""

    name: str
    line: int
    producer: Tile
    consumers: tuple[Tile, ...]
    depth: int
    shape: tuple[int, ...]
    dtype: np.dtype
    # Element indices the producer's DMA streams out, in order (`dimensionsToStream`), or None.
    stream_order: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Values in one element."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of one element (a tile endpoint holds `depth` of them)."""
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class BufferSpec:
    """An `aie.buffer`: memory on one tile, kept across runs as on the device."""

    name: str
    line: int
    tile: Tile
    shape: tuple[int, ...]
    dtype: np.dtype
    initial: np.ndarray | None

    @property
    def nbytes(self) -> int:
        """Bytes of tile memory the buffer takes."""
        return int(np.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class LinkSpec:
    """An `aie.objectfifo.link` through a mem tile: a split (1 -> n) or a join (n -> 1)."""

    line: int
    srcs: tuple[str, ...]
    dsts: tuple[str, ...]
    # Element offsets of each part inside the whole element (dsts for a split, srcs for a join).
    offsets: tuple[int, ...]


@dataclass(frozen=True)
class TransferSpec:
    """An `aiex.npu.dma_memcpy_nd`: host buffer `arg` <-> FIFO `fifo`, in stream order."""

    line: int
    arg: int
    fifo: str
    to_fifo: bool
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    length: int
    # Host element indices in stream order; None when they are the contiguous run from `start`.
    indices: np.ndarray | None
    start: int
    problems: tuple[str, ...]
    # The shim buffer descriptor (0..15) the transfer is written into: one BD id may be reused
    # on a shim tile only once the transfer that used it before is complete.
    id: int = 0
    # `issue_token = true`: the DMA sends a task-completion token when the transfer is done (an
    # S2MM transfer always does, see runtime.emulator.tokens), and a `dma_wait` takes one.
    issue_token: bool = False
    # The shim tile's column, whose 16 BDs the transfer uses.
    column: int = 0


@dataclass(frozen=True)
class WaitSpec:
    """An `aiex.npu.dma_wait {symbol = @fifo}`: takes one task-completion token of `fifo`."""

    line: int
    fifo: str


@dataclass(frozen=True)
class FuncSpec:
    """A `func.func private` declaration of core code: its symbol, argument kinds, library."""

    name: str
    line: int
    link_with: str | None
    arg_kinds: tuple[str, ...]
    arg_types: tuple[str, ...]


@dataclass(frozen=True)
class CoreSpec:
    """An `aie.core`: its tile and its body, compiled to a program."""

    tile: Tile
    line: int
    body: Block
    stack_size: int | None
    # Value slots that hold the address of an `aie.buffer`, by buffer name.
    buffer_slots: dict[str, int] = field(default_factory=dict)
    # The body reaches a top-level `scf.for` of constant trip count >= 2**31 (IRON's "forever"),
    # so the program never ends. On the NPU a core's program starts once, when the xclbin is
    # loaded, and must keep serving every later invocation (mlir-aie issue #2878).
    runs_forever: bool = False
    # The line where the program ends when it does: its last top-level `scf.for`, else the core.
    end_line: int = 0


@dataclass
class Design:
    """Everything `load_design` read from one `aie.mlir`."""

    name: str
    device: str
    tiles: dict[str, Tile]
    fifos: dict[str, FifoSpec]
    links: list[LinkSpec]
    funcs: dict[str, FuncSpec]
    cores: list[CoreSpec]
    buffers: dict[str, BufferSpec]
    args: list[tuple[str, np.dtype, tuple[int, ...]]]
    sequence: list[TransferSpec | WaitSpec] = field(default_factory=list)

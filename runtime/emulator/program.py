"""A core body as a small instruction list: what `lower.py` compiles `aie.core` regions into.

Values live in numbered slots of one list per core run. A memref value is the address of a FIFO
buffer; a subview is the tuple of buffer slots an acquire returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Const(NamedTuple):
    """`arith.constant`: slot `dst` = value."""

    dst: int
    value: int


class Arith(NamedTuple):
    """A binary integer `arith` op: slot `dst` = fn(slot a, slot b)."""

    dst: int
    fn: Callable[[int, int], int]
    a: int
    b: int


class Cast(NamedTuple):
    """`arith.index_cast`: slot `dst` = slot `src` (integers are unbounded here)."""

    dst: int
    src: int


class For(NamedTuple):
    """`scf.for %iv = lb to ub step s { body }` without iteration arguments."""

    iv: int
    lb: int
    ub: int
    step: int
    body: Block
    line: int


class Acquire(NamedTuple):
    """`aie.objectfifo.acquire @fifo(port, count)`: slot `dst` = the held buffers."""

    dst: int
    fifo: str
    produce: bool
    n: int
    line: int


class Access(NamedTuple):
    """`aie.objectfifo.subview.access %view[position]`: slot `dst` = that buffer's address."""

    dst: int
    view: int
    fifo: str
    position: int
    line: int


class Release(NamedTuple):
    """`aie.objectfifo.release @fifo(port, count)`."""

    fifo: str
    produce: bool
    n: int
    line: int


class Call(NamedTuple):
    """`func.call @callee(args)` into the host-compiled core library."""

    callee: str
    args: tuple[int, ...]
    line: int


Instruction = Const | Arith | Cast | For | Acquire | Access | Release | Call
Block = tuple[Any, ...]


def port_text(fifo: str, produce: bool, count: int) -> str:
    """How an acquire/release names its port in the source: `@f(Produce, 1)`."""
    return f"@{fifo}({'Produce' if produce else 'Consume'}, {count})"

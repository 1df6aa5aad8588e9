"""A core body as a small instruction list: what `lower.py` compiles `aie.core` regions into.

Values live in numbered slots of one list per core. A memref value is the address of a FIFO
buffer or tile buffer; a subview is the number (in production order) of the first FIFO element
an acquire returned, so an access can tell a held element from one already released.
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
    """`aie.objectfifo.subview.access %view[position]`: slot `dst` = that buffer's address.

    `produce` is the port of the acquire that made `view`, `acquire_line` its line: an access
    to an element that port has since released is a use after release.
    """

    dst: int
    view: int
    fifo: str
    position: int
    line: int
    produce: bool
    acquire_line: int


class Release(NamedTuple):
    """`aie.objectfifo.release @fifo(port, count)`."""

    fifo: str
    produce: bool
    n: int
    line: int


class Call(NamedTuple):
    """`func.call @callee(args)` into the host-compiled core library.

    `fifo_args` are the (position, slot) of the arguments that point into FIFO elements (made
    by a subview access): each must still be held when the call runs.
    """

    callee: str
    args: tuple[int, ...]
    line: int
    fifo_args: tuple[tuple[int, int], ...] = ()


Instruction = Const | Arith | Cast | For | Acquire | Access | Release | Call
Block = tuple[Any, ...]

# IRON's "run forever" core loop: `scf.for %i = %c0 to %c9223372036854775807 step %c1`. A loop
# of at least this many trips is taken to mean "forever" (no design runs 2**31 iterations).
FOREVER_TRIPS = 2**31


def trip_count(lb: int, ub: int, step: int) -> int:
    """Iterations of `scf.for lb to ub step step` (step > 0), computed without iterating."""
    return len(range(lb, ub, step))


def runs_forever(body: Block) -> bool:
    """True when the core body reaches a top-level `scf.for` of constant bounds and at least
    FOREVER_TRIPS trips, so the core's program never ends (IRON's run-forever form).

    Constants are read from the body's `arith.constant`s: each slot is written by one op only
    (SSA), so a constant slot holds the same value wherever it is read.
    """
    constants = _constants(body)
    for ins in body:
        if isinstance(ins, For) and all(s in constants for s in (ins.lb, ins.ub, ins.step)):
            step = constants[ins.step]
            if step > 0 and trip_count(constants[ins.lb], constants[ins.ub], step) >= FOREVER_TRIPS:
                return True
    return False


def _constants(block: Block) -> dict[int, int]:
    found: dict[int, int] = {}
    for ins in block:
        if isinstance(ins, Const):
            found[ins.dst] = ins.value
        elif isinstance(ins, For):
            found.update(_constants(ins.body))
    return found


def port_text(fifo: str, produce: bool, count: int) -> str:
    """How an acquire/release names its port in the source: `@f(Produce, 1)`."""
    return f"@{fifo}({'Produce' if produce else 'Consume'}, {count})"

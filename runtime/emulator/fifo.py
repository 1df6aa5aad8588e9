"""An object FIFO at run time: a ring of `depth` element buffers with acquire/release counts.

Elements are numbered in production order; element n lives in buffer n % depth. The producer
may write element n once every consumer has released element n - depth; consumer c may read
element n once the producer has released it. Acquires are cumulative, as in mlir-aie: acquiring
k while holding h < k takes k - h more, and the view is the k oldest held elements.
"""

from __future__ import annotations

import numpy as np

from runtime.emulator.model import FifoSpec


class Clock:
    """Counts state changes, so the scheduler can tell progress from a stall."""

    __slots__ = ("ticks",)

    def __init__(self) -> None:
        self.ticks = 0


class Fifo:
    """Run-time state of one object FIFO; buffers are allocated once and reused by every run."""

    __slots__ = (
        "buffers",
        "clock",
        "cons_held",
        "consumed",
        "depth",
        "name",
        "order",
        "prod_held",
        "produced",
        "ptrs",
        "size",
        "spec",
    )

    def __init__(self, spec: FifoSpec, clock: Clock, n_consumers: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.depth = spec.depth
        self.size = spec.size
        self.clock = clock
        self.order = spec.stream_order
        self.buffers = np.zeros((spec.depth, spec.size), dtype=spec.dtype)
        self.ptrs = [int(self.buffers[i].ctypes.data) for i in range(spec.depth)]
        self.consumed = [0] * n_consumers
        self.cons_held = [0] * n_consumers
        self.produced = 0
        self.prod_held = 0

    def reset(self) -> None:
        """Empty the FIFO, as loading the design anew would (buffer contents are left).

        Runs do not call this: FIFO states carry on from run to run as the locks do on the NPU.
        """
        self.produced = self.prod_held = 0
        n = len(self.consumed)
        self.consumed = [0] * n
        self.cons_held = [0] * n

    # -- producer side ---------------------------------------------------------------------

    def can_write(self, element: int) -> bool:
        """True when element number `element` may be written (its buffer is free)."""
        return element - min(self.consumed) < self.depth

    def acquire_produce(self, count: int) -> bool:
        """Hold `count` elements for writing; False (and nothing taken) if they are not free."""
        if count <= self.prod_held:
            return True
        if not self.can_write(self.produced + count - 1):
            return False
        self.prod_held = count
        self.clock.ticks += 1
        return True

    def release_produce(self, count: int) -> bool:
        """Hand `count` written elements to the consumers; False if fewer are held."""
        if count > self.prod_held:
            return False
        self.publish(self.produced + count)
        self.prod_held -= count
        return True

    def publish(self, upto: int) -> None:
        """Mark elements below `upto` as written, streaming each through `dimensionsToStream`."""
        if self.order is not None:
            for n in range(self.produced, upto):
                buf = self.buffers[n % self.depth]
                buf[:] = buf[self.order]
        self.produced = upto
        self.clock.ticks += 1

    # -- consumer side ---------------------------------------------------------------------

    def acquire_consume(self, consumer: int, count: int) -> bool:
        """Hold `count` elements for reading; False if they have not been produced yet."""
        if count <= self.cons_held[consumer]:
            return True
        if self.consumed[consumer] + count > self.produced:
            return False
        self.cons_held[consumer] = count
        self.clock.ticks += 1
        return True

    def release_consume(self, consumer: int, count: int) -> bool:
        """Free the `count` oldest held elements; False if fewer are held."""
        if count > self.cons_held[consumer]:
            return False
        self.consumed[consumer] += count
        self.cons_held[consumer] -= count
        self.clock.ticks += 1
        return True

    # -- reporting -------------------------------------------------------------------------

    def unconsumed(self) -> int:
        """Elements written but not yet released by every consumer."""
        return self.produced - min(self.consumed)

    def state(self) -> str:
        """One line: `@f: 2/2 filled (produced 2, consumed 0); producer holds 0`."""
        held = ", ".join(str(h) for h in self.cons_held)
        return (
            f"@{self.name}: {self.unconsumed()}/{self.depth} filled "
            f"(produced {self.produced}, consumed {'/'.join(map(str, self.consumed))}); "
            f"producer holds {self.prod_held}, consumers hold {held}"
        )

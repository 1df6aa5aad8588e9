"""An `aie.objectfifo.link` as a task: the mem tile's DMAs moving elements between FIFOs.

Split (1 -> n): the mem tile holds the source FIFO's buffers; each destination channel reads
its slice (at its offset) of every source element independently, and a source element is freed
once every destination has taken its slice. Join (n -> 1): the mem tile holds the destination's
buffers; each source channel writes its slice of every destination element independently, and
an element is handed on once every source has written its part.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.emulator.fifo import Clock, Fifo
from runtime.emulator.model import LinkSpec
from runtime.emulator.scheduler import Steps, Task


class LinkTask(Task):
    """One link, split or join (a 1:1 link is a split with one destination at offset 0).

    Persistent, like the FIFOs it moves between: its counts carry on from run to run.
    """

    persistent = True

    def __init__(self, spec: LinkSpec, fifos: Mapping[str, Fifo], clock: Clock) -> None:
        super().__init__()
        self.spec = spec
        self.clock = clock
        self.split = len(spec.srcs) == 1
        self.srcs = [fifos[n] for n in spec.srcs]
        self.dsts = [fifos[n] for n in spec.dsts]
        mem = self.dsts[0].spec.producer
        self.src_consumer = [f.spec.consumers.index(mem) for f in self.srcs]
        srcs = ", ".join("@" + n for n in spec.srcs)
        dsts = ", ".join("@" + n for n in spec.dsts)
        self.name = f"objectfifo.link (line {spec.line}) [{srcs}] -> [{dsts}]"
        self.counts = [0] * len(spec.offsets)

    def reload(self) -> None:
        super().reload()
        self.counts = [0] * len(self.spec.offsets)

    def steps(self) -> Steps:
        move = self._split if self.split else self._join
        while True:
            if not move():
                yield

    def _split(self) -> bool:
        src, c = self.srcs[0], self.src_consumer[0]
        moved = False
        for i, (dst, off) in enumerate(zip(self.dsts, self.spec.offsets, strict=True)):
            n = self.counts[i]
            while n < src.produced and dst.can_write(dst.produced):
                part = src.buffers[n % src.depth, off : off + dst.size]
                dst.buffers[dst.produced % dst.depth] = part
                dst.publish(dst.produced + 1)
                n += 1
                moved = True
            self.counts[i] = n
        done = min(self.counts)
        if done > src.consumed[c]:
            src.consumed[c] = done
            self.clock.ticks += 1
        return moved

    def _join(self) -> bool:
        dst = self.dsts[0]
        moved = False
        for i, (src, off) in enumerate(zip(self.srcs, self.spec.offsets, strict=True)):
            c, n = self.src_consumer[i], self.counts[i]
            while src.consumed[c] < src.produced and dst.can_write(n):
                whole = src.buffers[src.consumed[c] % src.depth]
                dst.buffers[n % dst.depth, off : off + src.size] = whole
                src.consumed[c] += 1
                n += 1
                moved = True
                self.clock.ticks += 1
            self.counts[i] = n
        done = min(self.counts)
        if done > dst.produced:
            dst.publish(done)
        return moved

    def waiting(self) -> str | None:
        states = "; ".join(f.state() for f in (*self.srcs, *self.dsts))
        busy = any(f.unconsumed() for f in self.srcs) or any(
            self.counts[i] > min(self.counts) for i in range(len(self.counts))
        )
        return f"{self.name} waits ({states})" if busy else None

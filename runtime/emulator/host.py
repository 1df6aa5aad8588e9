"""The host side of a run: the runtime sequence and the shim DMA channel of each FIFO.

A channel carries its FIFO's transfers in issue order as one stream: a host->FIFO (MM2S)
transfer is cut into FIFO-element-sized pieces, a FIFO->host (S2MM) transfer takes released
elements in order, and a transfer that ends inside an element leaves the rest of that element
to the next transfer on the same FIFO.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from runtime.emulator.faults import DmaError
from runtime.emulator.fifo import Clock, Fifo
from runtime.emulator.model import SHIM_ROW, TransferSpec, WaitSpec
from runtime.emulator.scheduler import Steps, Task


class Transfer:
    """One issued `dma_memcpy_nd` during a run."""

    __slots__ = ("done", "flat", "moved", "spec", "waited")

    def __init__(self, spec: TransferSpec, flat: np.ndarray) -> None:
        self.spec = spec
        self.flat = flat
        self.moved = 0
        self.done = False
        self.waited = False


class ShimChannel(Task):
    """The shim DMA channel that feeds (MM2S) or drains (S2MM) one FIFO."""

    def __init__(self, fifo: Fifo, clock: Clock) -> None:
        super().__init__()
        self.fifo = fifo
        self.clock = clock
        self.to_fifo = fifo.spec.producer.row == SHIM_ROW
        self.consumer = (
            -1
            if self.to_fifo
            else next(i for i, t in enumerate(fifo.spec.consumers) if t.row == SHIM_ROW)
        )
        self.name = f"shim DMA {'MM2S to' if self.to_fifo else 'S2MM from'} @{fifo.name}"
        self.queue: list[Transfer] = []
        self.next = 0
        self.holding = False
        self.fill = 0
        self.bytes = 0

    def reset(self) -> None:
        self.queue = []
        self.next = 0
        self.holding = False
        self.fill = 0
        self.bytes = 0

    def steps(self) -> Steps:
        move = self._feed if self.to_fifo else self._drain
        while True:
            while self.next >= len(self.queue):
                yield
            transfer = self.queue[self.next]
            yield from move(transfer)
            transfer.done = True
            self.next += 1
            self.clock.ticks += 1

    def _feed(self, transfer: Transfer) -> Steps:
        fifo, spec = self.fifo, transfer.spec
        if spec.indices is None:
            src = transfer.flat[spec.start : spec.start + spec.length]
        else:
            src = transfer.flat[spec.indices]
        size, pos, length = fifo.size, 0, spec.length
        while pos < length:
            if not self.holding:
                while not fifo.acquire_produce(1):
                    yield
                self.holding, self.fill = True, 0
            n = min(size - self.fill, length - pos)
            fifo.buffers[fifo.produced % fifo.depth, self.fill : self.fill + n] = src[pos : pos + n]
            pos += n
            self.fill += n
            transfer.moved = pos
            if self.fill == size:
                fifo.release_produce(1)
                self.holding = False
        self.bytes += length * fifo.buffers.itemsize

    def _drain(self, transfer: Transfer) -> Steps:
        fifo, spec, c = self.fifo, transfer.spec, self.consumer
        flat, idx, start = transfer.flat, spec.indices, spec.start
        size, pos, length = fifo.size, 0, spec.length
        while pos < length:
            if not self.holding:
                while not fifo.acquire_consume(c, 1):
                    yield
                self.holding, self.fill = True, 0
            n = min(size - self.fill, length - pos)
            chunk = fifo.buffers[fifo.consumed[c] % fifo.depth, self.fill : self.fill + n]
            if idx is None:
                flat[start + pos : start + pos + n] = chunk
            else:
                flat[idx[pos : pos + n]] = chunk
            pos += n
            self.fill += n
            transfer.moved = pos
            if self.fill == size:
                fifo.release_consume(c, 1)
                self.holding = False
        self.bytes += length * fifo.buffers.itemsize

    def waiting(self) -> str | None:
        if self.next >= len(self.queue):
            if not self.holding:
                return None
            return (
                f"{self.name} has no transfer left but holds a partly "
                f"{'filled' if self.to_fifo else 'drained'} element of @{self.fifo.name} "
                f"({self.fill} of {self.fifo.size} values): the transfers on it are not a "
                "multiple of the FIFO element"
            )
        t = self.queue[self.next]
        need = "a free buffer in" if self.to_fifo else "a filled element of"
        return (
            f"{self.name} waits for {need} @{self.fifo.name} ({self.fifo.unconsumed()}/"
            f"{self.fifo.depth} filled); transfer at line {t.spec.line} moved "
            f"{t.moved} of {t.spec.length} elements"
        )

    def leftovers(self, source: str) -> list[str]:
        """What this channel left undone at the end of a run."""
        out = []
        for t in self.queue:
            where = f"{source}:{t.spec.line}: `aiex.npu.dma_memcpy_nd` on @{self.fifo.name}"
            if not t.done:
                out.append(f"{where} moved only {t.moved} of {t.spec.length} elements")
            elif not self.to_fifo and not t.waited:
                out.append(
                    f"{where} was never waited on (no `aiex.npu.dma_wait {{symbol = "
                    f"@{self.fifo.name}}}` after it): the host may read the output too early"
                )
        if self.holding:
            verb = "filled" if self.to_fifo else "drained"
            out.append(
                f"@{self.fifo.name}: the shim DMA {verb} only {self.fill} of the "
                f"{self.fifo.size} values of an element (transfer sizes are not a multiple of "
                "the FIFO element)"
            )
        return out


class SequenceTask(Task):
    """The `aie.runtime_sequence`: issues transfers in order and blocks at each dma_wait.

    Issuing a transfer writes its buffer descriptor: reusing a BD id on a shim tile while the
    transfer that used it before is still moving data would overwrite that descriptor under
    the running DMA, so it is a DmaError. The sequence moves on only at a dma_wait, so a
    transfer found complete here was complete when the last wait returned.
    """

    name = "runtime sequence"

    def __init__(
        self,
        steps_: list[TransferSpec | WaitSpec],
        channels: Mapping[str, ShimChannel],
        clock: Clock,
        source: str = "aie.mlir",
    ) -> None:
        super().__init__()
        self.program = steps_
        self.channels = channels
        self.clock = clock
        self.source = source
        self.flats: list[np.ndarray] = []
        self.at: WaitSpec | None = None
        # The last transfer issued with each (shim column, BD id) in this run.
        self.bds: dict[tuple[int, int], Transfer] = {}

    def reset(self) -> None:
        self.at = None
        self.bds = {}

    def steps(self) -> Steps:
        for step in self.program:
            channel = self.channels[step.fifo]
            if isinstance(step, TransferSpec):
                transfer = Transfer(step, self.flats[step.arg])
                key = (step.column, step.id)
                earlier = self.bds.get(key)
                if earlier is not None and not earlier.done:
                    raise DmaError(self._reused(step, earlier))
                self.bds[key] = transfer
                channel.queue.append(transfer)
                self.clock.ticks += 1
                continue
            pending = list(channel.queue)
            for t in pending:
                t.waited = True
            while not all(t.done for t in pending):
                self.at = step
                yield
            self.at = None

    def _reused(self, step: TransferSpec, earlier: Transfer) -> str:
        return (
            f"{self.source}:{step.line}: `aiex.npu.dma_memcpy_nd` on @{step.fifo} reuses BD id "
            f"{step.id} of the shim tile in column {step.column} while the transfer at line "
            f"{earlier.spec.line} (on @{earlier.spec.fifo}) that uses it is still in flight "
            f"(moved {earlier.moved} of {earlier.spec.length} elements, no completed "
            "dma_wait covers it): give it another id, or wait for that transfer first"
        )

    def waiting(self) -> str | None:
        if self.at is None:
            return None
        return f"{self.name} waits at line {self.at.line}: `aiex.npu.dma_wait` on @{self.at.fifo}"

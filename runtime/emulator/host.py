"""The host side of a run: the runtime sequence and the shim DMA channel of each FIFO.

A channel carries its FIFO's transfers in issue order as one stream: a host->FIFO (MM2S)
transfer is cut into FIFO-element-sized pieces, a FIFO->host (S2MM) transfer takes released
elements in order, and a transfer that ends inside an element leaves the rest of that element
to the next transfer on the same FIFO.

Tokens and the task queue are modelled as `runtime.emulator.tokens` describes the lowering: a
transfer that issues a token pushes one onto its channel when it completes, a dma_wait takes
one (blocking until it exists), and a channel holds at most TASK_QUEUE_DEPTH transfers queued.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from runtime.emulator.faults import DmaError
from runtime.emulator.fifo import Clock, Fifo
from runtime.emulator.model import SHIM_ROW, TransferSpec, WaitSpec
from runtime.emulator.scheduler import Steps, Task
from runtime.emulator.tokens import (
    TASK_QUEUE_DEPTH,
    issues_token,
    leftover_problem,
    queue_problem,
    wait_problem,
)


class Transfer:
    """One issued `dma_memcpy_nd` during a run."""

    __slots__ = ("done", "flat", "moved", "spec", "taken", "token", "waited")

    def __init__(self, spec: TransferSpec, flat: np.ndarray) -> None:
        self.spec = spec
        self.flat = flat
        self.moved = 0
        self.done = False
        # Retired by a dma_wait: its own token, or one of a transfer queued after it, taken.
        self.waited = False
        self.token = issues_token(spec)
        # Its token taken by a dma_wait.
        self.taken = False


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
        # Task-completion tokens pushed and not yet taken by a dma_wait.
        self.tokens = 0
        # Transfers issued on this channel since the last dma_wait on it.
        self.since_wait: list[Transfer] = []

    def reset(self) -> None:
        self.queue = []
        self.next = 0
        self.holding = False
        self.fill = 0
        self.bytes = 0
        self.tokens = 0
        self.since_wait = []

    def in_flight(self) -> list[Transfer]:
        """Transfers pushed onto the task queue and not complete (the running one included)."""
        return self.queue[self.next :]

    def steps(self) -> Steps:
        move = self._feed if self.to_fifo else self._drain
        while True:
            while self.next >= len(self.queue):
                yield
            transfer = self.queue[self.next]
            yield from move(transfer)
            transfer.done = True
            if transfer.token:
                self.tokens += 1
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
            elif self.to_fifo and t.token and not t.taken:
                out.append(f"{where} {leftover_problem(self.fifo.name, t.spec)}")
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
    """The `aie.runtime_sequence`: issues transfers in order and blocks at each dma_wait until
    it can take its channel's task-completion token.

    Issuing a transfer writes its buffer descriptor: reusing a BD id on a shim tile while the
    transfer that used it before is still moving data would overwrite that descriptor under
    the running DMA, so it is a DmaError; so is a push onto a full task queue, and a wait the
    token rule refuses (`tokens.wait_problem`). The sequence moves on only at a dma_wait, so a
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
                in_flight = channel.in_flight()
                if len(in_flight) >= TASK_QUEUE_DEPTH:
                    raise DmaError(
                        f"{self.source}:{step.line}: `aiex.npu.dma_memcpy_nd` on @{step.fifo} "
                        + queue_problem(step.fifo, [t.spec for t in in_flight])
                    )
                self.bds[key] = transfer
                channel.queue.append(transfer)
                channel.since_wait.append(transfer)
                self.clock.ticks += 1
                continue
            problem = wait_problem(step.fifo, [t.spec for t in channel.since_wait])
            if problem is not None:
                raise DmaError(
                    f"{self.source}:{step.line}: `aiex.npu.dma_wait` on @{step.fifo}: {problem}"
                )
            # The rule leaves one token-issuing transfer since the last wait, the last issued:
            # the token this wait takes is its.
            awaited = channel.since_wait[-1]
            channel.since_wait = []
            while channel.tokens == 0:
                self.at = step
                yield
            self.at = None
            channel.tokens -= 1
            awaited.taken = True
            for t in channel.queue[: channel.queue.index(awaited) + 1]:
                t.waited = True

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

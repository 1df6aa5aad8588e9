"""A compute core as a task: interprets its compiled body, blocking on FIFO acquires.

xDSL's interpreter is not used for scf/arith/func here: it runs a region to completion on one
Python call stack, so a core could not pause at a blocked acquire and let DMAs and other cores
run (short of a thread per core, which would make deadlocks hangs instead of reports), and it
dispatches every op through its registry on every run. Instead `lower.py` compiles the body
once into a short instruction list, which a generator steps through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from runtime.emulator.faults import EmulationFault, FifoError
from runtime.emulator.fifo import Fifo
from runtime.emulator.model import CoreSpec
from runtime.emulator.program import (
    FOREVER_TRIPS,
    Access,
    Acquire,
    Arith,
    Block,
    Call,
    Cast,
    Const,
    For,
    Release,
    port_text,
    trip_count,
)
from runtime.emulator.scheduler import Steps, Task


class CoreTask(Task):
    """One `aie.core`: its body runs as a generator over the shared FIFOs.

    The program starts at the first run and carries on across runs (a persistent task): on the
    NPU it starts when the xclbin is loaded, and the host's invocations only move data. A core
    parked at an acquire inside a run-forever loop, holding nothing, is idle between runs.
    """

    persistent = True

    def __init__(
        self,
        spec: CoreSpec,
        fifos: Mapping[str, Fifo],
        buffers: Mapping[str, int],
        funcs: Mapping[str, Callable[..., None]],
        source: str,
        max_iterations: int,
    ) -> None:
        """`buffers` gives the address of each `aie.buffer` by name."""
        super().__init__()
        self.spec = spec
        self.name = f"core {spec.tile} (line {spec.line})"
        self.fifos = fifos
        self.funcs = funcs
        self.source = source
        self.max_iterations = max_iterations
        self.consumer_index = {
            name: fifo.spec.consumers.index(spec.tile)
            for name, fifo in fifos.items()
            if spec.tile in fifo.spec.consumers
        }
        self.calls = 0
        self.at: Acquire | None = None
        self.endless = 0
        self.iterations = 0
        # The run (1, 2, ...) during which the program ended, set by the design.
        self.ended_in_run: int | None = None
        # Per slot made by a subview access: (FIFO, consumer index or -1 for the producer,
        # element number, access line), so a later call can tell whether it is still held.
        self.origins: dict[int, tuple[Fifo, int, int, int]] = {}
        # The line of the last release per (FIFO, produce), for use-after-release messages.
        self.released_at: dict[tuple[str, bool], int] = {}
        self.buffer_slots = [(slot, buffers[name]) for name, slot in spec.buffer_slots.items()]
        self.n_slots = max(_slot_count(spec.body), *(s + 1 for s, _ in self.buffer_slots), 0)

    def reset(self) -> None:
        """Per-run counters only: the program's position and the loops it is in carry on."""
        self.calls = 0
        self.iterations = 0

    def reload(self) -> None:
        super().reload()
        self.at = None
        self.endless = 0
        self.ended_in_run = None
        self.origins = {}
        self.released_at = {}

    def steps(self) -> Steps:
        env: list = [0] * self.n_slots
        for slot, address in self.buffer_slots:
            env[slot] = address
        yield from self._run(self.spec.body, env)
        self.at = None

    def _fault(self, line: int, what: str, why: str) -> str:
        return f"{self.source}:{line}: `{what}` in {self.name}: {why}"

    def _run(self, block: Block, env: list) -> Steps:
        fifos, funcs = self.fifos, self.funcs
        for ins in block:
            kind = type(ins)
            if kind is Acquire:
                dst, name, produce, count, _ = ins
                fifo = fifos[name]
                if count > fifo.depth:
                    raise FifoError(
                        self._fault(
                            ins.line,
                            f"aie.objectfifo.acquire {_port(ins)}",
                            f"acquires {count} elements of @{name}, whose depth is {fifo.depth}",
                        )
                    )
                if produce:
                    while not fifo.acquire_produce(count):
                        self.at = ins
                        yield
                    env[dst] = fifo.produced
                else:
                    c = self.consumer_index[name]
                    while not fifo.acquire_consume(c, count):
                        self.at = ins
                        yield
                    env[dst] = fifo.consumed[c]
                self.at = None
            elif kind is Access:
                fifo = fifos[ins.fifo]
                c = -1 if ins.produce else self.consumer_index[ins.fifo]
                element = env[ins.view] + ins.position
                if not _holds(fifo, c, element):
                    raise FifoError(self._released(ins, ins.line, "aie.objectfifo.subview.access"))
                env[ins.dst] = fifo.ptrs[element % fifo.depth]
                self.origins[ins.dst] = (fifo, c, element, ins.line)
            elif kind is Call:
                for position, slot in ins.fifo_args:
                    fifo, c, element, line = self.origins[slot]
                    if not _holds(fifo, c, element):
                        raise FifoError(
                            self._fault(
                                ins.line,
                                f"func.call @{ins.callee}",
                                f"argument {position} points into an element of @{fifo.name} "
                                f"(from the access at line {line}) that was released"
                                f"{self._release_line(fifo.name, c < 0)}: a use after release",
                            )
                        )
                funcs[ins.callee](*[env[s] for s in ins.args])
                self.calls += 1
            elif kind is Release:
                name, produce, count, _ = ins
                self.released_at[name, produce] = ins.line
                fifo = fifos[name]
                if produce:
                    held = fifo.prod_held
                    ok = fifo.release_produce(count)
                else:
                    c = self.consumer_index[name]
                    held = fifo.cons_held[c]
                    ok = fifo.release_consume(c, count)
                if not ok:
                    raise FifoError(
                        self._fault(
                            ins.line,
                            f"aie.objectfifo.release {_port(ins)}",
                            f"releases {count} element(s) of @{name} but holds {held}",
                        )
                    )
            elif kind is For:
                lb, ub, step = env[ins.lb], env[ins.ub], env[ins.step]
                if step <= 0:
                    raise EmulationFault(self._fault(ins.line, "scf.for", f"step {step} <= 0"))
                endless = trip_count(lb, ub, step) >= FOREVER_TRIPS
                self.endless += endless
                iv, body = ins.iv, ins.body
                for value in range(lb, ub, step):
                    self.iterations += 1
                    if self.iterations > self.max_iterations:
                        raise EmulationFault(
                            self._fault(
                                ins.line,
                                "scf.for",
                                f"ran more than {self.max_iterations} loop iterations without "
                                "finishing (a loop that never blocks?)",
                            )
                        )
                    env[iv] = value
                    yield from self._run(body, env)
                self.endless -= endless
            elif kind is Const:
                env[ins.dst] = ins.value
            elif kind is Arith:
                env[ins.dst] = ins.fn(env[ins.a], env[ins.b])
            elif kind is Cast:
                env[ins.dst] = env[ins.src]
            else:  # pragma: no cover - lower.py only emits the kinds above
                raise AssertionError(ins)

    def _release_line(self, fifo: str, produce: bool) -> str:
        line = self.released_at.get((fifo, produce))
        return f" at line {line}" if line is not None else ""

    def _released(self, ins: Access, line: int, what: str) -> str:
        port = "Produce" if ins.produce else "Consume"
        return self._fault(
            line,
            what,
            f"element {ins.position} of the acquire at line {ins.acquire_line} of "
            f"@{ins.fifo} ({port}) was already released"
            f"{self._release_line(ins.fifo, ins.produce)}: a use after release (the buffer "
            "belongs to the other side of the FIFO again)",
        )

    def ended_message(self) -> str:
        """Why a core whose program has ended breaks the next invocation."""
        spec = self.spec
        waits = _first_acquire(spec.body)
        hang = (
            f"the next invocation would hang waiting on @{waits}"
            if waits is not None
            else "the core would not run for the next invocation"
        )
        return (
            f"{self.source}: core {spec.tile} finished its program during run "
            f"{self.ended_in_run} ({self.source}:{spec.end_line}); on the NPU {hang}: wrap the "
            "core body in a run-forever loop (scf.for to 9223372036854775807)"
        )

    def held(self) -> list[str]:
        """The FIFO elements this core holds right now, e.g. `1 of @outq (Produce)`."""
        out = []
        for name, fifo in self.fifos.items():
            if fifo.spec.producer == self.spec.tile and fifo.prod_held:
                out.append(f"{fifo.prod_held} of @{name} (Produce)")
            if name in self.consumer_index and fifo.cons_held[self.consumer_index[name]]:
                out.append(f"{fifo.cons_held[self.consumer_index[name]]} of @{name} (Consume)")
        return out

    def holds_nothing(self) -> bool:
        return not self.held()

    def idle_forever(self) -> bool:
        """Parked at an acquire inside an endless loop, holding nothing: done, for IRON designs."""
        return self.at is not None and self.endless > 0 and self.holds_nothing()

    def waiting(self) -> str | None:
        if self.finished:
            held = self.held()
            if not held:
                return None
            return (
                f"{self.name} finished but still holds {', '.join(held)}: "
                "a missing `aie.objectfifo.release`?"
            )
        if self.at is None:
            return None
        ins = self.at
        fifo = self.fifos[ins.fifo]
        side = "a free buffer" if ins.produce else "a filled element"
        return (
            f"{self.name} waits at line {ins.line}: `aie.objectfifo.acquire {_port(ins)}` "
            f"for {side} of @{ins.fifo} ({fifo.unconsumed()}/{fifo.depth} filled)"
        )


def _holds(fifo: Fifo, consumer: int, element: int) -> bool:
    """True while the port (consumer index, or -1 for the producer) still holds `element`."""
    if consumer < 0:
        first, held = fifo.produced, fifo.prod_held
    else:
        first, held = fifo.consumed[consumer], fifo.cons_held[consumer]
    return first <= element < first + held


def _first_acquire(block: Block) -> str | None:
    """The FIFO of the first acquire in the body, in program order."""
    for ins in block:
        if isinstance(ins, Acquire):
            return ins.fifo
        if isinstance(ins, For) and (found := _first_acquire(ins.body)) is not None:
            return found
    return None


def _slot_count(block: Block) -> int:
    """One more than the highest value slot the body writes."""
    top = 0
    for ins in block:
        if isinstance(ins, For):
            top = max(top, ins.iv + 1, _slot_count(ins.body))
        elif isinstance(ins, Const | Arith | Cast | Acquire | Access):
            top = max(top, ins.dst + 1)
    return top


def _port(ins: Acquire | Release) -> str:
    return port_text(ins.fifo, ins.produce, ins.n)

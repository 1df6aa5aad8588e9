"""EmulatedDesign: a loaded design, ready to run many times on host buffers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runtime.emulator.cores import CoreTask
from runtime.emulator.faults import CoreEndedError, DeadlockError, DmaError, IncompleteRunError
from runtime.emulator.fifo import Clock, Fifo
from runtime.emulator.host import SequenceTask, ShimChannel
from runtime.emulator.links import LinkTask
from runtime.emulator.model import SHIM_ROW, Design, TransferSpec
from runtime.emulator.scheduler import Task, run_until_stalled
from runtime.errors import RunError

# A core loop that runs this many iterations in one run without finishing is reported, so a
# loop that never blocks cannot hang the host.
MAX_ITERATIONS = 10_000_000


class EmulatedDesign:
    """A rendered `aie.mlir`, parsed once; `run` executes it on host buffers.

    As on the NPU, the first run starts the cores' programs and later runs only move data: core
    programs, FIFO states and tile buffers carry on from run to run. After a run that raised,
    the next run starts from a freshly loaded design, so one fault does not cascade.
    FIFO and tile buffers are allocated once and reused, so runs must not overlap (one design
    object per thread). `model` is the parsed design; `buffers` the `aie.buffer` arrays;
    `runs` the number of runs started since the design was loaded.
    """

    def __init__(self, design: Design, functions: dict[str, Callable[..., None]] | None) -> None:
        self.model = design
        self.source = design.name
        self._functions = functions
        self.clock = Clock()
        self.fifos = {
            name: Fifo(spec, self.clock, len(spec.consumers)) for name, spec in design.fifos.items()
        }
        self.channels = {
            name: ShimChannel(fifo, self.clock)
            for name, fifo in self.fifos.items()
            if any(t.row == SHIM_ROW for t in (fifo.spec.producer, *fifo.spec.consumers))
        }
        # Tile buffers keep their contents from run to run, as on the device.
        self.buffers = {
            name: (
                spec.initial.copy()
                if spec.initial is not None
                else np.zeros(spec.shape, spec.dtype)
            )
            for name, spec in design.buffers.items()
        }
        addresses = {name: int(buf.ctypes.data) for name, buf in self.buffers.items()}
        self.sequence = SequenceTask(design.sequence, self.channels, self.clock, self.source)
        self.cores = [
            CoreTask(spec, self.fifos, addresses, functions or {}, self.source, MAX_ITERATIONS)
            for spec in design.cores
        ]
        self.links = [LinkTask(spec, self.fifos, self.clock) for spec in design.links]
        self._tasks: list[Task] = [self.sequence, *self.channels.values(), *self.links, *self.cores]
        self._arg_sizes = [int(np.prod(shape)) for _, _, shape in design.args]
        self._dma_faults = [
            f"{self.source}:{s.line}: `aiex.npu.dma_memcpy_nd` of "
            f"%{design.args[s.arg][0]} on @{s.fifo}: {'; '.join(s.problems)}"
            for s in design.sequence
            if isinstance(s, TransferSpec) and s.problems
        ]
        self.runs = 0
        self._reload_needed = False

    @property
    def device(self) -> str:
        """The `aie.device` target, e.g. `npu1_1col`."""
        return self.model.device

    @property
    def sequence_args(self) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        """(name, dtype, shape) of each runtime-sequence argument, in order (= XRT arg 3+i)."""
        return list(self.model.args)

    def run(self, buffers: Sequence[np.ndarray]) -> dict[str, Any]:
        """Run the design once; outputs are written into `buffers` in place.

        `buffers` are numpy arrays in sequence-argument order, of the argument's dtype and
        element count (any shape), C-contiguous. Returns statistics: `core_calls`,
        `bytes_to_device`, `bytes_from_device`, `transfers`, `scheduler_passes`.
        Raises an EmulationFault (DmaError, FifoError, DeadlockError, IncompleteRunError, and
        CoreEndedError when a core's program ended in an earlier run: on the NPU the program
        runs once per load, so this invocation would hang).
        """
        if self._dma_faults:
            raise DmaError("\n".join(self._dma_faults))
        if self._functions is None and self.cores:
            raise RunError(
                f"{self.source}: no host core libraries were given to load_design "
                "(libraries={link_with name: shared library}); the design cannot run"
            )
        self.sequence.flats = self._flatten(buffers)
        if self._reload_needed:
            self._reload()
        self.runs += 1
        try:
            passes = self._run_once()
        except BaseException:
            self._reload_needed = True
            raise
        return {
            "core_calls": sum(c.calls for c in self.cores),
            "bytes_to_device": sum(c.bytes for c in self.channels.values() if c.to_fifo),
            "bytes_from_device": sum(c.bytes for c in self.channels.values() if not c.to_fifo),
            "transfers": sum(len(c.queue) for c in self.channels.values()),
            "scheduler_passes": passes,
        }

    def _run_once(self) -> int:
        ended = [core for core in self.cores if core.finished]
        if ended:
            raise CoreEndedError("\n".join(core.ended_message() for core in ended))
        passes = run_until_stalled(self._tasks, self.clock)
        for core in self.cores:
            if core.finished and core.ended_in_run is None:
                core.ended_in_run = self.runs
        if not self.sequence.finished:
            raise DeadlockError(self._deadlock_report())
        self._check_complete()
        return passes

    def _reload(self) -> None:
        """Back to the state right after loading: FIFOs empty, programs not started."""
        for fifo in self.fifos.values():
            fifo.reset()
        for task in self._tasks:
            task.reload()
        self._reload_needed = False

    def _flatten(self, buffers: Sequence[np.ndarray]) -> list[np.ndarray]:
        args = self.model.args
        if len(buffers) != len(args):
            raise RunError(
                f"{self.source}: the runtime sequence takes {len(args)} buffers "
                f"({', '.join(a[0] for a in args)}), got {len(buffers)}"
            )
        flats = []
        for i, (buf, (name, dtype, shape), size) in enumerate(
            zip(buffers, args, self._arg_sizes, strict=True)
        ):
            if (
                type(buf) is not np.ndarray
                or buf.dtype != dtype
                or buf.size != size
                or not buf.flags.c_contiguous
                or not buf.flags.writeable
            ):
                raise RunError(self._bad_buffer(i, buf, name, dtype, shape, size))
            flats.append(buf.reshape(-1))
        return flats

    @staticmethod
    def _bad_buffer(
        i: int, buf: object, name: str, dtype: np.dtype, shape: tuple[int, ...], size: int
    ) -> str:
        where = f"buffer {i} (%{name}: {'x'.join(map(str, shape))}x{dtype})"
        if not isinstance(buf, np.ndarray):
            return f"{where} must be a numpy array, got {type(buf).__name__}"
        if buf.dtype != dtype:
            return f"{where} has dtype {buf.dtype}"
        if buf.size != size:
            return f"{where} has {buf.size} elements, expected {size}"
        return f"{where} must be C-contiguous and writeable (outputs are written in place)"

    def _deadlock_report(self) -> str:
        blocked = [w for t in self._tasks if (w := t.waiting()) is not None]
        states = [f.state() for f in self.fifos.values()]
        return (
            f"{self.source}: deadlock: nothing can make progress.\n  blocked:\n    - "
            + "\n    - ".join(blocked)
            + "\n  FIFOs:\n    "
            + "\n    ".join(states)
        )

    def _check_complete(self) -> None:
        problems: list[str] = []
        for channel in self.channels.values():
            problems += channel.leftovers(self.source)
        for core in self.cores:
            where = core.waiting()
            if not core.finished and not core.idle_forever():
                if core.endless:
                    holds = ", ".join(core.held()) or "nothing"
                    problems.append(
                        f"{where or core.name}; the core stopped inside its run-forever loop "
                        f"holding {holds}: between invocations it must be parked at an acquire "
                        "holding nothing"
                    )
                else:
                    problems.append(f"{where or core.name}; the core never finished")
            elif core.finished and where:
                problems.append(where)
        for fifo in self.fifos.values():
            held = fifo.prod_held + sum(fifo.cons_held)
            if fifo.unconsumed() or held:
                problems.append(
                    f"@{fifo.name} (line {fifo.spec.line}) still holds data: {fifo.state()}"
                )
        if problems:
            raise IncompleteRunError(
                f"{self.source}: the runtime sequence ended with work left over:\n  - "
                + "\n  - ".join(problems)
            )

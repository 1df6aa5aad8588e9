"""Cooperative scheduling of cores, DMAs and links, with deadlock detection.

Each task is a generator that runs until it cannot proceed and then yields. The scheduler
resumes every live task in turn; when a whole pass changes nothing (the shared clock did not
tick and no task finished), the system is stalled: either the run is over or it is deadlocked.
"""

from __future__ import annotations

from collections.abc import Generator

from runtime.emulator.fifo import Clock

Steps = Generator[None, None, None]


class Task:
    """A cooperative activity; subclasses provide `steps()` and describe where they wait.

    A persistent task (a core, a mem-tile link) starts once, at the first run, and its generator
    carries on from run to run, as a core's program and the FIFO locks do on the NPU between
    invocations. Any other task (the runtime sequence, a shim channel) starts afresh each run.
    """

    name = "task"
    persistent = False

    def __init__(self) -> None:
        self.finished = False
        self._gen: Steps | None = None

    def start(self) -> None:
        """Prepare a run (all tasks are prepared before any of them runs)."""
        self.reset()
        if not self.persistent:
            self.finished = False
            self._gen = self.steps()
        elif self._gen is None and not self.finished:
            self._gen = self.steps()

    def reload(self) -> None:
        """Forget everything, as loading the design anew would: the next run starts over."""
        self.finished = False
        self._gen = None

    def reset(self) -> None:
        """Clear per-run state (counters); called before any task of the run is resumed."""

    def steps(self) -> Steps:
        raise NotImplementedError

    def waiting(self) -> str | None:
        """Where and on what this task waits, or None when it waits for nothing in particular."""
        return None


def run_until_stalled(tasks: list[Task], clock: Clock) -> int:
    """Resume tasks until a full pass makes no progress; returns the number of passes.

    A persistent task that finished in an earlier run is not resumed again.
    """
    for task in tasks:
        task.start()
    live = [t for t in tasks if not t.finished]
    passes = 0
    while live:
        passes += 1
        before = clock.ticks
        done = False
        for task in live:
            try:
                next(task._gen)  # type: ignore[arg-type]
            except StopIteration:
                task.finished = done = True
                task._gen = None
        if done:
            live = [t for t in live if not t.finished]
        elif clock.ticks == before:
            break
    return passes

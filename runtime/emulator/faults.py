"""The emulator's error types: design faults found while reading, run faults found while running.

Each message points at the fault: the op and its line in `aie.mlir`, the FIFO by name.
"""

from runtime.errors import DesignError, RunError


class DesignSyntaxError(DesignError):
    """The text is not valid MLIR for the ops npukit knows (the message gives line and column)."""


class UnsupportedOpError(DesignError):
    """A well-formed op, or a form of one, that the emulator does not model; never ignored."""


class EmulationFault(RunError):
    """Running the design on the emulator went wrong in a way the hardware would too."""


class DeadlockError(EmulationFault):
    """Nothing can make progress: names each blocked core, DMA and wait, and the FIFO states."""


class CoreEndedError(DeadlockError):
    """A core's program ended in an earlier run, so this invocation would hang on the NPU.

    A core's program starts once, when the xclbin is loaded; the host's invocations only move
    data, so a core must loop forever (mlir-aie issue #2878).
    """


class FifoError(EmulationFault):
    """An object FIFO used wrongly: acquiring beyond its depth, releasing what is not held."""


class DmaError(EmulationFault):
    """A runtime-sequence transfer breaks a shim DMA limit or reads/writes out of bounds."""


class IncompleteRunError(EmulationFault):
    """The sequence ended with data left in FIFOs, cores unfinished or transfers not waited on."""

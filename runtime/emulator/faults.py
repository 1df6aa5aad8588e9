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


class FifoError(EmulationFault):
    """An object FIFO used wrongly: acquiring beyond its depth, releasing what is not held."""


class DmaError(EmulationFault):
    """A runtime-sequence transfer breaks a shim DMA limit or reads/writes out of bounds."""


class IncompleteRunError(EmulationFault):
    """The sequence ended with data left in FIFOs, cores unfinished or transfers not waited on."""

"""The error types every npukit message travels in: user-facing, one clear line each."""


class NpukitError(Exception):
    """An error for the user: its message names the thing and the fix; shown without traceback."""


class ArtifactError(NpukitError):
    """An artifact file (manifest, xclbin, insts.bin, bundle) is missing, malformed or tampered."""


class ToolchainError(NpukitError):
    """A required tool (aiecc, Peano, bootgen, XRT, a C compiler) is missing or failed."""


class DesignError(NpukitError):
    """A rendered design is outside what npukit understands, or breaks a hardware limit."""


class RunError(NpukitError):
    """A kernel invocation failed: bad inputs, a driver error, a non-COMPLETED run state."""

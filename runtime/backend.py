"""The interface both backends (pyxrt hardware, host emulator) implement for NpuKernel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs one loaded artifact. Buffers, device handles and runs are set up once, at load."""

    name: str

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run once on `inputs` (validated, in manifest.inputs order).

        Returns the outputs in manifest.outputs order as views of the backend's own buffers:
        valid until the next call.
        """
        ...

    def close(self) -> None:
        """Release device resources (hardware contexts are a device-wide, scarce resource)."""
        ...

"""The `emu` backend: runs an artifact's rendered design on the host with runtime.emulator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.errors import ArtifactError
from runtime.manifest import Manifest


class EmuBackend:
    """One artifact in the emulator: the design is loaded and its buffers allocated once."""

    name = "emu"

    def __init__(self, artifact_dir: Path, manifest: Manifest) -> None:
        from runtime import emulator

        design_file = manifest.file_for("design")
        if design_file is None:
            raise ArtifactError(f"{artifact_dir}: the manifest lists no design to emulate")
        libraries = {name: artifact_dir / so for name, so in manifest.host_libraries.items()}
        self.design = emulator.load_design(artifact_dir / design_file, libraries=libraries)
        self.buffers = [np.zeros(b.shape, dtype=b.dtype) for b in manifest.buffers]
        self._inputs = [i for i, b in enumerate(manifest.buffers) if b.direction == "in"]
        self._outputs = [i for i, b in enumerate(manifest.buffers) if b.direction == "out"]

    def bind(self, values: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Private copies of `values` (buffer index -> array), made once, passed as they are."""
        return {i: np.array(x, dtype=self.buffers[i].dtype, copy=True) for i, x in values.items()}

    def run(self, inputs: Sequence[np.ndarray],
            bound: dict[int, np.ndarray] | None = None) -> list[np.ndarray]:
        """Run once; `inputs` are the inputs not in `bound` (from bind), in manifest order."""
        if not bound:
            for i, x in zip(self._inputs, inputs, strict=True):
                np.copyto(self.buffers[i], x)
            self.design.run(self.buffers)
            return [self.buffers[i] for i in self._outputs]
        buffers = [bound.get(i, b) for i, b in enumerate(self.buffers)]
        for i, x in zip([i for i in self._inputs if i not in bound], inputs, strict=True):
            np.copyto(buffers[i], x)
        self.design.run(buffers)
        return [buffers[i] for i in self._outputs]

    def close(self) -> None:
        self.buffers = []

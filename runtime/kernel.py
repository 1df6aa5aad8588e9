"""The facade: `NpuKernel.load(artifact_dir)(inputs) -> outputs`, on the NPU or the emulator.

Load verifies the artifact's hashes, picks and opens a backend once; a call validates its
inputs against the manifest, runs, and returns the outputs in manifest.outputs order.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backend import Backend
from runtime.bundle import resolve_artifact
from runtime.errors import RunError, ToolchainError
from runtime.manifest import BufferSpec, Manifest, load_manifest
from runtime.xrt import (
    DEFAULT_TIMEOUT_MS,
    BoLayout,
    check_timeout_ms,
    layout_for,
    refuse_fallback_if_npu,
)

log = logging.getLogger("npukit.runtime")
BACKENDS = ("auto", "xrt", "emu")
TIMINGS_KEPT = 100_000
#: XRT reads a run's timeout as unsigned milliseconds where 0 means "wait forever"


class NpuKernel:
    """A loaded artifact, callable like a function; holds its backend's resources until close().

    One kernel has one set of device buffers, so calls from several threads are serialised by a
    lock: each runs whole, in turn. Outputs from `copy=False` are overwritten by the next call.
    """

    def __init__(self, artifact_dir: Path, manifest: Manifest, backend: Backend) -> None:
        self.artifact_dir = artifact_dir
        self.manifest = manifest
        self.backend = backend
        self.last_call_s: float | None = None
        self.timings: deque[float] = deque(maxlen=TIMINGS_KEPT)  # seconds per call, newest last
        self.closed = False
        # what a valid positional call looks like, so the common case is checked in one pass
        self._expected = [
            (np.dtype(s.dtype), tuple(s.shape), _c_strides(s.dtype, tuple(s.shape)))
            for s in manifest.inputs
        ]
        self._lock = threading.Lock()  # one call (or close) at a time on the shared buffers

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        backend: str = "auto",
        layout: str | BoLayout = "baseline",
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        allow_unverified: bool = False,
    ) -> NpuKernel:
        """Verify `artifact_dir`'s manifest hashes, then open `backend` ("auto", "xrt", "emu").

        `artifact_dir` may be a published bundle; one not verified on an NPU is refused unless
        `allow_unverified`. `timeout_ms` bounds each call's wait on the NPU; 0 waits forever.
        """
        if not isinstance(artifact_dir, str | os.PathLike):
            raise RunError(f"NpuKernel.load: artifact_dir must be a path (str or os.PathLike) to "
                           f"an artifact directory or bundle, got {type(artifact_dir).__name__}")
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise RunError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        timeout_ms = check_timeout_ms(timeout_ms)
        if not isinstance(layout, str | BoLayout):
            raise RunError(f"layout must be 'baseline', 'legacy' or a BoLayout, got "
                           f"{type(layout).__name__}")
        directory = resolve_artifact(artifact_dir, allow_unverified=allow_unverified)
        manifest = load_manifest(directory, verify=True)
        if isinstance(layout, str):  # checked on every backend, though only xrt uses it
            layout = layout_for(layout, len(manifest.buffers))
        opened = open_backend(directory, manifest, backend, layout, timeout_ms)
        return cls(directory, manifest, opened)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def __call__(self, *inputs: Any, copy: bool = True, **named: np.ndarray) -> list[np.ndarray]:
        """Run once. Inputs positionally, as one list, or by buffer name (a dict or keywords).

        With `copy=False` the outputs are views of the backend's buffers, valid until the next call.
        """
        with self._lock:
            if self.closed:
                raise RunError(f"{self.artifact_dir}: this kernel was closed; load it again")
            start = time.perf_counter()
            arrays: Sequence[np.ndarray] = inputs
            if named or not self._well_formed(inputs):
                arrays = self.check_inputs(inputs, named)
            outputs = self.backend.run(arrays)
            if copy:
                outputs = [np.array(o) for o in outputs]
            self.last_call_s = time.perf_counter() - start
            self.timings.append(self.last_call_s)
            return outputs

    def _well_formed(self, inputs: tuple[Any, ...]) -> bool:
        """True if `inputs` are exactly the manifest's arrays, in order: nothing to convert."""
        if len(inputs) != len(self._expected):
            return False
        for x, (dtype, shape, strides) in zip(inputs, self._expected, strict=True):
            # C-contiguous by its strides (cheaper than x.flags); odd but valid layouts, such
            # as size-1 axes with other strides, take the full check instead
            if type(x) is not np.ndarray or x.shape != shape or x.strides != strides:
                return False
            if x.dtype is not dtype and x.dtype != dtype:
                return False
        return True

    def check_inputs(self, inputs: tuple[Any, ...], named: Mapping[str, Any]) -> list[np.ndarray]:
        """The inputs in manifest order, each checked for dtype, shape and contiguity."""
        specs = self.manifest.inputs
        if len(inputs) == 1 and isinstance(inputs[0], Mapping) and not named:
            named, inputs = inputs[0], ()
        elif len(inputs) == 1 and isinstance(inputs[0], list | tuple):
            inputs = tuple(inputs[0])
        if named and inputs:
            raise RunError("pass the inputs either positionally or by name, not both")
        if named:
            unknown = sorted(set(named) - {s.name for s in specs})
            missing = [s.name for s in specs if s.name not in named]
            if unknown or missing:
                raise RunError(
                    f"inputs by name: expected {[s.name for s in specs]}, "
                    f"missing {missing}, unknown {unknown}"
                )
            inputs = tuple(named[s.name] for s in specs)
        if len(inputs) != len(specs):
            raise RunError(
                f"expected {len(specs)} input(s) {[s.name for s in specs]}, got {len(inputs)}"
            )
        return [_check(spec, x) for spec, x in zip(specs, inputs, strict=True)]

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self.backend.close()

    def __enter__(self) -> NpuKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _c_strides(dtype: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a C-contiguous array of `shape` and `dtype`."""
    step, out = np.dtype(dtype).itemsize, []
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def _check(spec: BufferSpec, x: Any) -> np.ndarray:
    expected = f"{spec.dtype} {tuple(spec.shape)}"
    if not isinstance(x, np.ndarray):
        raise RunError(
            f"input {spec.name!r}: expected a numpy array {expected}, got {type(x).__name__}"
        )
    if x.dtype != np.dtype(spec.dtype) or x.shape != tuple(spec.shape):
        raise RunError(f"input {spec.name!r}: expected {expected}, got {x.dtype} {x.shape}")
    if not x.flags.c_contiguous:
        raise RunError(
            f"input {spec.name!r}: not C-contiguous; pass np.ascontiguousarray({spec.name})"
        )
    return x


def open_backend(
    directory: Path,
    manifest: Manifest,
    backend: str,
    layout: str | BoLayout = "baseline",
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> Backend:
    """The backend for `manifest`; "auto" prefers the NPU, and falls back (saying so) only
    where no NPU is present."""
    from runtime.emu_backend import EmuBackend
    from runtime.xrt import XrtBackend

    if backend == "emu":
        return EmuBackend(directory, manifest)
    if manifest.emulation_only:
        if backend == "xrt":
            raise RunError(
                f"{directory} is emulation-only (built without the NPU toolchain, no xclbin); "
                "run it with backend='emu' or rebuild it where aiecc and Peano are installed"
            )
        log.warning("%s is emulation-only: running it on the emulator", directory)
        return EmuBackend(directory, manifest)
    if backend == "xrt":
        return XrtBackend(directory, manifest, layout=layout, timeout_ms=timeout_ms)
    try:
        return XrtBackend(directory, manifest, layout=layout, timeout_ms=timeout_ms)
    except ToolchainError as e:
        refuse_fallback_if_npu(e)  # a present but misconfigured NPU is an error, not "no NPU"
        log.warning("no NPU (%s); running %s on the emulator", str(e).splitlines()[0], directory)
        return EmuBackend(directory, manifest)


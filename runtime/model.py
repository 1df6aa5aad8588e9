"""The graph runner: a model artifact's ops run in order on the NPU or the emulator.

Load verifies every file against the model manifest (and each kernel artifact against its own),
opens each distinct kernel artifact once, grouped into the manifest's hardware contexts, and
allocates every buffer once: a run only copies tensors into buffers that already exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime import hostops
from runtime.errors import ArtifactError, RunError
from runtime.kernel import NpuKernel
from runtime.loader import load_json, load_npy
from runtime.manifest import load_manifest, sha256_file

log = logging.getLogger("npukit.runtime")
SCHEMA = "npukit-model/1"
MAX_CONTEXTS = 2
Progress = Callable[[int, int, str], None]  # (op number, op count, op name)


@dataclass(frozen=True)
class OpReport:
    """One op of one run: where it ran, how long, how much of its int8 output saturated."""

    name: str
    kind: str
    fn: str
    seconds: float
    saturated: float  # share of int8 outputs at -128 or 127 (0 for other dtypes)


@dataclass
class Contexts:
    """The hardware contexts a loaded model holds and what it allocated, for the report."""

    opened: list[str] = field(default_factory=list)
    kernels_per_context: dict[str, int] = field(default_factory=dict)
    buffers_allocated: int = 0


#: tensor names are file names of weights/*.npy: no path separators, no leading dot
TENSOR_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.]*$"
DTYPES = ("int8", "int16", "int32", "float32")
MAX_WEIGHT_BYTES = 256 << 20  # far above any Whisper layer's weights (large-v3 fc1: 6.5 MB)


MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["schema", "ops", "tensors", "files", "contexts", "input", "output", "dims",
                 "sample_rate"],
    "properties": {
        "schema": {"const": SCHEMA},
        "ops": {"type": "array", "items": {"type": "object",
                                           "required": ["name", "kind", "fn", "inputs",
                                                        "outputs"]}},
        "tensors": {"type": "array", "items": {"type": "object",
                                               "required": ["name", "dtype", "shape",
                                                            "constant"],
                                               "properties": {
                                                   "name": {"type": "string",
                                                            "pattern": TENSOR_NAME},
                                                   "dtype": {"enum": list(DTYPES)},
                                                   "shape": {"type": "array", "items": {
                                                       "type": "integer", "minimum": 1}},
                                                   "constant": {"type": "boolean"}}}},
        "files": {"type": "object"},
        "contexts": {"type": "array", "items": {"type": "object",
                                                "required": ["name", "artifacts"]}},
        "input": {"type": "string"}, "output": {"type": "string"},
        "sample_rate": {"type": "integer"},
    },
}
REBUILD = "rebuild the model (`invoke encode ... --checkpoint CKPT`)"


def read_model_manifest(directory: Path) -> dict[str, Any]:
    """The model manifest, checked against its schema (one line naming the problem)."""
    return load_json(Path(directory) / "manifest.json", MANIFEST_SCHEMA, fix=REBUILD)


def verify_model(directory: Path) -> dict[str, Any]:
    """The manifest, after every file it lists matched its size and sha256."""
    data = read_model_manifest(directory)
    for rel, meta in sorted(data["files"].items()):
        f = Path(directory) / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ArtifactError(f"{directory}: file entry {rel!r} leaves the model directory")
        if not f.is_file():
            raise ArtifactError(f"{f}: listed in the model manifest but missing; rebuild")
        if f.stat().st_size != meta["bytes"] or sha256_file(f) != meta["sha256"]:
            raise ArtifactError(f"{f}: content does not match the model manifest (stale or "
                                "edited); rebuild the model")
    return data


def load_constants(directory: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The constant tensors (weights, packed per-layer values), each from weights/<name>.npy
    checked against its tensor entry's dtype and shape before its data is read."""
    out = {}
    for t in manifest["tensors"]:
        if not t["constant"]:
            continue
        path = Path(directory) / "weights" / f"{t['name']}.npy"
        a = load_npy(path, f"weight {t['name']}", shape=t["shape"], kinds="iuf",
                     max_bytes=MAX_WEIGHT_BYTES)
        if a.dtype != np.dtype(t["dtype"]):
            raise ArtifactError(f"{path}: holds {a.dtype}, the model manifest says "
                                f"{t['dtype']}; {REBUILD}")
        out[t["name"]] = np.ascontiguousarray(a)
    return out


class ModelRunner:
    """A loaded model artifact; `run(input)` executes every op and returns all tensors."""

    def __init__(self, directory: str | Path, backend: str = "auto") -> None:
        self.directory = Path(directory)
        self.manifest = verify_model(self.directory)
        self.tensors = {t["name"]: t for t in self.manifest["tensors"]}
        self.constants = load_constants(self.directory, self.manifest)
        self.ops = self.manifest["ops"]
        self.contexts = Contexts()
        self.kernels: dict[str, NpuKernel] = {}
        planned = len(self.manifest["contexts"])
        if planned > MAX_CONTEXTS:
            line = (f"{self.directory}: the model needs {planned} hardware contexts, more than "
                    f"{MAX_CONTEXTS} (at most 16 kernel variants share one): its layers need "
                    "fewer distinct kernel variants")
            if backend != "emu":
                raise RunError(line)
            log.warning("%s; emulating it anyway", line)
        try:
            self._open(backend)
        except BaseException:
            self.close()
            raise
        self.last_report: list[OpReport] = []

    def _open(self, backend: str) -> None:
        # Each context's kernel variants are opened once; the ops bind them by artifact.
        if backend == "auto" and all(
                load_manifest(self.directory / rel, verify=False).emulation_only
                for c in self.manifest["contexts"] for rel in c["artifacts"]):
            log.warning("%s: its kernels are emulation-only builds: running on the emulator",
                        self.directory)
            backend = "emu"
        for context in self.manifest["contexts"]:
            self.contexts.opened.append(context["name"])
            self.contexts.kernels_per_context[context["name"]] = len(context["artifacts"])
            for rel in context["artifacts"]:
                kernel = NpuKernel.load(self.directory / rel, backend=backend)
                if backend != "emu" and kernel.backend_name == "xrt":
                    kernel.close()
                    raise RunError(
                        f"{self.directory}: on the NPU each kernel artifact is its own xclbin "
                        "and hardware context; running the encoder there needs its kernels "
                        "linked into one multi-PDI xclbin per context (not built yet); use "
                        "--backend emu")
                self.kernels[rel] = kernel
                self.contexts.buffers_allocated += len(kernel.manifest.buffers)
        missing = {o["artifact"] for o in self.ops if o["kind"] == "kernel"} - set(self.kernels)
        if missing:
            raise ArtifactError(f"{self.directory}: ops use kernel artifacts outside every "
                                f"context: {sorted(missing)[0]}")

    @property
    def backend_name(self) -> str:
        names = {k.backend_name for k in self.kernels.values()}
        return names.pop() if len(names) == 1 else "mixed"

    def run(self, x: np.ndarray, progress: Progress | None = None) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {self.manifest["input"]: x, **self.constants}
        report = []
        for n, op in enumerate(self.ops, 1):
            if progress is not None:
                progress(n, len(self.ops), op["name"])
            start = time.perf_counter()
            args = [values[i] for i in op["inputs"]]
            shapes = [tuple(self.tensors[o]["shape"]) for o in op["outputs"]]
            if op["kind"] == "kernel":
                kernel = self.kernels[op["artifact"]]
                shaped = [np.ascontiguousarray(a).reshape(b.shape)
                          for a, b in zip(args, kernel.manifest.inputs, strict=True)]
                outs = kernel(shaped)
            else:
                outs = hostops.run(op["fn"], args, op.get("attrs", {}), shapes)
            for name, out, shape in zip(op["outputs"], outs, shapes, strict=True):
                values[name] = np.asarray(out).reshape(shape)
            seconds = time.perf_counter() - start
            report.append(OpReport(op["name"], op["kind"], op["fn"], seconds,
                                   _saturated([values[o] for o in op["outputs"]])))
        self.last_report = report
        return values

    def close(self) -> None:
        for kernel in self.kernels.values():
            kernel.close()
        self.kernels = {}

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _saturated(outputs: list[np.ndarray]) -> float:
    i8 = [o for o in outputs if o.dtype == np.int8]
    if not i8:
        return 0.0
    total = sum(o.size for o in i8)
    return sum(int(np.count_nonzero((o == 127) | (o == -128))) for o in i8) / total

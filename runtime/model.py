"""The graph runner: a model artifact's ops run in order on the NPU or the emulator.

Load verifies every file against the model manifest (and each context artifact and kernel
against its own), opens each planned context artifact (one multi-kernel xclbin, one hardware
context: runtime/context.py) once, and binds each op's constant inputs into buffers once: a run
only copies activations into buffers that already exist.
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
from runtime.context import MAX_MEMBERS, Binding, ContextKernel, NpuContext
from runtime.errors import ArtifactError, RunError
from runtime.loader import load_json, load_npy
from runtime.manifest import sha256_file

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


#: a model's context artifacts live in contexts/<name>/ (no other path is followed)
CONTEXT_DIR = r"^contexts/[A-Za-z0-9_]+$"
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
                                                "required": ["name", "dir"],
                                                "properties": {
                                                    "name": {"type": "string"},
                                                    "dir": {"type": "string",
                                                            "pattern": CONTEXT_DIR}}}},
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
        self.loaded: dict[str, NpuContext] = {}
        self.members: dict[str, ContextKernel] = {}  # op name -> its context member
        self.bindings: dict[str, Binding] = {}  # op name -> its bound constant inputs
        planned = len(self.manifest["contexts"])
        if planned > MAX_CONTEXTS:
            line = (f"{self.directory}: the model needs {planned} hardware contexts, more than "
                    f"{MAX_CONTEXTS} (at most {MAX_MEMBERS} kernel variants share one): its "
                    "layers need fewer distinct kernel variants")
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
        # One NpuContext per planned context: one xclbin, one hardware context, every member
        # kernel's buffers made once; each op's constant inputs (its layer's weights and packed
        # per-layer values) are bound once, so a run only copies activations.
        for context in self.manifest["contexts"]:
            ctx = NpuContext.load(self.directory / context["dir"], backend=backend)
            self.loaded[context["name"]] = ctx
            self.contexts.opened.append(context["name"])
            self.contexts.kernels_per_context[context["name"]] = len(ctx.names)
        for op in self.ops:
            if op["kind"] != "kernel":
                continue
            ctx = self.loaded.get(op.get("context", ""))
            if ctx is None:
                raise ArtifactError(f"{self.directory}: op {op['name']} names context "
                                    f"{op.get('context')!r}, which the manifest does not plan; "
                                    f"{REBUILD}")
            member = ctx.kernel(op["member"])
            self.members[op["name"]] = member
            specs = member.manifest.inputs
            if len(specs) != len(op["inputs"]):
                raise ArtifactError(f"{self.directory}: op {op['name']} passes "
                                    f"{len(op['inputs'])} inputs, its kernel takes "
                                    f"{len(specs)}; {REBUILD}")
            bound = {b.name: self.constants[t].reshape(b.shape)
                     for b, t in zip(specs, op["inputs"], strict=True) if t in self.constants}
            if bound:
                self.bindings[op["name"]] = member.bind(bound)
        self.contexts.buffers_allocated = sum(
            len(m.manifest.buffers) for ctx in self.loaded.values()
            for m in map(ctx.kernel, ctx.names)) + sum(
            len(b.names) for b in self.bindings.values())

    @property
    def backend_name(self) -> str:
        names = {c.backend_name for c in self.loaded.values()}
        return names.pop() if len(names) == 1 else "mixed"

    def run(self, x: np.ndarray, progress: Progress | None = None) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {self.manifest["input"]: x, **self.constants}
        report = []
        for n, op in enumerate(self.ops, 1):
            if progress is not None:
                progress(n, len(self.ops), op["name"])
            start = time.perf_counter()
            shapes = [tuple(self.tensors[o]["shape"]) for o in op["outputs"]]
            if op["kind"] == "kernel":
                member = self.members[op["name"]]
                binding = self.bindings.get(op["name"])
                args = [np.ascontiguousarray(values[t]).reshape(b.shape)
                        for b, t in zip(member.manifest.inputs, op["inputs"], strict=True)
                        if t not in self.constants]
                outs = member(*args, binding=binding)
            else:
                args = [values[i] for i in op["inputs"]]
                outs = hostops.run(op["fn"], args, op.get("attrs", {}), shapes)
            for name, out, shape in zip(op["outputs"], outs, shapes, strict=True):
                values[name] = np.asarray(out).reshape(shape)
            seconds = time.perf_counter() - start
            report.append(OpReport(op["name"], op["kind"], op["fn"], seconds,
                                   _saturated([values[o] for o in op["outputs"]])))
        self.last_report = report
        return values

    def close(self) -> None:
        for ctx in self.loaded.values():
            ctx.close()
        self.loaded, self.members, self.bindings = {}, {}, {}

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

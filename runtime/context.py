"""A context artifact on the NPU or the emulator: ONE hardware context serving several kernels.

`NpuContext.load(dir)` verifies `context.json` (every file's sha256) and each member's manifest,
then, on XRT, opens one device, registers the one multi-kernel xclbin once, opens ONE
hw_context and, per member, `xrt.kernel(ctx, name)` (XRT's xrt_kernel.h: kernel(const
hw_context&, const std::string& name); pyxrt.cpp binds it) with its instruction BO, data BOs and
one reusable run, all made at load (runtime.xrt.XrtKernelRun). Calls allocate nothing.

    ctx = NpuContext.load("build/ctx/encoder")
    mm = ctx.kernel("mm_q")                       # a member, by its name in context.json
    layer0 = mm.bind({"B": w0})                   # constant inputs: BOs made and filled once
    (y,) = mm(x, binding=layer0)                  # copies only x; B is the bound BO
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ArtifactError, RunError, ToolchainError
from runtime.loader import Schema, load_json
from runtime.manifest import CONTENT_KEY, Manifest, content_digest, load_manifest, sha256_file

log = logging.getLogger("npukit.runtime")
CONTEXT_NAME = "context.json"
CONTEXT_SCHEMA = "npukit-context/1"
MEMBERS_DIR = "members"
#: amdxdna: at most XCLBIN_MAX_NUM_PDIS (16) PDIs in one hardware context, one per member
MAX_MEMBERS = 16
#: a member's name is its xclbin kernel name; "<name>:<name>_i" fits IP_LAYOUT's 64-byte name
MEMBER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,27}")
BACKENDS = ("auto", "xrt", "emu")
RELINK = "link the context again with codegen.link.link_context"

_SHA: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
MEMBER_SCHEMA: Schema = {
    "type": "object",
    "required": ["name", "dir", "kernel", "variant", "manifest_sha256"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]{0,27}$"},
        "dir": {"type": "string"},
        "kernel": {"type": "string"},
        "variant": {"type": "string"},
        "manifest_sha256": _SHA,
        "xclbin_kernel": {"type": "string", "minLength": 1},
        "instance": {"type": "string", "minLength": 1},
        "kernel_id": {"type": "integer", "minimum": 0, "maximum": 0xFFF},
    },
}
FILE_SCHEMA: Schema = {
    "type": "object",
    "required": ["schema", "device", "emulation_only", "xclbin", "members", "files",
                 CONTENT_KEY],
    "properties": {
        "schema": {"const": CONTEXT_SCHEMA},
        "device": {"type": "string", "minLength": 1},
        "emulation_only": {"type": "boolean"},
        "xclbin": {"type": ["string", "null"]},
        "members": {"type": "array", "minItems": 1, "maxItems": MAX_MEMBERS,
                    "items": MEMBER_SCHEMA},
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["sha256", "bytes"],
            "properties": {"sha256": _SHA, "bytes": {"type": "integer", "minimum": 0}}}},
        "tools": {"type": "object"},
        "cache_key": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        CONTENT_KEY: _SHA,
    },
}


def read_context(directory: str | os.PathLike[str], *, verify: bool = False) -> dict[str, Any]:
    """`context.json` of `directory`, checked (schema, own hash, member layout); with `verify`,
    every file it lists has its recorded size and sha256. Anything else is one line."""
    directory = Path(directory)
    path = directory / CONTEXT_NAME
    data: dict[str, Any] = load_json(path, FILE_SCHEMA, fix=RELINK)
    if data[CONTENT_KEY] != content_digest(data):
        raise ArtifactError(f"{path}: edited after linking (its content no longer matches its "
                            f"{CONTENT_KEY}); {RELINK}")
    names = [m["name"] for m in data["members"]]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{path}: two members share a name; {RELINK}")
    for m in data["members"]:
        if m["dir"] != f"{MEMBERS_DIR}/{m['name']}":
            raise ArtifactError(f"{path}: member {m['name']} lives in {m['dir']!r}, not "
                                f"{MEMBERS_DIR}/{m['name']}; {RELINK}")
        if not data["emulation_only"] and "xclbin_kernel" not in m:
            raise ArtifactError(f"{path}: member {m['name']} names no xclbin kernel; {RELINK}")
    if data["emulation_only"] != (data["xclbin"] is None) or (
            data["xclbin"] is not None and data["xclbin"] not in data["files"]):
        raise ArtifactError(f"{path}: a hardware context lists its xclbin, an emulation-only "
                            f"one none; {RELINK}")
    if verify:
        for rel, meta in sorted(data["files"].items()):
            f = directory / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ArtifactError(f"{path}: file entry {rel!r} leaves the context directory")
            if not f.is_file():
                raise ArtifactError(f"{f}: listed in {CONTEXT_NAME} but missing; {RELINK}")
            if f.stat().st_size != meta["bytes"] or sha256_file(f) != meta["sha256"]:
                raise ArtifactError(f"{f}: content does not match {CONTEXT_NAME} (stale or "
                                    f"edited); {RELINK}")
    return data


@dataclass(frozen=True, eq=False)
class Binding:
    """Constant inputs of one member (a layer's weights), in buffers made and filled once.

    `slots` maps a buffer index to the backend's buffer (an XRT BO, or an emulator array)."""

    member: str
    names: tuple[str, ...]
    slots: dict[int, Any]


class ContextKernel:
    """One member of a loaded context, callable like NpuKernel; `bind` fixes constant inputs."""

    def __init__(self, owner: NpuContext, name: str, directory: Path, manifest: Manifest,
                 runner: Any) -> None:
        self.name = name
        self.directory = directory
        self.manifest = manifest
        self._owner = owner
        self._runner = runner

    @property
    def input_names(self) -> list[str]:
        return [b.name for b in self.manifest.inputs]

    def bind(self, values: Mapping[str, np.ndarray]) -> Binding:
        """Buffers for these inputs (name -> array), allocated and filled once, now."""
        from runtime.kernel import _check

        if not isinstance(values, Mapping) or not values:
            raise RunError(f"{self.name}.bind: pass a dict of input name -> array, e.g. "
                           f"{{{self.input_names[0]!r}: array}}")
        index = {b.name: i for i, b in enumerate(self.manifest.buffers) if b.direction == "in"}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise RunError(f"{self.name}.bind: {unknown[0]!r} is not an input of this kernel "
                           f"(inputs: {', '.join(self.input_names)})")
        checked = {index[k]: _check(self.manifest.buffers[index[k]], v)
                   for k, v in values.items()}
        with self._owner._lock:
            self._owner._check_open()
            slots = self._runner.bind(checked)
        return Binding(self.name, tuple(sorted(values, key=index.__getitem__)), slots)

    def __call__(self, *inputs: Any, binding: Binding | None = None, copy: bool = True,
                 **named: np.ndarray) -> list[np.ndarray]:
        """Run once on the inputs not bound by `binding`, positionally (manifest order) or by
        name; returns the outputs (views valid until the next call if `copy=False`)."""
        from runtime.kernel import _check

        if binding is not None and (not isinstance(binding, Binding)
                                    or binding.member != self.name):
            owner = binding.member if isinstance(binding, Binding) else type(binding).__name__
            raise RunError(f"{self.name}: binding is for {owner}, not this kernel; make one "
                           f"with ctx.kernel({self.name!r}).bind(...)")
        bound = set(binding.names) if binding else set()
        specs = [b for b in self.manifest.inputs if b.name not in bound]
        if len(inputs) == 1 and isinstance(inputs[0], Mapping) and not named:
            named, inputs = dict(inputs[0]), ()
        if named and inputs:
            raise RunError(f"{self.name}: pass the inputs either positionally or by name")
        if named:
            unknown = sorted(set(named) - {s.name for s in specs})
            missing = [s.name for s in specs if s.name not in named]
            if unknown or missing:
                raise RunError(f"{self.name}: inputs by name: expected {[s.name for s in specs]}"
                               f" (bound: {sorted(bound)}), missing {missing}, unknown {unknown}")
            inputs = tuple(named[s.name] for s in specs)
        if len(inputs) != len(specs):
            raise RunError(f"{self.name}: expected {len(specs)} input(s) "
                           f"{[s.name for s in specs]} (bound: {sorted(bound)}), got {len(inputs)}")
        arrays = [_check(s, x) for s, x in zip(specs, inputs, strict=True)]
        with self._owner._lock:
            self._owner._check_open()
            outputs = self._runner.run(arrays, binding.slots if binding else None)
            return [np.array(o) for o in outputs] if copy else list(outputs)


class NpuContext:
    """A loaded context artifact: its members share one device, one xclbin, one hw_context."""

    def __init__(self, directory: Path, data: dict[str, Any], backend: str,
                 members: dict[str, tuple[Path, Manifest, Any]], handles: tuple[Any, ...]) -> None:
        self.directory = directory
        self.info = data
        self.backend_name = backend
        self._handles = handles  # (device, hw_context) on XRT: held until close
        self._lock = threading.Lock()
        self.closed = False
        self._members = {name: ContextKernel(self, name, d, m, runner)
                         for name, (d, m, runner) in members.items()}

    @classmethod
    def load(cls, directory: str | os.PathLike[str], backend: str = "auto", *,
             timeout_ms: int | None = None, device_index: int = 0) -> NpuContext:
        """Verify the context artifact `directory` and open it on `backend` ("auto" prefers
        the NPU and falls back, saying so, only where no NPU is present)."""
        from runtime.xrt import DEFAULT_TIMEOUT_MS, check_timeout_ms, refuse_fallback_if_npu

        if not isinstance(directory, str | os.PathLike):
            raise RunError(f"NpuContext.load: directory must be a path, got "
                           f"{type(directory).__name__}")
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise RunError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        timeout = check_timeout_ms(DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms)
        root = Path(directory)
        data = read_context(root, verify=True)
        manifests = {}
        for m in data["members"]:
            manifest = load_manifest(root / m["dir"], verify=True)
            if manifest.sha256 != m["manifest_sha256"]:
                raise ArtifactError(f"{root / m['dir']}: its manifest is not the one "
                                    f"{CONTEXT_NAME} records; {RELINK}")
            manifests[m["name"]] = manifest
        if backend == "emu":
            return cls._emu(root, data, manifests)
        if data["emulation_only"]:
            if backend == "xrt":
                raise RunError(f"{root} is an emulation-only context (no xclbin); run it with "
                               "backend='emu' or link it where aiecc and Peano are installed")
            log.warning("%s is an emulation-only context: running it on the emulator", root)
            return cls._emu(root, data, manifests)
        try:
            return cls._xrt(root, data, manifests, timeout, device_index)
        except ToolchainError as e:
            if backend == "xrt":
                raise
            refuse_fallback_if_npu(e)
            log.warning("no NPU (%s); running %s on the emulator", str(e).splitlines()[0], root)
            return cls._emu(root, data, manifests)

    @classmethod
    def _emu(cls, root: Path, data: dict[str, Any],
             manifests: dict[str, Manifest]) -> NpuContext:
        from runtime.emu_backend import EmuBackend

        members = {}
        for m in data["members"]:
            d = root / m["dir"]
            members[m["name"]] = (d, manifests[m["name"]], EmuBackend(d, manifests[m["name"]]))
        return cls(root, data, "emu", members, ())

    @classmethod
    def _xrt(cls, root: Path, data: dict[str, Any], manifests: dict[str, Manifest],
             timeout_ms: int, device_index: int) -> NpuContext:
        from runtime.xclbin import read_xclbin
        from runtime.xrt import (
            XrtKernelRun,
            check_xclbin,
            import_pyxrt,
            insts_words,
            layout_for,
            open_device,
            open_hw_context,
        )

        xclbin = root / data["xclbin"]
        for m in data["members"]:  # a bad artifact is refused before XRT is asked
            manifest = manifests[m["name"]]
            check_xclbin(read_xclbin(xclbin, kernel=m["xclbin_kernel"]), manifest,
                         m["xclbin_kernel"])
            insts = manifest.file_for("insts")
            if insts is None:
                raise ArtifactError(f"{root / m['dir']}: lists no insts.bin; {RELINK}")
            insts_words(root / m["dir"] / insts, manifest)
        xrt = import_pyxrt()
        device = open_device(xrt, device_index)
        context = open_hw_context(xrt, device, xclbin)
        members: dict[str, tuple[Path, Manifest, Any]] = {}
        try:
            for m in data["members"]:
                d, manifest = root / m["dir"], manifests[m["name"]]
                runner = XrtKernelRun(xrt, device, context, d, manifest, xclbin,
                                      kernel_name=m["xclbin_kernel"],
                                      layout=layout_for("baseline", len(manifest.buffers)),
                                      timeout_ms=timeout_ms)
                members[m["name"]] = (d, manifest, runner)
        except BaseException:
            for _d, _m, runner in members.values():
                runner.close()
            raise
        return cls(root, data, "xrt", members, (device, context))

    @property
    def names(self) -> list[str]:
        """The members' names, in context.json order."""
        return list(self._members)

    def kernel(self, name: str) -> ContextKernel:
        """The member `name`, callable."""
        try:
            return self._members[name]
        except KeyError:
            raise RunError(f"{self.directory}: no member {name!r}; it has "
                           f"{', '.join(self._members)}") from None

    def _check_open(self) -> None:
        if self.closed:
            raise RunError(f"{self.directory}: this context was closed; load it again")

    def close(self) -> None:
        """Release every member's run and BOs, then the hardware context and device."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for member in self._members.values():
                member._runner.close()
            self._handles = ()

    def __enter__(self) -> NpuContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The artifact contract: `manifest.json` schema, writing, loading and sha256 verification.

An artifact directory is self-describing: the manifest names every file with its hash and role,
the host buffer layout, the BO layout and the tools that made it. The runtime trusts nothing the
manifest does not vouch for.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.atomic import write_atomic
from runtime.errors import ArtifactError
from runtime.loader import Schema, check, parse_json, read_bytes

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
KERNEL_NAME = "MLIR_AIE"
# XRT kernel argument positions of an aiecc xclbin: 0 opcode, 1 instr, 2 ninstr, 3.. data
# (NPU_FACTS 4, from aiecc's kernels.json and AIEDmaToNpu.cpp's arg_idx = 3 + i).
INSTR_ARG = 1
FIRST_DATA_ARG = 3

# The manifest's own hash: sha256 of its canonical JSON without this key, so an edit to any field
# (params, buffers, files, ...) is caught even when cache_key is left intact.
CONTENT_KEY = "content_sha256"

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ROLES = ("design", "core_source", "host_core", "core_object", "xclbin", "insts", "report")
DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
          "float64")
REBUILD = "rebuild the artifact with `invoke build`"

_STRINGS: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_STRING_LIST: Schema = {"type": "array", "items": {"type": "string"}}
_COUNT: Schema = {"type": "integer", "minimum": 0}
BUFFER_SCHEMA: Schema = {
    "type": "object",
    "required": ["name", "dtype", "shape", "direction", "seq_index"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "dtype": {"enum": list(DTYPES)},
        "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
        "bytes": _COUNT,
        "direction": {"enum": ["in", "out"]},
        "seq_index": _COUNT,
        "arg_index": _COUNT,
    },
}
#: what `Manifest.to_json` writes; keys a later npukit adds are tolerated, known keys are typed
MANIFEST_SCHEMA: Schema = {
    "type": "object",
    "required": ["schema", "kernel", "variant", "device", "params", "buffers", "files",
                 "emulation_only", CONTENT_KEY],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "kernel": {"type": "string"},
        "variant": {"type": "string"},
        "device": {"type": "string", "minLength": 1},
        "params": {"type": "object"},
        "buffers": {"type": "array", "minItems": 1, "items": BUFFER_SCHEMA},
        "files": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["sha256", "bytes", "role"],
                "properties": {
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "bytes": _COUNT,
                    "role": {"enum": list(ROLES)},
                },
            },
        },
        "emulation_only": {"type": "boolean"},
        "core_symbols": _STRING_LIST,
        "host_libraries": _STRINGS,
        "n_insts_words": {"type": ["integer", "null"], "minimum": 0},
        "alloc_scheme": {"type": "string"},
        "kernel_name": {"type": "string", "minLength": 1},
        "tools": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        "core_build": _STRINGS,
        "source_hashes": _STRINGS,
        "cache_key": {"type": "string"},
        "notes": _STRING_LIST,
        "content_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "bo_layout": {"type": "object"},
    },
}


@dataclass(frozen=True)
class BufferSpec:
    """One host buffer: a runtime-sequence argument bound at XRT kernel argument `arg_index`."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    direction: str  # "in" or "out"
    seq_index: int

    @property
    def arg_index(self) -> int:
        return FIRST_DATA_ARG + self.seq_index

    @property
    def nbytes(self) -> int:
        import numpy as np

        return int(np.dtype(self.dtype).itemsize * _prod(self.shape))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "bytes": self.nbytes,
            "direction": self.direction,
            "seq_index": self.seq_index,
            "arg_index": self.arg_index,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BufferSpec:
        """A buffer from its manifest entry; the entry must fit BUFFER_SCHEMA."""
        problem = check(d, BUFFER_SCHEMA)
        if problem:
            raise ArtifactError(f"buffer entry {problem}")
        spec = cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]),
                   direction=d["direction"], seq_index=d["seq_index"])
        if d.get("bytes", spec.nbytes) != spec.nbytes or d.get(
                "arg_index", spec.arg_index) != spec.arg_index:
            raise ArtifactError(f"buffer {spec.name!r}: bytes or arg_index disagree with its shape")
        return spec


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def baseline_bo_layout(buffers: list[BufferSpec]) -> dict[str, Any]:
    """The baseline BO layout: instr cacheable in group(1), data host_only in group(3+i)."""
    return {
        "name": "baseline",
        "instr": {"arg_index": INSTR_ARG, "flags": "cacheable"},
        "data": [
            {"name": b.name, "arg_index": b.arg_index, "flags": "host_only"} for b in buffers
        ],
    }


@dataclass
class Manifest:
    """The parsed manifest of one artifact directory."""

    kernel: str
    variant: str
    device: str
    params: dict[str, Any]
    buffers: list[BufferSpec]
    files: dict[str, dict[str, Any]]  # file name -> {"sha256", "bytes", "role"}
    emulation_only: bool
    core_symbols: list[str] = field(default_factory=list)
    host_libraries: dict[str, str] = field(default_factory=dict)  # link_with name -> host .so
    n_insts_words: int | None = None
    # aiecc's --alloc-scheme the build placed the core buffers with (codegen/banks.py)
    alloc_scheme: str = ""
    kernel_name: str = KERNEL_NAME
    tools: dict[str, Any] = field(default_factory=dict)
    #: the core code path (scalar | vector) and what compiled it for the host and for the AIE
    core_build: dict[str, str] = field(default_factory=dict)
    source_hashes: dict[str, str] = field(default_factory=dict)
    cache_key: str = ""
    notes: list[str] = field(default_factory=list)
    # sha256 of the manifest.json bytes this was loaded from ("" when made in memory); what a
    # test-hw report is bound to. Not part of the manifest's JSON.
    sha256: str = field(default="", compare=False)

    @property
    def bo_layout(self) -> dict[str, Any]:
        return baseline_bo_layout(self.buffers)

    @property
    def inputs(self) -> list[BufferSpec]:
        return [b for b in self.buffers if b.direction == "in"]

    @property
    def outputs(self) -> list[BufferSpec]:
        return [b for b in self.buffers if b.direction == "out"]

    def file_for(self, role: str) -> str | None:
        """The file name holding `role` (e.g. "xclbin"), or None if the artifact has none."""
        for name, meta in self.files.items():
            if meta.get("role") == role:
                return name
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["sha256"]
        d["buffers"] = [b.to_json() for b in self.buffers]
        d["bo_layout"] = self.bo_layout
        body = {"schema": SCHEMA_VERSION, **d}
        return {**body, CONTENT_KEY: content_digest(body)}

    @classmethod
    def from_json(cls, d: Any, where: str = MANIFEST_NAME) -> Manifest:
        """A manifest from its JSON; anything off MANIFEST_SCHEMA, or inconsistent, is refused."""
        if isinstance(d, dict) and d.get("schema") != SCHEMA_VERSION:
            raise ArtifactError(
                f"{where}: schema {d.get('schema')!r} is not {SCHEMA_VERSION}; "
                "rebuild the artifact with this npukit"
            )
        problem = check(d, MANIFEST_SCHEMA)
        if problem:
            raise ArtifactError(f"{where}: {problem}; {REBUILD}")
        if d.get(CONTENT_KEY) != content_digest(d):
            raise ArtifactError(
                f"{where}: edited after the build (its content no longer matches its "
                f"{CONTENT_KEY}); {REBUILD}"
            )
        try:
            buffers = [BufferSpec.from_json(b) for b in d["buffers"]]
        except ArtifactError as e:
            raise ArtifactError(f"{where}: {e}; {REBUILD}") from None
        m = cls(
            kernel=d["kernel"],
            variant=d["variant"],
            device=d["device"],
            params=dict(d["params"]),
            buffers=buffers,
            files={k: dict(v) for k, v in d["files"].items()},
            emulation_only=d["emulation_only"],
            core_symbols=list(d.get("core_symbols", [])),
            host_libraries=dict(d.get("host_libraries", {})),
            n_insts_words=d.get("n_insts_words"),
            alloc_scheme=d.get("alloc_scheme", ""),
            kernel_name=d.get("kernel_name", KERNEL_NAME),
            tools=dict(d.get("tools", {})),
            core_build=dict(d.get("core_build", {})),
            source_hashes=dict(d.get("source_hashes", {})),
            cache_key=d.get("cache_key", ""),
            notes=list(d.get("notes", [])),
        )
        for what in (m.kernel, m.variant):
            if not SAFE_NAME.fullmatch(what) or ".." in what:
                raise ArtifactError(f"{where}: kernel/variant name {what!r} is not a plain name")
        if [b.seq_index for b in buffers] != list(range(len(buffers))):
            raise ArtifactError(f"{where}: buffers are not in runtime-sequence order")
        if d.get("bo_layout") not in (None, m.bo_layout):
            raise ArtifactError(f"{where}: bo_layout disagrees with the buffers")
        for name in m.files:
            if Path(name).name != name or name in ("", ".", ".."):
                raise ArtifactError(f"{where}: file entry {name!r} is not a plain file name")
        if not m.emulation_only and (m.file_for("xclbin") is None or m.file_for("insts") is None):
            raise ArtifactError(f"{where}: a hardware artifact must list an xclbin and insts.bin")
        return m


def content_digest(d: dict[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON (sorted keys, no spaces), its own hash left out."""
    body = {k: v for k, v in d.items() if k != CONTENT_KEY}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path, role: str) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "role": role}


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write `manifest.json` atomically into `directory`."""
    return write_atomic(directory / MANIFEST_NAME,
                        json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")


def load_manifest(directory: Path, *, verify: bool = True) -> Manifest:
    """Load an artifact directory's manifest; with `verify`, check every file's size and sha256."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir() or not path.exists():
        raise ArtifactError(
            f"{path}: no manifest; is this an artifact directory? build it with `invoke build`"
        )
    # The version first, so an older npukit's manifest says so rather than which key differs.
    raw = read_bytes(path, fix=REBUILD)  # read once: parsed, and hashed for test-hw's binding
    data = parse_json(raw, {"type": "object"}, fix=REBUILD, name=str(path))
    m = Manifest.from_json(data, where=str(path))
    m.sha256 = hashlib.sha256(raw).hexdigest()
    if verify:
        verify_files(directory, m)
    return m


def verify_files(directory: Path, m: Manifest) -> None:
    """Every file the manifest lists exists with its recorded size and sha256."""
    for name, meta in sorted(m.files.items()):
        f = directory / name
        if not f.is_file():
            raise ArtifactError(f"{f}: listed in the manifest but missing; rebuild the artifact")
        if f.stat().st_size != int(meta["bytes"]) or sha256_file(f) != meta["sha256"]:
            raise ArtifactError(
                f"{f}: content does not match its manifest hash (stale or edited); "
                "rebuild the artifact with `invoke build`"
            )

"""Finds the tools a build needs (host C++ compiler, aiecc, Peano, bootgen, XRT) and who they are.

A tool's identity (resolved path, size, mtime, version) goes into every cache key that depends
on it, so replacing a compiler rebuilds what it made.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codegen.owned import clear, ensure_dir
from runtime.atomic import write_atomic
from runtime.errors import ArtifactError, ToolchainError
from runtime.loader import Schema, load_json

INSTALL_HINTS = {
    "c++": "install a host C++ compiler: `apt-get install g++` (or set CXX)",
    "aiecc": "install mlir-aie: `pip install mlir_aie -f <mlir-aie releases page>` "
    "(pin the release; it is not on PyPI)",
    "peano": "install Peano (llvm-aie): `pip install llvm-aie -f <llvm-aie nightly page>`, "
    "or pass --peano DIR / set PEANO_INSTALL_DIR",
    "bootgen": "`apt-get install xilinx-bootgen` (aiecc packs the PDI with it)",
    "xrt": "install XRT with pyxrt and the amdxdna driver, then `source /opt/xilinx/xrt/setup.sh`",
}


@dataclass(frozen=True)
class Tool:
    """One located tool: where it is, what version it says it is, and a hash of its identity."""

    name: str
    path: str
    version: str
    executable: str = ""  # the binary behind `path` when `path` is an install directory
    args: tuple[str, ...] = ()  # words after the program, e.g. CXX="ccache g++" gives ("g++",)

    @property
    def command(self) -> list[str]:
        return [self.path, *self.args]

    @property
    def identity(self) -> str:
        exe = Path(self.executable or self.path)
        raw = f"{self.name}|{self.path}|{self.version}|{_stat_id(exe)}"
        for word in self.args:  # a wrapper's compiler: replacing it must rebuild too
            found = shutil.which(word) if not word.startswith("-") else None
            raw += f"|{word}|{_stat_id(Path(found)) if found else ''}"
        return hashlib.sha256(raw.encode()).hexdigest()


def _stat_id(p: Path) -> str:
    try:
        st = p.resolve().stat()
    except OSError:
        return "missing"
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


@dataclass
class Toolchain:
    """What this machine has for a build; None where a tool is missing."""

    cxx: Tool | None
    aiecc: Tool | None
    peano: Tool | None  # path is Peano's install directory; version from its clang++
    bootgen: Tool | None
    mlir_aie_include: str | None
    pyxrt: str | None
    cxx_problem: str = field(default="")  # why $CXX cannot be used, when it is set but wrong

    @property
    def missing_for_hw(self) -> list[str]:
        return [name for name, tool in (("aiecc", self.aiecc), ("peano", self.peano)) if not tool]

    def hw_missing_line(self) -> str:
        """One line saying what is missing for the xclbin and how to get it."""
        names = {"aiecc": "aiecc (mlir-aie)", "peano": "Peano (llvm-aie)"}
        missing = " and ".join(names[m] for m in self.missing_for_hw)
        return (
            f"no xclbin: {missing} not found; "
            + "; ".join(INSTALL_HINTS[m] for m in self.missing_for_hw)
            + " (see `invoke doctor`)"
        )

    def describe(self) -> dict[str, dict[str, str] | None]:
        return {
            name: asdict(tool) if tool else None
            for name, tool in (
                ("cxx", self.cxx), ("aiecc", self.aiecc),
                ("peano", self.peano), ("bootgen", self.bootgen),
            )
        }


#: tools.json: `--version` answers keyed by "path|size|mtime|args"
VERSIONS_SCHEMA: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


class _VersionCache:
    """Remembers `tool --version` answers by (path, size, mtime): a cache hit runs no tool.

    The file is the build's own cache: one that is not what this class writes (bad JSON, `[]`,
    a directory in its place) is dropped and written afresh.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, str] = {}
        self.dirty = False
        if path and (path.exists() or path.is_symlink()):
            try:
                self.data = load_json(path, VERSIONS_SCHEMA, fix="it is rewritten")
            except ArtifactError:
                self.dirty = True

    def version(self, command: list[str], args: tuple[str, ...] = ("--version",)) -> str:
        exe = Path(command[0])
        st = exe.stat()
        key = f"{exe}|{st.st_size}|{st.st_mtime_ns}|{' '.join([*command[1:], *args])}"
        if key not in self.data:
            try:
                proc = subprocess.run(
                    [*command, *args], capture_output=True, text=True, timeout=60
                )
                out = (proc.stdout or proc.stderr).strip().splitlines()
                self.data[key] = out[0].strip() if out else "unknown"
            except (OSError, subprocess.TimeoutExpired):
                self.data[key] = "unknown"
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        ensure_dir(self.path.parent, self.path.parent.parent)
        if self.path.is_dir() and not self.path.is_symlink():
            clear(self.path)  # build/.cache is npukit's: a directory here is debris
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def _which(*names: str) -> Path | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found).resolve()
    return None


def _package_dir(dist: str, subdir: str) -> Path | None:
    """The directory `subdir` inside an installed wheel `dist` (e.g. llvm-aie's tree)."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        parts = Path(str(f)).parts
        if parts and parts[0] == subdir:
            return Path(str(f.locate())).parents[len(parts) - 1] / subdir
    return None


def find_peano_dir(explicit: str | None = None) -> Path | None:
    """Peano from --peano, then PEANO_INSTALL_DIR, then the llvm-aie wheel."""
    candidates: list[Path | None] = [
        Path(explicit) if explicit else None,
        Path(os.environ["PEANO_INSTALL_DIR"]) if os.environ.get("PEANO_INSTALL_DIR") else None,
        _package_dir("llvm-aie", "llvm-aie"),
    ]
    for c in candidates:
        if c is not None and (c / "bin" / "clang++").is_file():
            return c.resolve()
    if explicit:
        raise ToolchainError(f"--peano {explicit}: no bin/clang++ there; {INSTALL_HINTS['peano']}")
    return None


def find_mlir_aie_include() -> Path | None:
    """mlir-aie's C++ headers (aie_api) for core code: MLIR_AIE_INSTALL_DIR or the wheel."""
    env = os.environ.get("MLIR_AIE_INSTALL_DIR")
    root = Path(env) if env else _package_dir("mlir_aie", "mlir_aie")
    if root and (root / "include").is_dir():
        return (root / "include").resolve()
    return None


def discover(peano: str | None = None, cache_file: Path | None = None) -> Toolchain:
    """Locate every tool; nothing here fails for a missing tool, the caller decides."""
    versions = _VersionCache(cache_file)
    cxx, cxx_problem = _host_cxx(versions)
    aiecc_path = _which("aiecc", "aiecc.py")
    peano_dir = find_peano_dir(peano)
    bootgen_path = _which("bootgen")
    tc = Toolchain(
        cxx=cxx,
        aiecc=Tool("aiecc", str(aiecc_path), versions.version([str(aiecc_path)]))
        if aiecc_path else None,
        peano=Tool("peano", str(peano_dir), versions.version([str(peano_dir / "bin" / "clang++")]),
                   str((peano_dir / "bin" / "clang++").resolve()))
        if peano_dir else None,
        bootgen=Tool("bootgen", str(bootgen_path),
                     versions.version([str(bootgen_path)], ("-help",)))
        if bootgen_path else None,
        mlir_aie_include=str(find_mlir_aie_include() or "") or None,
        pyxrt=_pyxrt_location(),
        cxx_problem=cxx_problem,
    )
    versions.save()
    return tc


def _host_cxx(versions: _VersionCache) -> tuple[Tool | None, str]:
    """The host C++ compiler: $CXX as a command line when set (e.g. "ccache g++"), else the
    first of c++, g++, clang++ on PATH; with the reason when $CXX names nothing usable."""
    env = os.environ.get("CXX", "").strip()
    if not env:
        found = _which("c++", "g++", "clang++")
        return (Tool("c++", str(found), versions.version([str(found)])) if found else None), ""
    try:
        words = shlex.split(env)
    except ValueError as e:
        return None, f"CXX={env!r} is not a valid command line ({e}); fix or unset CXX"
    exe = _which(words[0])
    if exe is None:
        return None, (f"CXX={env!r}: {words[0]} is not an executable on PATH; set CXX to an "
                      "installed C++ compiler, or unset it to use c++/g++/clang++")
    version = versions.version([str(exe), *words[1:]])
    return Tool("c++", str(exe), version, args=tuple(words[1:])), ""


def _pyxrt_location() -> str | None:
    try:
        spec = importlib.util.find_spec("pyxrt")
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


def require_cxx(tc: Toolchain) -> Tool:
    if tc.cxx is None:
        raise ToolchainError(tc.cxx_problem
                             or f"no host C++ compiler found; {INSTALL_HINTS['c++']}")
    return tc.cxx


def doctor_rows(tc: Toolchain) -> list[tuple[str, str, str]]:
    """(tool, status, detail-or-fix) rows for `invoke doctor`."""
    rows: list[tuple[str, str, str]] = []

    def row(name: str, tool: Tool | None, needed_for: str, hint: str) -> None:
        if tool:
            rows.append((name, "found", f"{' '.join(tool.command)} ({tool.version})"))
        else:
            rows.append((name, "missing", f"needed for {needed_for}: {hint}"))

    row("host c++", tc.cxx, "every build (host core, emulator)",
        tc.cxx_problem or INSTALL_HINTS["c++"])
    row("aiecc", tc.aiecc, "the xclbin", INSTALL_HINTS["aiecc"])
    row("peano", tc.peano, "the aie2 core object", INSTALL_HINTS["peano"])
    row("bootgen", tc.bootgen, "aiecc's PDI packing", INSTALL_HINTS["bootgen"])
    rows.append((
        "mlir-aie include",
        "found" if tc.mlir_aie_include else "missing",
        tc.mlir_aie_include
        or "optional: aie_api headers for vectorised cores (MLIR_AIE_INSTALL_DIR)",
    ))
    rows.append((
        "pyxrt",
        "found" if tc.pyxrt else "missing",
        tc.pyxrt or f"needed for `invoke test-hw --backend xrt`: {INSTALL_HINTS['xrt']}",
    ))
    accel = Path("/dev/accel/accel0")
    rows.append((
        "NPU device",
        "found" if accel.exists() else "missing",
        str(accel) if accel.exists() else "no /dev/accel/accel0: the amdxdna driver is not loaded "
        "or this machine has no NPU (`xrt-smi examine`)",
    ))
    return rows

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
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.errors import ToolchainError

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

    @property
    def identity(self) -> str:
        p = Path(self.executable or self.path)
        st = p.stat() if p.exists() else None
        raw = (f"{self.name}|{self.path}|{p}|{self.version}|"
               f"{st and st.st_size}|{st and st.st_mtime_ns}")
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class Toolchain:
    """What this machine has for a build; None where a tool is missing."""

    cxx: Tool | None
    aiecc: Tool | None
    peano: Tool | None  # path is Peano's install directory; version from its clang++
    bootgen: Tool | None
    mlir_aie_include: str | None
    pyxrt: str | None

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


class _VersionCache:
    """Remembers `tool --version` answers by (path, size, mtime): a cache hit runs no tool."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, str] = {}
        if path and path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}
        self.dirty = False

    def version(self, exe: Path, args: tuple[str, ...] = ("--version",)) -> str:
        st = exe.stat()
        key = f"{exe}|{st.st_size}|{st.st_mtime_ns}|{' '.join(args)}"
        if key not in self.data:
            try:
                proc = subprocess.run(
                    [str(exe), *args], capture_output=True, text=True, timeout=60
                )
                out = (proc.stdout or proc.stderr).strip().splitlines()
                self.data[key] = out[0].strip() if out else "unknown"
            except (OSError, subprocess.TimeoutExpired):
                self.data[key] = "unknown"
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if self.path and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


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
    cxx_path = _which(os.environ.get("CXX", "c++"), "g++", "clang++")
    aiecc_path = _which("aiecc", "aiecc.py")
    peano_dir = find_peano_dir(peano)
    bootgen_path = _which("bootgen")
    tc = Toolchain(
        cxx=Tool("c++", str(cxx_path), versions.version(cxx_path)) if cxx_path else None,
        aiecc=Tool("aiecc", str(aiecc_path), versions.version(aiecc_path))
        if aiecc_path else None,
        peano=Tool("peano", str(peano_dir), versions.version(peano_dir / "bin" / "clang++"),
                   str((peano_dir / "bin" / "clang++").resolve()))
        if peano_dir else None,
        bootgen=Tool("bootgen", str(bootgen_path), versions.version(bootgen_path, ("-help",)))
        if bootgen_path else None,
        mlir_aie_include=str(find_mlir_aie_include() or "") or None,
        pyxrt=_pyxrt_location(),
    )
    versions.save()
    return tc


def _pyxrt_location() -> str | None:
    try:
        spec = importlib.util.find_spec("pyxrt")
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


def require_cxx(tc: Toolchain) -> Tool:
    if tc.cxx is None:
        raise ToolchainError(f"no host C++ compiler found; {INSTALL_HINTS['c++']}")
    return tc.cxx


def doctor_rows(tc: Toolchain) -> list[tuple[str, str, str]]:
    """(tool, status, detail-or-fix) rows for `invoke doctor`."""
    rows: list[tuple[str, str, str]] = []

    def row(name: str, tool: Tool | None, needed_for: str, hint: str) -> None:
        if tool:
            rows.append((name, "found", f"{tool.path} ({tool.version})"))
        else:
            rows.append((name, "missing", f"needed for {needed_for}: {hint}"))

    row("host c++", tc.cxx, "every build (host core, emulator)", INSTALL_HINTS["c++"])
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

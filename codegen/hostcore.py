"""The core source compiled for the host: the shared library the emulator and the tests call."""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import ToolchainError

HOST_FLAGS = ("-O2", "-std=c++20", "-fPIC", "-fno-strict-aliasing")


def host_library_name(kernel: str) -> str:
    return f"lib{kernel}.host.so"


@dataclass(frozen=True)
class HostBuild:
    """What compiling the core source for the host produced besides the library."""

    commands: list[list[str]]
    #: bytes of stack frame per function, from -fstack-usage. The host frames stand in for the
    #: aie2 ones (same source, same locals) until Peano's own report is read.
    frames: dict[str, int]


def compile_host_core(compiler: list[str], src_dir: Path, sources: list[str], out: Path,
                      flags: tuple[str, ...] = ()) -> HostBuild:
    """Compile `sources` (headers beside them, plus `flags`: defines and include dirs) with the
    command `compiler` (e.g. ["ccache", "g++"]) and link them into the shared library `out`."""
    commands: list[list[str]] = []
    frames: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as work:
        objects = []
        for source in sources:
            obj = Path(work) / (Path(source).stem + ".o")
            commands.append([*compiler, *HOST_FLAGS, *flags, "-fstack-usage", f"-I{src_dir}",
                             "-c", str(src_dir / source), "-o", str(obj)])
            _run(commands[-1], source, [obj, obj.with_suffix(".su")])
            frames.update(_frames(obj.with_suffix(".su")))
            objects.append(str(obj))
        commands.append([*compiler, "-shared", *objects, "-o", str(out)])
        _run(commands[-1], ", ".join(sources), [out])
    return HostBuild(commands, frames)


def _run(cmd: list[str], what: str, produces: list[Path]) -> None:
    """Run one compiler step; it must exit 0 and write each of `produces`."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise ToolchainError(f"host compile of {what}: cannot run {cmd[0]} ({e.strerror}); "
                             "set CXX to an installed C++ compiler") from None
    if proc.returncode != 0:
        raise ToolchainError(f"host compile of {what} failed ({cmd[0]} exit {proc.returncode}):\n"
                             f"{proc.stderr.strip()}")
    missing = [p.suffix for p in produces if not p.is_file()]
    if missing:
        raise ToolchainError(
            f"host compile of {what}: {cmd[0]} exited 0 but wrote no {' or '.join(missing)} "
            "file; is CXX a C++ compiler that understands "
            "-c, -o, -shared and -fstack-usage (g++ or clang++)?")


def _frames(report: Path) -> dict[str, int]:
    """GCC/Clang -fstack-usage lines: `file:line:col:signature<TAB>bytes<TAB>kind`."""
    frames: dict[str, int] = {}
    for line in report.read_text().splitlines():
        where, size, _kind = line.rsplit("\t", 2)
        name = where.rsplit(":", 1)[-1].split("(")[0].split()[-1]
        frames[name] = max(frames.get(name, 0), int(size))
    return frames


class HostCore:
    """Calls into a host-compiled core library: each array argument passes its data pointer."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))

    def call(self, symbol: str, *args: np.ndarray | int) -> None:
        """Call `symbol` with arrays as data pointers and Python ints as int32 scalars."""
        fn = getattr(self._lib, symbol)
        fn.restype = None
        conv: list[ctypes.c_void_p | ctypes.c_int32] = []
        for a in args:
            if isinstance(a, np.ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{symbol}: argument is not contiguous")
                conv.append(ctypes.c_void_p(a.ctypes.data))
            else:
                conv.append(ctypes.c_int32(a))
        fn(*conv)

    def run_tiles(self, symbol: str, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """`symbol(inputs[t], outputs[t])` for each row t, as a core's loop does per element."""
        for x, y in zip(inputs, outputs, strict=True):
            self.call(symbol, np.ascontiguousarray(x), y)

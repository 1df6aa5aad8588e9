"""The core source compiled for the host: the shared library the emulator and the tests call."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np

from runtime.errors import ToolchainError

HOST_FLAGS = ("-O2", "-std=c++20", "-shared", "-fPIC", "-fno-strict-aliasing")


def host_library_name(kernel: str) -> str:
    return f"lib{kernel}.host.so"


def compile_host_core(compiler: str, src_dir: Path, sources: list[str], out: Path) -> list[str]:
    """Compile `sources` (in `src_dir`, headers beside them) into the shared library `out`."""
    cmd = [compiler, *HOST_FLAGS, f"-I{src_dir}", *(str(src_dir / s) for s in sources),
           "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(
            f"host compile of {', '.join(sources)} failed ({compiler} exit {proc.returncode}):\n"
            f"{proc.stderr.strip()}"
        )
    return cmd


def stack_frames(compiler: str, src_dir: Path, sources: list[str], work: Path) -> dict[str, int]:
    """Each function's stack frame in bytes, from the host compiler's -fstack-usage report.

    The host frame stands in for the aie2 one (same source, same locals) until Peano's own
    report is read: a core whose frame outgrows its `stack_size` silently corrupts its buffers.
    """
    frames: dict[str, int] = {}
    for source in sources:
        obj = work / (Path(source).stem + ".o")
        cmd = [compiler, *HOST_FLAGS[:2], "-fPIC", "-fstack-usage", f"-I{src_dir}", "-c",
               str(src_dir / source), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"host compile of {source} for its stack usage failed:\n"
                                 f"{proc.stderr.strip()}")
        for line in obj.with_suffix(".su").read_text().splitlines():
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

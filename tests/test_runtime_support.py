"""Shared helpers for the runtime and test-hw tests: the fake pyxrt and a stand-in kernel.

The stand-in is an add-one design over 64 int8 values (plus two deliberately broken cores: one
writes a constant, one ignores its input), compiled for the host with `cc`. The emu backend and
the fake device both run it with runtime.emulator.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from runtime.emu_backend import EmuBackend
from runtime.kernel import NpuKernel
from runtime.manifest import BufferSpec
from runtime.xrt import XrtBackend

FAKES = Path(__file__).parent / "fakes"
N = 64
STANDIN_C = """
#include <stdint.h>
#define N 64
void add_one(const int8_t *in, int8_t *out) {
  for (int i = 0; i < N; i++) out[i] = (int8_t)(in[i] + 1);
}
void constant(const int8_t *in, int8_t *out) {
  (void)in;
  for (int i = 0; i < N; i++) out[i] = 7;
}
void ignore_input(const int8_t *in, int8_t *out) {
  (void)in;
  for (int i = 0; i < N; i++) out[i] = (int8_t)(3 * i);
}
"""


def install_fake_pyxrt(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Make `import pyxrt` give the fake (reset), for this test only."""
    monkeypatch.syspath_prepend(str(FAKES))
    forget_pyxrt(monkeypatch)
    import pyxrt

    pyxrt.reset()
    return pyxrt


def forget_pyxrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop any imported pyxrt now; whatever was there comes back after the test."""
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    del sys.modules["pyxrt"]


def hide_pyxrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import pyxrt` fail, as on a machine without XRT."""
    monkeypatch.setitem(sys.modules, "pyxrt", None)


@functools.cache
def standin_library() -> Path:
    """The stand-in cores compiled for the host (once per test session)."""
    work = Path(tempfile.mkdtemp(prefix="npukit-standin-"))
    atexit.register(shutil.rmtree, work, True)
    (work / "standin.c").write_text(STANDIN_C)
    out = work / "libstandin.host.so"
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", str(work / "standin.c"), "-o", str(out)], check=True
    )
    return out


def standin_design(symbol: str = "add_one", order: tuple[str, str] = ("in", "out")) -> str:
    """An add-one style aie.mlir: one core calls `symbol`; `order` is the runtime-sequence order."""
    ty = f"memref<{N}xi8>"
    of = f"!aie.objectfifo<{ty}>"
    sv = f"!aie.objectfifosubview<{ty}>"
    fifo = {"in": "inq", "out": "outq"}
    copies = "\n".join(
        f"      aiex.npu.dma_memcpy_nd(%{name}[0, 0, 0, 0][1, 1, 1, {N}][0, 0, 0, 1]) "
        f"{{metadata = @{fifo[name]}, id = {int(name == 'in')} : i64}} : {ty}"
        for name in order
    )
    return f"""module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %core = aie.tile(0, 2)
    aie.objectfifo @inq(%shim, {{%core}}, 2 : i32) : {of}
    aie.objectfifo @outq(%core, {{%shim}}, 2 : i32) : {of}
    func.func private @{symbol}({ty}, {ty}) attributes {{link_with = "standin.o"}}
    aie.core(%core) {{
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %forever = arith.constant 9223372036854775807 : index
      scf.for %i = %c0 to %forever step %c1 {{
        %a = aie.objectfifo.acquire @inq(Consume, 1) : {sv}
        %x = aie.objectfifo.subview.access %a[0] : {sv} -> {ty}
        %b = aie.objectfifo.acquire @outq(Produce, 1) : {sv}
        %y = aie.objectfifo.subview.access %b[0] : {sv} -> {ty}
        func.call @{symbol}(%x, %y) : ({ty}, {ty}) -> ()
        aie.objectfifo.release @inq(Consume, 1)
        aie.objectfifo.release @outq(Produce, 1)
      }}
      aie.end
    }} {{stack_size = 1024 : i32}}
    aie.runtime_sequence({", ".join(f"%{n} : {ty}" for n in order)}) {{
{copies}
      aiex.npu.dma_wait {{symbol = @outq}}
    }}
  }}
}}
"""


def standin_buffers(order: tuple[str, str] = ("in", "out")) -> list[BufferSpec]:
    return [BufferSpec(name, "int8", (N,), name, i) for i, name in enumerate(order)]


def make_standin(
    directory: Path,
    symbol: str = "add_one",
    order: tuple[str, str] = ("in", "out"),
    **kwargs: Any,
) -> Path:
    """A complete stand-in artifact directory the fake pyxrt and the emulator can run."""
    from pyxrt.artifact import make_artifact  # needs install_fake_pyxrt first

    return make_artifact(
        directory,
        standin_buffers(order),
        design=standin_design(symbol, order),
        host_libraries={"standin.o": standin_library()},
        **kwargs,
    )


class StandinSpec:
    """The stand-in's kernel spec: seeded inputs, edge cases and the add-one golden model."""

    def __init__(self, params: dict | None = None) -> None:
        self.params = dict(params or {})

    def random_inputs(self, seed: int) -> list[np.ndarray]:
        return [np.random.default_rng(seed).integers(-128, 128, N, dtype=np.int8)]

    def edge_inputs(self) -> list[tuple[str, list[np.ndarray]]]:
        return [(label, [np.full(N, v, dtype=np.int8)]) for label, v in
                (("zeros", 0), ("max", 127), ("min", -128))]

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [(inputs[0].astype(np.int16) + 1).astype(np.int8)]

    def stale_param_files(self, recorded: dict[str, str]) -> list[str]:
        return []  # the stand-in has no data-file parameters

    def accuracy_problems(self, inputs: list[np.ndarray]) -> list[str]:
        """The float reference of a wrapping add-one: exact agreement is the target."""
        reference = np.mod(inputs[0].astype(np.float64) + 1 + 128, 256) - 128
        return [] if np.array_equal(self.golden(inputs)[0], reference) else ["golden != ref"]


def standin_spec_from_params(kernel: str, params: dict | None = None) -> StandinSpec:
    return StandinSpec(params)



def xrt_of(kernel: NpuKernel) -> XrtBackend:
    assert isinstance(kernel.backend, XrtBackend)
    return kernel.backend


def emu_of(kernel: NpuKernel) -> EmuBackend:
    assert isinstance(kernel.backend, EmuBackend)
    return kernel.backend

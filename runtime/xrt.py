"""The pyxrt backend: opens the device once, allocates every BO once, reuses one run per call.

Every quirk handled here is in NPU_FACTS 5; the comments name the line. pyxrt is imported lazily
so that the rest of the runtime works on machines without XRT.
"""

from __future__ import annotations

import re
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ArtifactError, RunError, ToolchainError
from runtime.manifest import FIRST_DATA_ARG, INSTR_ARG, Manifest

OPCODE = 3  # argument 0 of MLIR_AIE, as mlir-aie's own harness passes it
COMPLETED = 4  # ert.h ert_cmd_state: RUNNING = 3, COMPLETED = 4, ERROR = 5, TIMEOUT = 8
RUNNING = 3
TIMEOUT = 8
DEFAULT_TIMEOUT_MS = 10_000
TIMEOUT_MAX_MS = 2**32 - 1  # pyxrt binds run.wait(unsigned int timeout_ms)
SYS_ACCEL = Path("/sys/class/accel")  # one entry per accel device node, e.g. accel0
NPU_DRIVER = "amdxdna"
# BO and device-heap mappings are locked (MAP_LOCKED), so a finite memlock limit makes mmap
# fail with EAGAIN, which XRT prints as "mmap(addr=..., len=...) failed (err=-11): Resource
# temporarily unavailable" (XRT PR #9132; err=11 from older XRT) or, in other paths, ENOMEM.
MEMLOCK_RE = re.compile(
    r"failed \(err=-?(?:11|12)\)|Resource temporarily unavailable|Cannot allocate memory"
)
MEMLOCK_FIX = (
    "raise the memlock limit (`ulimit -l unlimited`, or `memlock unlimited` in "
    "/etc/security/limits.conf): XRT maps every BO and the device heap locked"
)
HWCTX_LIMITS = "6 on Phoenix, 16 on Strix"
BO_FLAG_MESSAGE = (
    "this BO flag is not supported by the NPU driver; data BOs must be host_only, "
    "the instruction BO cacheable"
)


class NoDeviceError(ToolchainError):
    """pyxrt is importable but no NPU answers."""


class NpuSetupError(RunError):
    """An NPU is there but set up wrongly (memlock limit, XRT): never a reason to emulate."""


def check_timeout_ms(value: object) -> int:
    """`timeout_ms` as XRT's `run.wait` takes it: whole milliseconds, 0 meaning wait forever."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not 0 <= value <= TIMEOUT_MAX_MS
    ):
        raise RunError(
            f"timeout_ms={value!r}: expected whole milliseconds 0..{TIMEOUT_MAX_MS} "
            "(0 waits forever, as XRT's run.wait(0)), e.g. timeout_ms=10000"
        )
    return int(value)


def npu_device_node() -> str:
    """The accel device node the amdxdna driver made (e.g. /dev/accel/accel0), or ''."""
    entries = sorted(SYS_ACCEL.glob("accel*")) if SYS_ACCEL.is_dir() else []
    for entry in entries:
        if (entry / "device" / "driver").resolve().name == NPU_DRIVER:
            return f"/dev/accel/{entry.name}"
    return ""


def refuse_fallback_if_npu(error: ToolchainError) -> None:
    """`auto` falls back to the emulator only where no NPU is present: else this raises."""
    node = npu_device_node()
    if node:
        raise NpuSetupError(
            f"an NPU is present ({node}) but cannot be used: {str(error).splitlines()[0]}; "
            "fix that, or pass backend='emu' to run on the emulator on purpose"
        )


@dataclass(frozen=True)
class BoLayout:
    """Which kernel argument's group each BO is allocated in, and with which flags."""

    name: str
    instr_group: int
    data_groups: tuple[int, ...]
    instr_flags: str = "cacheable"
    data_flags: str = "host_only"
    warning: str = ""


def layout_for(name: str, n_buffers: int) -> BoLayout:
    """The named BO layout for `n_buffers` data buffers: "baseline" or "legacy"."""
    if name == "baseline":
        # NPU_FACTS 5: allocate each BO in the group of the argument it is passed at
        groups = tuple(FIRST_DATA_ARG + i for i in range(n_buffers))
        return BoLayout("baseline", INSTR_ARG, groups)
    if name == "legacy":
        return BoLayout(
            "legacy",
            INSTR_ARG,
            tuple(2 + i for i in range(n_buffers)),
            warning=(
                "BO layout 'legacy' (groups 1, 2, 3 as in the original investigation) is for "
                "comparison only: XRT clones every BO whose group's bank differs from its "
                "argument's, once, when the argument is set. group_id(2) is the ninstr scalar "
                "(no bank), so the first data buffer is always cloned: as an input, every call "
                "computes on the copy taken at load (zeros), whatever is passed; as an output, "
                "the kernel writes the clone and the caller reads zeros"
            ),
        )
    raise RunError(f"unknown BO layout {name!r}; choose 'baseline' or 'legacy'")


def import_pyxrt() -> types.ModuleType:
    """XRT's Python binding, or a ToolchainError saying how to get it."""
    try:
        import pyxrt
    except ImportError as e:
        raise ToolchainError(
            f"pyxrt is not importable ({e}); install XRT and run "
            "`source /opt/xilinx/xrt/setup.sh` to put its pyxrt on PYTHONPATH"
        ) from None
    return pyxrt


def open_device(pyxrt: Any, index: int = 0) -> Any:
    """Device `index`, or a NoDeviceError naming the driver and how to check it."""
    try:
        return pyxrt.device(index)
    except Exception as e:
        if MEMLOCK_RE.search(str(e)):
            # XRT PR #9132: a failing device-heap mmap used to be reported as "No devices found"
            raise NpuSetupError(
                f"the NPU could not map its device memory (pyxrt.device({index}): {e}); "
                f"{MEMLOCK_FIX}"
            ) from None
        raise NoDeviceError(
            f"no NPU found (pyxrt.device({index}): {e}); it needs the amdxdna driver "
            "(/dev/accel/accel0) and a passing `xrt-smi validate`"
        ) from None


def driver_error(what: str, e: Exception) -> RunError:
    """Translate the driver's error codes into what to change."""
    text = str(e)
    # NPU_FACTS 5: amdxdna refuses `normal` with err=95, device_only/p2p/svm with err=22
    if "err=95" in text or "err=22" in text:
        return RunError(f"{what}: {BO_FLAG_MESSAGE} (driver said: {text})")
    if MEMLOCK_RE.search(text):
        # NPU_FACTS 5: BO mmaps use MAP_LOCKED, so a finite memlock limit fails allocations
        return NpuSetupError(f"{what} failed: {text}; {MEMLOCK_FIX}")
    return RunError(f"{what} failed: {text}")


def _with_fix(error: RunError) -> RunError:
    """A start or wait failure, with what to do next appended to its line."""
    return type(error)(f"{error}; the kernel is marked failed, reload it")


def check_xclbin(info: Any, manifest: Manifest, kernel_name: str | None = None) -> None:
    """The xclbin declares the kernel (`kernel_name`, default the manifest's) and connects every
    argument the host will bind."""
    wanted_name = kernel_name or manifest.kernel_name
    if info.kernel_name != wanted_name:
        found = ", ".join(repr(k) for k in info.kernel_names) or "none"
        raise ArtifactError(
            f"the xclbin has no kernel {wanted_name!r}, which the manifest names "
            f"(it has {found}); rebuild the artifact"
        )
    wanted = [(INSTR_ARG, "instr", "SRAM")]
    wanted += [(b.arg_index, b.name, "HOST") for b in manifest.buffers]
    for arg, what, tag in wanted:
        bank = info.connectivity.get(arg)
        if bank is None:
            # mlir-aie #3248: passing more BOs than the xclbin declares crashes XRT
            raise ArtifactError(
                f"xclbin connects no memory to argument {arg} ({what}); "
                "the design and the xclbin disagree, rebuild the artifact"
            )
        if info.mem_banks[bank] != tag:
            raise ArtifactError(
                f"xclbin puts argument {arg} ({what}) in bank {bank} "
                f"({info.mem_banks[bank]}), expected {tag}"
            )


def insts_words(insts_path: Path, manifest: Manifest) -> int:
    """The instruction stream's length in 32-bit words (ninstr), checked against the manifest."""
    from runtime.insts import read_insts

    n_words = int(read_insts(insts_path).n_words)
    if manifest.n_insts_words not in (None, n_words):
        raise ArtifactError(
            f"{insts_path}: {n_words} words, the manifest says {manifest.n_insts_words}"
        )
    return n_words


def open_hw_context(xrt: Any, device: Any, xclbin_path: Path) -> Any:
    """Register the xclbin and open ONE hardware context on it (a device-wide, scarce slot)."""
    xb = xrt.xclbin(str(xclbin_path))
    device.register_xclbin(xb)  # NPU_FACTS 5: load_xclbin is the FPGA path
    try:
        return xrt.hw_context(device, xb.get_uuid())
    except Exception as e:
        raise RunError(
            f"could not create a hardware context ({e}); the NPU allows {HWCTX_LIMITS}, "
            "shared device-wide, and other processes may hold them: close other kernels "
            "or check `xrt-smi examine`"
        ) from None


class XrtKernelRun:
    """One kernel of an open hardware context: its instruction BO, data BOs and one reusable
    run, all made once. A context artifact holds several, one per kernel name of its xclbin."""

    def __init__(
        self,
        xrt: Any,
        device: Any,
        context: Any,
        artifact_dir: Path,
        manifest: Manifest,
        xclbin_path: Path,
        *,
        kernel_name: str | None = None,
        layout: BoLayout,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        from runtime.xclbin import read_xclbin

        self._xrt, self.device, self.context = xrt, device, context
        self.manifest = manifest
        self.kernel_name = kernel_name or manifest.kernel_name
        self.timeout_ms = timeout_ms
        self.layout = layout
        self._failed = ""
        insts_path = artifact_dir / _listed(manifest, "insts")
        info = read_xclbin(xclbin_path, kernel=self.kernel_name)
        check_xclbin(info, manifest, self.kernel_name)
        self.n_words = insts_words(insts_path, manifest)
        self.kernel = xrt.kernel(context, self.kernel_name)
        self._check_groups(info)
        self.instr_bo = self._load_instructions(insts_path)
        self.bos = [
            self._alloc(f"BO {b.name!r}", b.nbytes, self.layout.data_flags, group)
            for b, group in zip(manifest.buffers, self.layout.data_groups, strict=True)
        ]
        # NPU_FACTS 5: zero-copy views of the mapped BOs, each owning a reference to its BO
        self.views = [
            bo_view(bo, b.dtype, b.shape) for bo, b in zip(self.bos, manifest.buffers, strict=True)
        ]
        # per call only these are touched: (view, BO, bytes) of each input and output
        self._to_device = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
        self._from_device = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE
        slots = [(v, bo, v.nbytes) for v, bo in zip(self.views, self.bos, strict=True)]
        self._in = [s for s, b in zip(slots, manifest.buffers, strict=True) if b.direction == "in"]
        self._in_index = [i for i, b in enumerate(manifest.buffers) if b.direction == "in"]
        self._out = [s for s, b in zip(slots, manifest.buffers, strict=True)
                     if b.direction == "out"]
        self._out_views = [view for view, _, _ in self._out]

        # NPU_FACTS 5: one reusable run, arguments set once; ninstr in 32-bit words
        self.run_handle = xrt.run(self.kernel)
        self.run_handle.set_arg(0, OPCODE)
        self.run_handle.set_arg(INSTR_ARG, self.instr_bo)
        self.run_handle.set_arg(2, self.n_words)
        for b, bo in zip(manifest.buffers, self.bos, strict=True):
            self.run_handle.set_arg(b.arg_index, bo)
        self._bound: dict[int, Any] = {}  # buffer index -> the bound BO its argument holds now

    def _load_instructions(self, insts_path: Path) -> Any:
        """The instruction BO, filled from insts.bin once and synced to the device."""
        size = self.n_words * 4
        bo = self._alloc("instruction BO", size, self.layout.instr_flags, self.layout.instr_group)
        bo.write(insts_path.read_bytes()[:size], 0)
        bo.sync(self._xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE, size, 0)
        return bo

    def _alloc(self, what: str, size: int, flags: str, group_arg: int) -> Any:
        try:
            return self._xrt.bo(self.device, size, getattr(self._xrt.bo, flags),
                                self.kernel.group_id(group_arg))
        except RuntimeError as e:
            where = f"allocating the {what} ({flags}, group_id({group_arg}))"
            raise driver_error(where, e) from None

    def _check_groups(self, info: Any) -> None:
        """Every BO's group lands in its argument's bank, else XRT would pass a clone."""
        placed = [(INSTR_ARG, self.layout.instr_group)] + [
            (b.arg_index, g)
            for b, g in zip(self.manifest.buffers, self.layout.data_groups, strict=True)
        ]
        wrong = [
            (arg, group)
            for arg, group in placed
            if self.kernel.group_id(group) & 0xFFFF != info.connectivity[arg]
        ]
        if not wrong:
            return
        where = ", ".join(f"argument {a} from group_id({g})" for a, g in wrong)
        if self.layout.warning:
            warnings.warn(f"{self.layout.warning}; cloned here: {where}", stacklevel=3)
            return
        raise RunError(
            f"BO layout {self.layout.name!r} puts {where} in the wrong bank; XRT would pass a "
            "clone and results would not reach the caller"
        )

    def bind(self, values: dict[int, np.ndarray]) -> dict[int, Any]:
        """BOs holding `values` (buffer index -> array), allocated in the group of their
        argument, filled and synced once: `run(..., bound=)` passes them without a copy."""
        bound = {}
        for i, x in values.items():
            b = self.manifest.buffers[i]
            bo = self._alloc(f"bound BO {b.name!r}", b.nbytes, self.layout.data_flags,
                             self.layout.data_groups[i])
            np.copyto(bo_view(bo, b.dtype, b.shape), x)
            bo.sync(self._to_device, b.nbytes, 0)
            bound[i] = bo
        return bound

    def _set_bound(self, bound: dict[int, Any]) -> None:
        """Point each input argument at its bound BO, or back at this kernel's own."""
        for i in self._in_index:
            want = bound.get(i)
            if self._bound.get(i) is not want:
                self.run_handle.set_arg(self.manifest.buffers[i].arg_index,
                                        want if want is not None else self.bos[i])
        self._bound = dict(bound)

    def run(self, inputs: Sequence[np.ndarray],
            bound: dict[int, Any] | None = None) -> list[np.ndarray]:
        """Run once. `inputs` are the inputs not in `bound` (buffer index -> BO from bind),
        in manifest order."""
        if self._failed:
            raise RunError(f"an earlier run ended in {self._failed}; reload the kernel")
        slots = self._in
        if bound or self._bound:
            self._set_bound(bound or {})
            if bound:
                slots = [s for s, i in zip(self._in, self._in_index, strict=True)
                         if i not in bound]
        for (view, bo, nbytes), x in zip(slots, inputs, strict=True):
            np.copyto(view, x)
            bo.sync(self._to_device, nbytes, 0)
        handle = self.run_handle
        try:
            handle.start()
        except Exception as e:  # pybind11 turns XRT's C++ exceptions into these
            # the command may never have reached the NPU, but its BOs are in an unknown state
            self._failed = "a failed start"
            raise _with_fix(driver_error("starting the kernel run", e)) from None
        try:
            state = handle.wait(self.timeout_ms)
        except Exception as e:
            self._failed = "a failed wait"
            raise _with_fix(driver_error("waiting for the kernel run", e)) from None
        if int(state) != COMPLETED:
            raise self._failed_state(state)
        for _view, bo, nbytes in self._out:
            bo.sync(self._from_device, nbytes, 0)
        return list(self._out_views)

    def _failed_state(self, state: Any) -> RunError:
        """Mark the kernel failed after a run that did not complete, and say how it ended."""
        # NPU_FACTS 5: never read results after a failed run; its BOs may still be in use
        self._failed = f"{getattr(state, 'name', 'state')} ({int(state)})"
        if int(state) == TIMEOUT and int(self.run_handle.state()) <= RUNNING:
            # xrt_kernel.cpp: wait's own timeout returns TIMEOUT while the command runs on
            return RunError(
                f"kernel run did not complete within {self.timeout_ms} ms and is still running "
                "on the NPU (wait returned ERT_CMD_STATE_TIMEOUT); results were not read: close "
                "the kernel and reload it, or raise timeout_ms (0 waits forever)"
            )
        return RunError(
            f"kernel run ended in {self._failed}, not COMPLETED "
            f"(timeout {self.timeout_ms} ms); results were not read"
        )

    def close(self) -> None:
        """Drop the run, BOs, kernel and context in that order: the context frees a slot."""
        for attr in ("_in", "_out", "_out_views", "views", "_bound", "run_handle", "bos",
                     "instr_bo", "kernel", "context", "device"):
            if hasattr(self, attr):
                setattr(self, attr, None)


class XrtBackend(XrtKernelRun):
    """One artifact on the NPU: device, xclbin, context, kernel, BOs and run, all made once."""

    name = "xrt"

    def __init__(
        self,
        artifact_dir: Path,
        manifest: Manifest,
        *,
        layout: str | BoLayout = "baseline",
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        device_index: int = 0,
    ) -> None:
        from runtime.xclbin import read_xclbin

        if not isinstance(layout, BoLayout):
            layout = layout_for(layout, len(manifest.buffers))
        xclbin_path = artifact_dir / _listed(manifest, "xclbin")
        # the checks that need no device first: a bad artifact is refused before XRT is asked
        check_xclbin(read_xclbin(xclbin_path, kernel=manifest.kernel_name), manifest)
        insts_words(artifact_dir / _listed(manifest, "insts"), manifest)
        xrt = import_pyxrt()
        device = open_device(xrt, device_index)
        context = open_hw_context(xrt, device, xclbin_path)
        super().__init__(xrt, device, context, artifact_dir, manifest, xclbin_path,
                         layout=layout, timeout_ms=timeout_ms)


class BoView(np.ndarray):
    """A numpy view of a mapped BO that keeps the BO alive while the view (or a slice) lives.

    pyxrt's `bo.map()` memoryview does not own the mapping: a plain view that outlived its BO
    (after `close()`, or garbage collection) would read unmapped memory.
    """

    bo: Any = None

    def __array_finalize__(self, obj: Any) -> None:
        self.bo = getattr(obj, "bo", None)


def bo_view(bo: Any, dtype: str, shape: tuple[int, ...]) -> BoView:
    count = int(np.prod(shape))
    view = np.frombuffer(bo.map(), dtype=dtype, count=count).reshape(shape).view(BoView)
    view.bo = bo
    return view


def _listed(manifest: Manifest, role: str) -> str:
    name = manifest.file_for(role)
    if name is None:
        raise ArtifactError(f"the manifest lists no {role} file; this artifact cannot run on XRT")
    return name

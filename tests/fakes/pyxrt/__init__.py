"""A fake `pyxrt` as strict as XRT's own binding and the amdxdna driver, for tests and benchmarks.

Only tests and bench put this package on sys.path. It models what the real stack does to a
host program, from XRT's sources (src/python/pybind11/src/pyxrt.cpp and the headers it binds:
xrt_bo.h, xrt_kernel.h, xrt_mem.h, ert.h; xrt_kernel.cpp, xrt_bo.cpp): pybind11's argument
checks (`bo.write(data, seek)` and `bo.read(size, skip)` need both arguments, `sync` takes one
or three, `wait` an unsigned int, `set_arg` a BO or a C int), enum values that are not ints,
XRT's real flag values and group-id encoding (bank in bits 0-15, the hardware context's slot in
16-23), writes and reads past a BO refused, BO flags the driver refuses (NPU_FACTS 5), XRT's
clone of a BO allocated in the wrong bank, the device-wide hardware context limit, separate host
and device copies that only `sync` moves between, a run that can still be running after wait's
timeout (and refuses a second start), and freed BO memory poisoned, as an unmapped page would
fault. A started run executes the artifact's design with runtime.emulator (the host-compiled
core code), never a golden model.

Several kernels of one xclbin are served from one hw_context by name, as XRT's
`xrt::kernel(hw_context, name)` does (the amdxdna driver takes at most 16 PDIs, one per kernel,
per context). Which design a kernel runs is a test-double convention: the kernel named K of an
xclbin at D/final.xclbin runs the artifact D/members/K/ (a context artifact, codegen/link.py),
else the artifact D itself. `live_contexts()` and `bos_allocated()` count what a test's code
holds and made (clones included).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.insts import parse_insts

from . import axlf
from ._pybind import INT32, SIZE_T, UINT32, PybindEnum, incompatible, is_integer, make_enum


@functools.lru_cache(maxsize=64)
def _patched_args(stream: bytes) -> tuple[int, ...]:
    """The argument indices an instruction stream patches (parsed once per stream)."""
    return parse_insts(stream).patched_args


NO_BANK = 0xFFFF  # xrt_kernel.cpp get_arg_memidx: a scalar argument has no memory index
OPCODE = 3  # mlir-aie's harness passes opcode 3 at argument 0
POISON = 0xA5  # what a freed BO's memory reads as (on hardware the page is unmapped)
FIRST_CONTEXT_SLOT = 1  # amdxdna hands out context handles from 1 (0 is the invalid handle)
MAX_CONTEXT_SLOT = 0xFF  # 8 bits of the group id (xrt_mem.h xcl_bo_flags.slot)
MAX_PDIS = 16  # amdxdna XCLBIN_MAX_NUM_PDIS: PDIs (here: kernels) one hardware context takes

# ert.h enum ert_cmd_state (unscoped: pybind11 lets == compare it with an int)
ert_cmd_state = make_enum(
    "ert_cmd_state",
    {
        "ERT_CMD_STATE_NEW": 1,
        "ERT_CMD_STATE_QUEUED": 2,
        "ERT_CMD_STATE_RUNNING": 3,
        "ERT_CMD_STATE_COMPLETED": 4,
        "ERT_CMD_STATE_ERROR": 5,
        "ERT_CMD_STATE_ABORT": 6,
        "ERT_CMD_STATE_SUBMITTED": 7,
        "ERT_CMD_STATE_TIMEOUT": 8,
        "ERT_CMD_STATE_NORESPONSE": 9,
        "ERT_CMD_STATE_SKERROR": 10,
        "ERT_CMD_STATE_SKCRASHED": 11,
    },
    convertible=True,
)
# xrt_mem.h enum xclBOSyncDirection (unscoped)
xclBOSyncDirection = make_enum(
    "xclBOSyncDirection",
    {
        "XCL_BO_SYNC_BO_TO_DEVICE": 0,
        "XCL_BO_SYNC_BO_FROM_DEVICE": 1,
        "XCL_BO_SYNC_BO_GMIO_TO_AIE": 2,
        "XCL_BO_SYNC_BO_AIE_TO_GMIO": 3,
    },
    convertible=True,
)
XCL_BO_FLAGS_NONE = 0
COMPLETED = ert_cmd_state.ERT_CMD_STATE_COMPLETED  # type: ignore[attr-defined]
RUNNING = ert_cmd_state.ERT_CMD_STATE_RUNNING  # type: ignore[attr-defined]
TIMEOUT = ert_cmd_state.ERT_CMD_STATE_TIMEOUT  # type: ignore[attr-defined]
ERROR = ert_cmd_state.ERT_CMD_STATE_ERROR  # type: ignore[attr-defined]


@dataclass
class FakeConfig:
    """Knobs a test turns: devices, the context limit, what runs report, injected failures."""

    devices: int = 1
    hwctx_limit: int = 6  # NPU_FACTS 1: 6 on Phoenix, device-wide
    execute: bool = True  # False: a started run does nothing (host-overhead benchmarks)
    state: Any = COMPLETED  # the final state a valid run ends in
    hang: bool = False  # a started run never completes: wait(t) returns TIMEOUT, still RUNNING
    device_error: str = ""  # pyxrt.device() raises RuntimeError(device_error)
    bo_error: str = ""  # every BO allocation raises RuntimeError(bo_error)
    start_error: str = ""  # run.start() raises RuntimeError(start_error), as a failed submit


config = FakeConfig()
messages: list[str] = []  # warnings XRT would print, in order
runs_started = 0
_live_contexts = 0
_bos_allocated = 0
# XRT opens each device index once per process (xrt::device(0) twice shares it), and amdxdna
# numbers a client's contexts cyclically from 1: the next context slot, per device index
_next_slot: dict[int, int] = {}


def reset() -> None:
    """Back to one device, limit 6, executing runs, no messages, no live contexts."""
    global config, runs_started, _live_contexts, _bos_allocated
    config = FakeConfig()
    messages.clear()
    runs_started = 0
    _live_contexts = 0
    _bos_allocated = 0
    _next_slot.clear()


def live_contexts() -> int:
    return _live_contexts


def bos_allocated() -> int:
    """BOs made since reset(), by the caller or by XRT's clone of a wrong-bank argument."""
    return _bos_allocated


def _warn(text: str) -> None:
    messages.append(text)
    print(f"[XRT] WARNING: {text}", file=sys.stderr)


class uuid:
    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def to_string(self) -> str:
        return self._raw.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, uuid) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)


class xclbin:
    def __init__(self, path: str) -> None:
        if not isinstance(path, str):
            raise incompatible("__init__", ["(self: pyxrt.xclbin, arg0: str) -> None"], (path,))
        self.path = Path(path)
        try:
            self.info = axlf.read_xclbin(self.path)
        except (OSError, ValueError) as e:
            raise RuntimeError(f"Failed to load xclbin: {e}") from None

    def get_uuid(self) -> uuid:
        return uuid(self.info.uuid)


class device:
    def __init__(self, index: int = 0) -> None:
        if not is_integer(index, UINT32):
            raise incompatible("__init__", ["(self: pyxrt.device, arg0: int) -> None"], (index,))
        if config.device_error:
            raise RuntimeError(config.device_error)
        if index >= config.devices:
            raise RuntimeError(f"Could not open device with index '{index}'")
        self._xclbins: dict[uuid, xclbin] = {}
        self.index = int(index)

    def register_xclbin(self, xb: xclbin) -> uuid:
        self._xclbins[xb.get_uuid()] = xb
        return xb.get_uuid()

    def load_xclbin(self, xb: xclbin | str) -> uuid:
        # NPU_FACTS 5: the old FPGA path fails on the NPU
        raise RuntimeError("load_axlf: Operation not supported (err=95)")

    def _take_slot(self) -> int:
        """The next context handle (group ids carry it in 8 bits)."""
        slot = _next_slot.get(self.index, FIRST_CONTEXT_SLOT)
        _next_slot[self.index] = slot + 1 if slot < MAX_CONTEXT_SLOT else FIRST_CONTEXT_SLOT
        return slot


class hw_context:
    def __init__(self, dev: device, xclbin_uuid: uuid) -> None:
        global _live_contexts
        self._counted = False
        if not isinstance(dev, device) or not isinstance(xclbin_uuid, uuid):
            raise incompatible(
                "__init__", ["(self: pyxrt.hw_context, arg0: pyxrt.device, arg1: pyxrt.uuid)"],
                (dev, xclbin_uuid),
            )
        if xclbin_uuid not in dev._xclbins:
            raise RuntimeError("No xclbin registered with this uuid")
        if len(dev._xclbins[xclbin_uuid].info.kernels) > MAX_PDIS:
            raise RuntimeError("Failed to create hardware context: Invalid argument (err=22): "
                               f"more than {MAX_PDIS} PDIs")
        if _live_contexts >= config.hwctx_limit:
            raise RuntimeError("Failed to create hardware context: Device or resource busy")
        _live_contexts += 1
        self._counted = True
        self.slot = dev._take_slot()
        self.xclbin = dev._xclbins[xclbin_uuid]
        self._designs: dict[str, tuple[Any, Any]] = {}

    def __del__(self) -> None:
        global _live_contexts
        if self._counted:
            _live_contexts = max(0, _live_contexts - 1)

    def design(self, kernel_name: str) -> tuple[Any, Any]:
        """The artifact kernel `kernel_name` runs (members/<name>/ beside the xclbin, else the
        xclbin's own directory), loaded into runtime.emulator once per context."""
        if kernel_name not in self._designs:
            from runtime import emulator
            from runtime.manifest import load_manifest

            art = self.xclbin.path.parent
            if (art / "members" / kernel_name / "manifest.json").is_file():
                art = art / "members" / kernel_name
            manifest = load_manifest(art, verify=False)
            libs = {k: art / v for k, v in manifest.host_libraries.items()}
            design_file = manifest.file_for("design")
            design = emulator.load_design(art / design_file, libraries=libs)
            self._designs[kernel_name] = design, manifest
        return self._designs[kernel_name]


class kernel:
    def __init__(self, ctx: hw_context, name: str) -> None:
        info = ctx.xclbin.info
        if name not in info.kernels:
            found = ", ".join(info.kernels)
            raise RuntimeError(f"No such kernel '{name}' (xclbin has {found})")
        self.ctx = ctx
        self.name = name
        self._args = {a.index: a for a in info.kernels[name]}
        self._connectivity = info.connectivity(name)

    def arg(self, index: int) -> axlf.KernelArg:
        if index not in self._args:
            raise RuntimeError(f"Invalid kernel argument index {index}")
        return self._args[index]

    def bank(self, index: int) -> int:
        a = self._args.get(index)
        if a is None or not a.pointer:
            return NO_BANK
        return self._connectivity.get(index, NO_BANK)

    def group_id(self, index: int) -> int:
        """xrt_kernel.cpp group_id: bank in bits 0-15, the context's slot in bits 16-23."""
        if not is_integer(index, INT32):
            raise incompatible("group_id", ["(self: pyxrt.kernel, arg0: int) -> int"], (index,))
        return self.ctx.slot << 16 | self.bank(index)

    def __call__(self, *args: Any) -> run:
        r = run(self)
        for i, a in enumerate(args):
            # pyxrt.cpp: each argument is tried as a BO, then as an int; every failure
            # (a cast or a set_arg error) is swallowed, so a bad argument is silently skipped
            for value in (a,) if isinstance(a, bo) else (a,) * is_integer(a, INT32):
                with contextlib.suppress(RuntimeError, TypeError):
                    r.set_arg(i, value)
        r.start()
        return r


class bo:
    # xrt_bo.h `enum class flags : uint32_t` with xrt_mem.h values (scoped: == int is False)
    flags = make_enum(
        "flags",
        {
            "normal": 0,
            "cacheable": 1 << 24,
            "device_only": 1 << 28,
            "host_only": 1 << 29,
            "p2p": 1 << 30,
            "svm": 1 << 27,
        },
        convertible=False,
    )
    normal = flags.normal  # type: ignore[attr-defined]  # export_values()
    cacheable = flags.cacheable  # type: ignore[attr-defined]
    device_only = flags.device_only  # type: ignore[attr-defined]
    host_only = flags.host_only  # type: ignore[attr-defined]
    p2p = flags.p2p  # type: ignore[attr-defined]
    svm = flags.svm  # type: ignore[attr-defined]

    _INIT = "(self: pyxrt.bo, arg0: pyxrt.device, arg1: int, arg2: pyxrt.bo.flags, arg3: int)"

    def __init__(self, dev: device, size: int, flags: Any, group: int) -> None:
        self._host = bytearray()  # so __del__ of a half-made BO has nothing to poison
        self._dev = bytearray()
        if not (
            isinstance(dev, device)
            and is_integer(size, SIZE_T)
            and isinstance(flags, bo.flags)
            and is_integer(group, UINT32)
        ):
            raise incompatible("__init__", [self._INIT], (dev, size, flags, group))
        if config.bo_error:
            raise RuntimeError(config.bo_error)
        # NPU_FACTS 5: the amdxdna driver accepts host_only (data) and cacheable (instructions)
        if flags == bo.normal:
            raise RuntimeError("unsupported buffer type: none flag (err=95)")
        if flags in (bo.device_only, bo.p2p, bo.svm):
            raise RuntimeError("Bad BO type (err=22)")
        if size <= 0:
            raise RuntimeError(f"bo: size {size} must be positive (err=22)")
        global _bos_allocated
        _bos_allocated += 1
        self.flags_ = flags
        self.group = int(group)
        self.bank = self.group & 0xFFFF
        self._host = bytearray(size)
        self._dev = bytearray(size)
        self.clone_of: bo | None = None

    def __del__(self) -> None:
        # the mapping is gone: a numpy view still pointing at it now reads garbage
        for mem in (getattr(self, "_host", bytearray()), getattr(self, "_dev", bytearray())):
            mem[:] = bytes([POISON]) * len(mem)

    def size(self) -> int:
        return len(self._host)

    def map(self) -> memoryview:
        # pyxrt.cpp: memoryview::from_memory(b.map(), b.size()), which owns no reference to
        # the BO; the fake's view keeps only the bytes alive, and __del__ poisons them
        return memoryview(self._host)

    def write(self, *args: Any) -> None:
        """`write(buffer, seek)`: both required (pyxrt binds one overload)."""
        if len(args) != 2 or not is_integer(args[1], SIZE_T):
            raise incompatible("write", ["(self: pyxrt.bo, arg0: buffer, arg1: int) -> None"],
                               args)
        data, seek = args
        try:
            raw = memoryview(data)
        except TypeError:
            raise incompatible("write", ["(self: pyxrt.bo, arg0: buffer, arg1: int) -> None"],
                               args) from None
        if not raw.c_contiguous:
            raise RuntimeError("bo.write: buffer is not contiguous")
        raw = raw.cast("B")
        if seek > len(self._host) or raw.nbytes > len(self._host) - seek:
            raise RuntimeError("attempting to write past buffer size")  # xrt_bo.cpp
        self._host[seek : seek + raw.nbytes] = raw

    def read(self, *args: Any) -> np.ndarray:
        """`read(size, skip)`: both required."""
        if len(args) != 2 or not all(is_integer(a, SIZE_T) for a in args):
            raise incompatible("read", ["(self: pyxrt.bo, arg0: int, arg1: int) -> numpy.ndarray"],
                               args)
        size, skip = args
        if skip > len(self._host) or size > len(self._host) - skip:
            raise RuntimeError("attempting to read past buffer size")  # xrt_bo.cpp
        return np.frombuffer(bytes(self._host[skip : skip + size]), dtype=np.int8)

    def sync(self, *args: Any) -> None:
        """`sync(direction)` (the whole BO) or `sync(direction, size, offset)`."""
        ok = len(args) in (1, 3) and isinstance(args[0], xclBOSyncDirection)
        if ok and len(args) == 3:
            ok = is_integer(args[1], SIZE_T) and is_integer(args[2], SIZE_T)
        if not ok:
            raise incompatible(
                "sync",
                ["(self: pyxrt.bo, arg0: pyxrt.xclBOSyncDirection, arg1: int, arg2: int) -> None",
                 "(self: pyxrt.bo, arg0: pyxrt.xclBOSyncDirection) -> None"],
                args,
            )
        direction = args[0]
        size, offset = (len(self._host), 0) if len(args) == 1 else (args[1], args[2])
        end = offset + size
        if end > len(self._host):
            raise RuntimeError(f"bo.sync: {offset}..{end} is outside the {len(self._host)}-byte BO")
        if direction == xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:  # type: ignore[attr-defined]
            self._dev[offset:end] = self._host[offset:end]
        else:
            self._host[offset:end] = self._dev[offset:end]

    def _clone(self, group: int) -> bo:
        global _bos_allocated
        _bos_allocated += 1
        twin = bo.__new__(bo)
        twin.flags_, twin.group, twin.bank = self.flags_, group, group & 0xFFFF
        twin._host, twin._dev = bytearray(self._host), bytearray(self._dev)
        twin.clone_of = self
        return twin


class run:
    def __init__(self, k: kernel) -> None:
        if not isinstance(k, kernel):
            raise incompatible("__init__", ["(self: pyxrt.run, arg0: pyxrt.kernel) -> None"], (k,))
        self.kernel = k
        self.args: dict[int, Any] = {}
        self._state: PybindEnum = ert_cmd_state.ERT_CMD_STATE_NEW  # type: ignore[attr-defined]
        self._done = True  # xrt_kernel.cpp: a run can start when its last command is done
        self.error = ""

    def set_arg(self, *args: Any) -> None:
        """`set_arg(index, bo)` or `set_arg(index, int)`: nothing else converts."""
        ok = len(args) == 2 and is_integer(args[0], INT32)
        if ok and not isinstance(args[1], bo):
            ok = is_integer(args[1], INT32)
        if not ok:
            raise incompatible(
                "set_arg",
                ["(self: pyxrt.run, arg0: int, arg1: pyxrt.bo) -> None",
                 "(self: pyxrt.run, arg0: int, arg1: int) -> None"],
                args,
            )
        index, value = args
        a = self.kernel.arg(index)
        if isinstance(value, bo):
            if not a.pointer:
                raise RuntimeError(f"argument {index} ({a.name}) is a scalar, got a buffer")
            bank = self.kernel.bank(index)
            if value.bank != bank:
                # XRT validate_bo_at_index: the kernel gets a copy taken now, in the right bank
                _warn(
                    f"Kernel {self.kernel.name} has no compute units with connectivity required "
                    f"for global argument at index {index}. The argument is allocated in bank "
                    f"{value.group}, the compute unit is connected to bank {bank}. Allocating "
                    "local copy of argument buffer in connected bank."
                )
                value = value._clone(self.kernel.group_id(index))
        elif a.pointer:
            raise RuntimeError(f"argument {index} ({a.name}) needs a buffer, got {value!r}")
        else:
            value = int(value)
        self.args[index] = value

    def start(self) -> None:
        global runs_started
        if not self._done:
            raise RuntimeError("bad command state, can't launch")  # xrt_kernel.cpp run()
        if config.start_error:
            raise RuntimeError(config.start_error)
        runs_started += 1
        self.error = self._execute()
        if self.error:
            print(f"[fake pyxrt] run failed: {self.error}", file=sys.stderr)
            self._state = ERROR
        elif config.hang:
            self._state, self._done = RUNNING, False
        else:
            self._state = config.state

    def wait(self, *args: Any) -> PybindEnum:
        """`wait()` or `wait(timeout_ms)`, an unsigned int; 0 waits forever (xrt_kernel.cpp)."""
        if len(args) > 1 or (args and not is_integer(args[0], UINT32)):
            raise incompatible(
                "wait",
                ["(self: pyxrt.run) -> pyxrt.ert_cmd_state",
                 "(self: pyxrt.run, arg0: int) -> pyxrt.ert_cmd_state"],
                args,
            )
        if self._done:
            return self._state
        if not args or args[0] == 0:
            # a command that never completes would block this thread forever
            raise RuntimeError("fake pyxrt: wait() without a timeout on a run that never ends")
        return TIMEOUT  # the wait timed out; the command itself is still running

    def state(self) -> PybindEnum:
        return self._state

    def _execute(self) -> str:
        """Run the command as firmware would; a non-empty string is why it ends in ERROR."""
        need = sorted(self.kernel._args)
        if any(i not in self.args for i in need):
            return f"arguments {[i for i in need if i not in self.args]} were never set"
        if self.args[0] != OPCODE:
            return f"opcode {self.args[0]} is not {OPCODE}"
        instr = self.args[1]
        origin = instr.clone_of or instr
        if origin.flags_ != bo.cacheable or origin.bank != self.kernel.bank(1):
            return "the instruction BO must be cacheable, in group_id(1)"
        header = np.frombuffer(instr._dev, dtype="<u4", count=4)
        words = int(header[3]) // 4  # NPU_FACTS 4: w3 = total bytes of the stream
        if self.args[2] != words:
            return f"ninstr {self.args[2]} is not the stream's {words} words (bytes passed?)"
        # The stream's address patches name the arguments it reads and writes: each must be set.
        patched = _patched_args(bytes(instr._dev[: words * 4]))
        unset = [i for i in patched if not isinstance(self.args.get(i), bo)]
        if unset:
            return f"the instruction stream patches argument(s) {unset}, which hold no BO"
        if not config.execute:
            return ""
        design, manifest = self.kernel.ctx.design(self.kernel.name)
        arrays = []
        for b in manifest.buffers:
            buf = self.args.get(b.arg_index)
            if not isinstance(buf, bo) or len(buf._dev) < b.nbytes:
                return f"buffer {b.name!r} at argument {b.arg_index} is missing or too small"
            count = b.nbytes // np.dtype(b.dtype).itemsize
            arrays.append(np.frombuffer(buf._dev, dtype=b.dtype, count=count).reshape(b.shape))
        try:
            design.run(arrays)
        except Exception as e:  # a device fault ends the command in ERROR
            return f"design fault: {e}"
        return ""

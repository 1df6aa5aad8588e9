"""A fake `pyxrt` that enforces the amdxdna driver's rules (NPU_FACTS 5), for tests and benchmarks.

Only tests and bench put this package on sys.path. It models what the real stack does to a
host program: BO flags the driver refuses, group ids that encode bank and slot, XRT's clone of a
BO allocated in the wrong bank, the device-wide hardware context limit, separate host and device
copies that only `sync` moves between, and run states. A started run executes the artifact's
design with runtime.emulator (the host-compiled core code), never a golden model.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from runtime.insts import parse_insts

from . import axlf


@functools.lru_cache(maxsize=64)
def _patched_args(stream: bytes) -> tuple[int, ...]:
    """The argument indices an instruction stream patches (parsed once per stream)."""
    return parse_insts(stream).patched_args


SCALAR_BANK = 0xFFFF  # NPU_FACTS 5: a scalar argument has no memory bank
CONTEXT_SLOT = 1  # NPU_FACTS 5: group_id(2) == 131071, i.e. slot 1 in bits 16-23
OPCODE = 3  # mlir-aie's harness passes opcode 3 at argument 0


class ert_cmd_state(IntEnum):
    """The command states `run.wait` returns (XRT's ert_cmd_state)."""

    ERT_CMD_STATE_NEW = 1
    ERT_CMD_STATE_QUEUED = 2
    ERT_CMD_STATE_RUNNING = 3
    ERT_CMD_STATE_COMPLETED = 4
    ERT_CMD_STATE_ERROR = 5
    ERT_CMD_STATE_ABORT = 6
    ERT_CMD_STATE_SUBMITTED = 7
    ERT_CMD_STATE_TIMEOUT = 8
    ERT_CMD_STATE_NORESPONSE = 9


class xclBOSyncDirection(IntEnum):
    XCL_BO_SYNC_BO_TO_DEVICE = 0
    XCL_BO_SYNC_BO_FROM_DEVICE = 1


@dataclass
class FakeConfig:
    """Knobs a test turns: how many devices answer, the context limit, what runs report."""

    devices: int = 1
    hwctx_limit: int = 6  # NPU_FACTS 1: 6 on Phoenix, device-wide
    execute: bool = True  # False: a started run does nothing (host-overhead benchmarks)
    state: ert_cmd_state = ert_cmd_state.ERT_CMD_STATE_COMPLETED  # reported by a valid run


config = FakeConfig()
messages: list[str] = []  # warnings XRT would print, in order
runs_started = 0
_live_contexts = 0


def reset() -> None:
    """Back to one device, limit 6, executing runs, no messages, no live contexts."""
    global config, runs_started, _live_contexts
    config = FakeConfig()
    messages.clear()
    runs_started = 0
    _live_contexts = 0


def live_contexts() -> int:
    return _live_contexts


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
        self.path = Path(path)
        try:
            self.info = axlf.read_xclbin(self.path)
        except (OSError, ValueError) as e:
            raise RuntimeError(f"Failed to load xclbin: {e}") from None

    def get_uuid(self) -> uuid:
        return uuid(self.info.uuid)


class device:
    def __init__(self, index: int = 0) -> None:
        if index >= config.devices:
            raise RuntimeError(f"Could not open device with index '{index}'")
        self._xclbins: dict[uuid, xclbin] = {}

    def register_xclbin(self, xb: xclbin) -> uuid:
        self._xclbins[xb.get_uuid()] = xb
        return xb.get_uuid()

    def load_xclbin(self, xb: xclbin | str) -> uuid:
        # NPU_FACTS 5: the old FPGA path fails on the NPU
        raise RuntimeError("load_axlf: Operation not supported (err=95)")


class hw_context:
    def __init__(self, dev: device, xclbin_uuid: uuid) -> None:
        global _live_contexts
        self._counted = False
        if xclbin_uuid not in dev._xclbins:
            raise RuntimeError("No xclbin registered with this uuid")
        if _live_contexts >= config.hwctx_limit:
            raise RuntimeError("Failed to create hardware context: Device or resource busy")
        _live_contexts += 1
        self._counted = True
        self.xclbin = dev._xclbins[xclbin_uuid]
        self._design: Any = None
        self._manifest: Any = None

    def __del__(self) -> None:
        global _live_contexts
        if self._counted:
            _live_contexts = max(0, _live_contexts - 1)

    def design(self) -> tuple[Any, Any]:
        """The artifact next to the xclbin, loaded into runtime.emulator once per context."""
        if self._design is None:
            from runtime import emulator
            from runtime.manifest import load_manifest

            art = self.xclbin.path.parent
            self._manifest = load_manifest(art, verify=False)
            libs = {k: art / v for k, v in self._manifest.host_libraries.items()}
            design_file = self._manifest.file_for("design")
            self._design = emulator.load_design(art / design_file, libraries=libs)
        return self._design, self._manifest


class kernel:
    def __init__(self, ctx: hw_context, name: str) -> None:
        info = ctx.xclbin.info
        if name != info.kernel_name:
            raise RuntimeError(f"No such kernel '{name}' (xclbin has '{info.kernel_name}')")
        self.ctx = ctx
        self.name = name
        self._args = {a.index: a for a in info.args}

    def arg(self, index: int) -> axlf.KernelArg:
        if index not in self._args:
            raise RuntimeError(f"Invalid kernel argument index {index}")
        return self._args[index]

    def bank(self, index: int) -> int:
        a = self.arg(index)
        if not a.pointer:
            return SCALAR_BANK
        return self.ctx.xclbin.info.connectivity.get(index, SCALAR_BANK)

    def group_id(self, index: int) -> int:
        return CONTEXT_SLOT << 16 | self.bank(index)

    def __call__(self, *args: Any) -> run:
        r = run(self)
        for i, a in enumerate(args):
            # NPU_FACTS 5: kernel(*args) silently skips an argument it cannot set
            with contextlib.suppress(RuntimeError):
                r.set_arg(i, a)
        r.start()
        return r


class bo:
    class flags(IntEnum):
        normal = 0
        cacheable = 1
        device_only = 2
        host_only = 3
        p2p = 4
        svm = 5

    normal = flags.normal
    cacheable = flags.cacheable
    device_only = flags.device_only
    host_only = flags.host_only
    p2p = flags.p2p
    svm = flags.svm

    def __init__(self, dev: device, size: int, flags: int, group: int) -> None:
        # NPU_FACTS 5: the amdxdna driver accepts host_only (data) and cacheable (instructions)
        if flags == bo.normal:
            raise RuntimeError("unsupported buffer type: none flag (err=95)")
        if flags in (bo.device_only, bo.p2p, bo.svm):
            raise RuntimeError("Bad BO type (err=22)")
        if size <= 0:
            raise RuntimeError(f"bo: size {size} must be positive (err=22)")
        self.flags_ = bo.flags(flags)
        self.group = group
        self.bank = group & 0xFFFF
        self._host = bytearray(size)
        self._dev = bytearray(size)
        self.clone_of: bo | None = None

    def size(self) -> int:
        return len(self._host)

    def map(self) -> memoryview:
        return memoryview(self._host)

    def write(self, data: Any, seek: int = 0) -> None:
        raw = memoryview(data)
        if not raw.c_contiguous:
            raise RuntimeError("bo.write: buffer is not contiguous")
        raw = raw.cast("B")
        self._host[seek : seek + raw.nbytes] = raw

    def read(self, size: int, skip: int = 0) -> np.ndarray:
        return np.frombuffer(bytes(self._host[skip : skip + size]), dtype=np.int8)

    def sync(self, direction: int, size: int | None = None, offset: int = 0) -> None:
        end = len(self._host) if size is None else offset + size
        if offset < 0 or end > len(self._host) or end < offset:
            raise RuntimeError(f"bo.sync: {offset}..{end} is outside the {len(self._host)}-byte BO")
        if direction == xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:
            self._dev[offset:end] = self._host[offset:end]
        else:
            self._host[offset:end] = self._dev[offset:end]

    def _clone(self, group: int) -> bo:
        twin = bo.__new__(bo)
        twin.flags_, twin.group, twin.bank = self.flags_, group, group & 0xFFFF
        twin._host, twin._dev = bytearray(self._host), bytearray(self._dev)
        twin.clone_of = self
        return twin


class run:
    def __init__(self, k: kernel) -> None:
        self.kernel = k
        self.args: dict[int, Any] = {}
        self._state = ert_cmd_state.ERT_CMD_STATE_NEW
        self.error = ""

    def set_arg(self, index: int, value: Any) -> None:
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
                value = value._clone(CONTEXT_SLOT << 16 | bank)
        elif a.pointer:
            raise RuntimeError(f"argument {index} ({a.name}) needs a buffer, got {value!r}")
        self.args[index] = value

    def start(self) -> None:
        global runs_started
        runs_started += 1
        self.error = self._execute()
        if self.error:
            print(f"[fake pyxrt] run failed: {self.error}", file=sys.stderr)
            self._state = ert_cmd_state.ERT_CMD_STATE_ERROR
        else:
            self._state = config.state

    def wait(self, timeout_ms: int = 0) -> ert_cmd_state:
        return self._state

    def state(self) -> ert_cmd_state:
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
        design, manifest = self.kernel.ctx.design()
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

"""The fake pyxrt is as strict as XRT's own binding (pyxrt.cpp via pybind11) and runtime.

Every refusal here is one XRT makes: a laxer double would let runtime bugs pass the tests.
"""

from __future__ import annotations

import gc
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.test_runtime_support import N


def opened(fake: ModuleType, artifact: Path) -> tuple[Any, Any, Any]:
    dev = fake.device(0)
    xb = fake.xclbin(str(artifact / "final.xclbin"))
    dev.register_xclbin(xb)
    ctx = fake.hw_context(dev, xb.get_uuid())
    return dev, ctx, fake.kernel(ctx, "MLIR_AIE")


def started_run(fake: ModuleType, artifact: Path) -> Any:
    dev, _, kern = opened(fake, artifact)
    insts = (artifact / "insts.bin").read_bytes()
    instr = fake.bo(dev, len(insts), fake.bo.cacheable, kern.group_id(1))
    instr.write(insts, 0)
    instr.sync(fake.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
    bos = [fake.bo(dev, N, fake.bo.host_only, kern.group_id(3 + i)) for i in range(2)]
    return kern(3, instr, len(insts) // 4, *bos)


def test_states_and_flags_are_pybind_enums_not_ints(fake: ModuleType, artifact: Path) -> None:
    state = started_run(fake, artifact).wait(1000)
    assert not isinstance(state, int)
    assert int(state) == 4 and state.name == "ERT_CMD_STATE_COMPLETED"
    with pytest.raises(TypeError):
        _ = state < 5  # pybind11 defines no ordering on a non-arithmetic enum
    with pytest.raises(TypeError):
        _ = state + 0
    # xrt_bo.h: `enum class flags` with xrt_mem.h's values; a scoped enum equals no int
    assert int(fake.bo.host_only) == 1 << 29 and int(fake.bo.cacheable) == 1 << 24
    assert fake.bo.host_only != 1 << 29 and fake.bo.host_only == fake.bo.flags.host_only


def test_bo_calls_need_their_exact_arguments(fake: ModuleType) -> None:
    dev = fake.device(0)
    to_device = fake.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
    with pytest.raises(TypeError, match="incompatible function arguments"):
        fake.bo(dev, 16, int(fake.bo.host_only), 0)  # an int is not a bo.flags
    b = fake.bo(dev, 16, fake.bo.host_only, 0)
    with pytest.raises(TypeError, match="write"):
        b.write(np.zeros(4, np.int8))  # pyxrt binds write(buffer, seek) only
    with pytest.raises(TypeError, match="sync"):
        b.sync(to_device, 16)  # one argument or three
    with pytest.raises(TypeError, match="sync"):
        b.sync(0, 16, 0)  # an int is not an xclBOSyncDirection
    with pytest.raises(TypeError, match="read"):
        b.read(16)
    b.sync(to_device)
    b.sync(to_device, 16, 0)


def test_writes_and_reads_past_a_bo_are_refused_not_grown(fake: ModuleType) -> None:
    b = fake.bo(fake.device(0), 16, fake.bo.host_only, 0)
    with pytest.raises(RuntimeError, match="attempting to write past buffer size"):
        b.write(np.zeros(8, np.int8), 12)
    with pytest.raises(RuntimeError, match="attempting to read past buffer size"):
        b.read(8, 12)
    assert b.size() == 16


@pytest.mark.parametrize("timeout", [None, -1, 1.5, 2**32])
def test_wait_takes_an_unsigned_int(fake: ModuleType, artifact: Path, timeout: object) -> None:
    r = started_run(fake, artifact)
    with pytest.raises(TypeError, match="wait"):
        r.wait(timeout)
    assert r.wait(0) == fake.ert_cmd_state.ERT_CMD_STATE_COMPLETED


@pytest.mark.parametrize("value", [68.0, None, "x"])
def test_set_arg_takes_a_bo_or_a_c_int(fake: ModuleType, artifact: Path, value: object) -> None:
    _, _, kern = opened(fake, artifact)
    with pytest.raises(TypeError, match="set_arg"):
        fake.run(kern).set_arg(2, value)


def test_a_timed_out_run_is_still_running_and_cannot_start_again(
    fake: ModuleType, artifact: Path
) -> None:
    fake.config.hang = True
    r = started_run(fake, artifact)
    assert r.wait(10) == fake.ert_cmd_state.ERT_CMD_STATE_TIMEOUT
    assert r.state() == fake.ert_cmd_state.ERT_CMD_STATE_RUNNING
    with pytest.raises(RuntimeError, match="bad command state, can't launch"):
        r.start()


def test_freed_bo_memory_is_poisoned(fake: ModuleType) -> None:
    b = fake.bo(fake.device(0), 16, fake.bo.host_only, 0)
    dangling = np.frombuffer(b.map(), dtype=np.uint8)  # map() owns no reference to the BO
    dangling[:] = 7
    del b
    gc.collect()
    assert (dangling == fake.POISON).all()


def test_group_ids_carry_each_contexts_slot(fake: ModuleType, artifact: Path) -> None:
    """xrt_kernel.cpp group_id: bank in bits 0-15, the context handle in 16-23 (from 1)."""
    dev = fake.device(0)
    xb = fake.xclbin(str(artifact / "final.xclbin"))
    dev.register_xclbin(xb)
    first = fake.kernel(fake.hw_context(dev, xb.get_uuid()), "MLIR_AIE")
    second = fake.kernel(fake.hw_context(dev, xb.get_uuid()), "MLIR_AIE")
    assert first.group_id(2) == 0x1FFFF  # NPU_FACTS 5: 131071, the scalar's "no bank"
    assert second.group_id(2) == 0x2FFFF and second.group_id(1) == 2 << 16 | 1

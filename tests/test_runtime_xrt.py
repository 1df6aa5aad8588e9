"""The pyxrt backend against the fake driver: BO layout, clones, run states, error translation."""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from runtime.errors import ArtifactError, RunError, ToolchainError
from runtime.kernel import NpuKernel
from runtime.xrt import BO_FLAG_MESSAGE, BoLayout, NoDeviceError
from tests.test_runtime_support import (
    N,
    hide_pyxrt,
    make_standin,
    xrt_of,
)

X = np.arange(-32, 32, dtype=np.int8)


def test_baseline_layout_groups_flags_and_words(fake: ModuleType, artifact: Path) -> None:
    k = NpuKernel.load(artifact, backend="xrt")
    be = xrt_of(k)
    assert be.instr_bo.flags_ == fake.bo.cacheable
    assert be.instr_bo.group == be.kernel.group_id(1)
    assert be.instr_bo.bank == 1  # SRAM in the fake xclbin's MEM_TOPOLOGY
    assert [bo.flags_ for bo in be.bos] == [fake.bo.host_only] * 2
    assert [bo.group for bo in be.bos] == [be.kernel.group_id(3), be.kernel.group_id(4)]
    assert be.run_handle.args[0] == 3
    assert be.run_handle.args[2] == (artifact / "insts.bin").stat().st_size // 4
    (out,) = k(X)
    np.testing.assert_array_equal(out, X + 1)
    assert fake.messages == []


def test_one_run_reused_and_no_per_call_allocation(fake: ModuleType, artifact: Path) -> None:
    k = NpuKernel.load(artifact, backend="xrt")
    handle, bos = xrt_of(k).run_handle, list(xrt_of(k).bos)
    for i in range(3):
        (out,) = k(X + i)
        np.testing.assert_array_equal(out, X + i + 1)
    assert xrt_of(k).run_handle is handle and xrt_of(k).bos == bos
    assert fake.runs_started == 3
    assert len(k.timings) == 3 and k.last_call_s is not None


def test_outputs_are_copies_unless_asked(fake: ModuleType, artifact: Path) -> None:
    k = NpuKernel.load(artifact, backend="xrt")
    (first,) = k(X)
    (view,) = k(X, copy=False)
    k(X + 1)
    np.testing.assert_array_equal(first, X + 1)
    np.testing.assert_array_equal(view, X + 2)  # a view of the output BO, overwritten
    assert type(first) is np.ndarray  # copies own their memory


def test_zero_copy_views_keep_their_bo_alive_after_close(fake: ModuleType,
                                                         artifact: Path) -> None:
    """pyxrt's map() does not own the mapping: the view must hold the BO itself."""
    import gc
    import weakref

    k = NpuKernel.load(artifact, backend="xrt")
    (view,) = k(X, copy=False)
    tail = view[1:]
    bo_ref = weakref.ref(view.bo)
    k.close()
    del view
    gc.collect()
    assert bo_ref() is not None and tail.bo is bo_ref()
    np.testing.assert_array_equal(tail, X[1:] + 1)
    del tail
    gc.collect()
    assert bo_ref() is None


def test_legacy_layout_warns_and_output_clone_reads_zeros(
    fake: ModuleType, tmp_path: Path
) -> None:
    art = make_standin(tmp_path / "rev", order=("out", "in"))
    np.testing.assert_array_equal(NpuKernel.load(art, backend="xrt")(X)[0], X + 1)
    with pytest.warns(UserWarning, match="legacy.*clone"):
        k = NpuKernel.load(art, backend="xrt", layout="legacy")
    assert any(
        "no compute units with connectivity required for global argument at index 3" in m
        and "Allocating local copy of argument buffer in connected bank" in m
        for m in fake.messages
    )
    (out,) = k(X)
    assert not out.any()  # the kernel wrote the clone; the caller's BO stays zero


def test_legacy_layout_input_clone_is_stale(fake: ModuleType, artifact: Path) -> None:
    with pytest.warns(UserWarning, match="argument 3 from group_id\\(2\\)"):
        k = NpuKernel.load(artifact, backend="xrt", layout="legacy")
    (out,) = k(X)
    # the kernel read the copy XRT took when the argument was set (all zeros), not X
    np.testing.assert_array_equal(out, np.ones(N, dtype=np.int8))


@pytest.mark.parametrize("state", ["ERT_CMD_STATE_TIMEOUT", "ERT_CMD_STATE_ERROR",
                                   "ERT_CMD_STATE_ABORT"])
def test_failed_state_raises_with_its_name(fake: ModuleType, artifact: Path, state: str) -> None:
    k = NpuKernel.load(artifact, backend="xrt")
    xrt_of(k).views[1][:] = 42
    fake.config.state = fake.ert_cmd_state[state]
    with pytest.raises(RunError, match=f"{state} \\(\\d\\), not COMPLETED"):
        k(X)
    assert (xrt_of(k).views[1] == 42).all()  # results were never synced back
    fake.config.state = fake.ert_cmd_state.ERT_CMD_STATE_COMPLETED
    with pytest.raises(RunError, match="earlier run ended in " + state):
        k(X)


def test_fake_refuses_ninstr_in_bytes(fake: ModuleType, artifact: Path) -> None:
    k = NpuKernel.load(artifact, backend="xrt")
    xrt_of(k).run_handle.set_arg(2, xrt_of(k).n_words * 4)
    with pytest.raises(RunError, match="ERT_CMD_STATE_ERROR"):
        k(X)


@pytest.mark.parametrize(("flags", "code"), [("normal", "err=95"), ("device_only", "err=22"),
                                             ("svm", "err=22")])
def test_driver_bo_flag_errors_are_translated(
    fake: ModuleType, artifact: Path, flags: str, code: str
) -> None:
    layout = BoLayout("probe", 1, (3, 4), data_flags=flags)
    with pytest.raises(RunError) as e:
        NpuKernel.load(artifact, backend="xrt", layout=layout)
    assert BO_FLAG_MESSAGE in str(e.value) and code in str(e.value)


def test_no_device_is_one_line_naming_the_driver(fake: ModuleType, artifact: Path) -> None:
    fake.config.devices = 0
    with pytest.raises(NoDeviceError) as e:
        NpuKernel.load(artifact, backend="xrt")
    msg = str(e.value)
    assert "\n" not in msg
    assert "amdxdna" in msg and "/dev/accel/accel0" in msg and "xrt-smi validate" in msg


def test_missing_pyxrt_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, fake: ModuleType, artifact: Path
) -> None:
    hide_pyxrt(monkeypatch)
    with pytest.raises(ToolchainError, match=r"source /opt/xilinx/xrt/setup\.sh"):
        NpuKernel.load(artifact, backend="xrt")


def test_context_limit_is_named(fake: ModuleType, artifact: Path) -> None:
    fake.config.hwctx_limit = 2
    held = [NpuKernel.load(artifact, backend="xrt") for _ in range(2)]
    with pytest.raises(RunError, match=r"6 on Phoenix.*other processes may hold them"):
        NpuKernel.load(artifact, backend="xrt")
    held.pop().close()
    NpuKernel.load(artifact, backend="xrt").close()
    assert fake.live_contexts() == 1


def test_auto_falls_back_to_emu_with_a_notice(
    fake: ModuleType, artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.config.devices = 0
    with caplog.at_level(logging.WARNING, logger="npukit.runtime"):
        k = NpuKernel.load(artifact)
    assert k.backend_name == "emu"
    assert "no NPU" in caplog.text and "emulator" in caplog.text
    np.testing.assert_array_equal(k(X)[0], X + 1)


def test_auto_prefers_the_npu(fake: ModuleType, artifact: Path) -> None:
    assert NpuKernel.load(artifact).backend_name == "xrt"


def test_xrt_refuses_an_emulation_only_artifact(fake: ModuleType, tmp_path: Path) -> None:
    art = make_standin(tmp_path / "emu", emulation_only=True)
    with pytest.raises(RunError, match="emulation-only"):
        NpuKernel.load(art, backend="xrt")
    assert NpuKernel.load(art).backend_name == "emu"


def test_xclbin_with_too_few_data_args_is_refused(fake: ModuleType, tmp_path: Path) -> None:
    art = make_standin(tmp_path / "short", n_data_args=1)
    with pytest.raises(ArtifactError, match="no memory to argument 4"):
        NpuKernel.load(art, backend="xrt")


def test_fake_direct_call_style_runs_the_design(fake: ModuleType, artifact: Path) -> None:
    dev = fake.device(0)
    xb = fake.xclbin(str(artifact / "final.xclbin"))
    dev.register_xclbin(xb)
    kern = fake.kernel(fake.hw_context(dev, xb.get_uuid()), "MLIR_AIE")
    insts = (artifact / "insts.bin").read_bytes()
    instr = fake.bo(dev, len(insts), fake.bo.cacheable, kern.group_id(1))
    instr.write(insts, 0)
    instr.sync(fake.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
    bo_in = fake.bo(dev, N, fake.bo.host_only, kern.group_id(3))
    bo_out = fake.bo(dev, N, fake.bo.host_only, kern.group_id(4))
    bo_in.write(X, 0)
    # without a sync the device still sees zeros: the fake keeps host and device copies apart
    kern(3, instr, len(insts) // 4, bo_in, bo_out).wait(1000)
    bo_out.sync(fake.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE)
    np.testing.assert_array_equal(bo_out.read(N, 0), np.ones(N, dtype=np.int8))
    bo_in.sync(fake.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
    state = kern(3, instr, len(insts) // 4, bo_in, bo_out).wait(1000)
    assert state == fake.ert_cmd_state.ERT_CMD_STATE_COMPLETED
    bo_out.sync(fake.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE)
    np.testing.assert_array_equal(bo_out.read(N, 0), X + 1)


def test_out_of_locked_memory_names_the_memlock_limit(
    fake: ModuleType, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("bo allocation failed (err=12): Cannot allocate memory")

    monkeypatch.setattr(fake.bo, "__init__", refuse)
    with pytest.raises(RunError, match=r"instruction BO.*ulimit -l unlimited"):
        NpuKernel.load(artifact, backend="xrt")


def test_the_fake_driver_refuses_out_of_range_syncs_and_empty_bos(fake: ModuleType) -> None:
    """The double must not be more lenient than XRT, or runtime bugs would pass here."""
    dev = fake.device(0)
    with pytest.raises(RuntimeError, match="size 0 must be positive"):
        fake.bo(dev, 0, fake.bo.host_only, 0)
    b = fake.bo(dev, 16, fake.bo.host_only, 0)
    to_device = fake.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
    b.sync(to_device, 16, 0)
    for size, offset in ((4096, 0), (4, 100)):
        with pytest.raises(RuntimeError, match="outside the 16-byte BO"):
            b.sync(to_device, size, offset)

"""The pyxrt backend against the fake driver: BO layout, clones, run states, error translation."""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from runtime.errors import ArtifactError, RunError, ToolchainError
from runtime.kernel import NpuKernel
from runtime.xrt import BO_FLAG_MESSAGE, BoLayout, NoDeviceError, NpuSetupError
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
    fake.config.state = getattr(fake.ert_cmd_state, state)
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


# XRT PR #9132: the text a failing locked mmap gives since then (err=-11, EAGAIN)
MMAP_EAGAIN = ("mmap(addr=0x793258000000, len=67108864, prot=3, flags=8209, offset=4362100736) "
               "failed (err=-11): Resource temporarily unavailable")


@pytest.mark.parametrize("text", [MMAP_EAGAIN,
                                  "bo allocation failed (err=12): Cannot allocate memory"])
def test_out_of_locked_memory_names_the_memlock_limit(
    fake: ModuleType, artifact: Path, text: str
) -> None:
    fake.config.bo_error = text
    with pytest.raises(NpuSetupError, match=r"instruction BO.*ulimit -l unlimited"):
        NpuKernel.load(artifact, backend="xrt")


@pytest.mark.parametrize("backend", ["xrt", "auto"])
def test_a_failing_device_heap_mmap_is_not_no_npu(
    fake: ModuleType, artifact: Path, backend: str
) -> None:
    """Opening the device maps its heap locked: a memlock failure there is a setup error,
    so `auto` must not hide it behind the emulator."""
    fake.config.device_error = MMAP_EAGAIN
    with pytest.raises(NpuSetupError) as e:
        NpuKernel.load(artifact, backend=backend)
    msg = str(e.value)
    assert "no NPU found" not in msg and "ulimit -l unlimited" in msg and "err=-11" in msg


def fake_sysfs(root: Path, driver: str) -> Path:
    """/sys/class/accel with one accel0 whose device is bound to `driver`."""
    (root / "drivers" / driver).mkdir(parents=True)
    (root / "accel" / "accel0" / "device").mkdir(parents=True)
    (root / "accel" / "accel0" / "device" / "driver").symlink_to(root / "drivers" / driver)
    return root / "accel"


def test_auto_does_not_emulate_when_an_npu_is_present_but_unusable(
    monkeypatch: pytest.MonkeyPatch, fake: ModuleType, artifact: Path, tmp_path: Path
) -> None:
    hide_pyxrt(monkeypatch)
    monkeypatch.setattr("runtime.xrt.SYS_ACCEL", fake_sysfs(tmp_path / "sys", "amdxdna"))
    with pytest.raises(NpuSetupError) as e:
        NpuKernel.load(artifact)
    msg = str(e.value)
    assert "/dev/accel/accel0" in msg and "pyxrt is not importable" in msg
    assert "backend='emu'" in msg and "\n" not in msg


def test_auto_emulates_where_the_accel_device_is_not_an_npu(
    monkeypatch: pytest.MonkeyPatch, fake: ModuleType, artifact: Path, tmp_path: Path
) -> None:
    hide_pyxrt(monkeypatch)
    monkeypatch.setattr("runtime.xrt.SYS_ACCEL", fake_sysfs(tmp_path / "sys", "ivpu"))
    assert NpuKernel.load(artifact).backend_name == "emu"


@pytest.mark.parametrize("backend", ["xrt", "emu"])
@pytest.mark.parametrize("timeout", [-1, 1.5, None, True, 2**32, "10"])
def test_timeout_ms_is_checked_at_load(
    fake: ModuleType, artifact: Path, backend: str, timeout: object
) -> None:
    with pytest.raises(RunError, match=r"timeout_ms=.*0 waits forever"):
        NpuKernel.load(artifact, backend=backend, timeout_ms=timeout)  # type: ignore[arg-type]
    assert fake.runs_started == 0


def test_timeout_ms_zero_waits_without_a_limit(fake: ModuleType, artifact: Path) -> None:
    k = NpuKernel.load(artifact, backend="xrt", timeout_ms=0)
    np.testing.assert_array_equal(k(X)[0], X + 1)
    fake.config.hang = True  # wait(0) on a run that never ends would block: the fake refuses
    with pytest.raises(RunError, match=r"waiting for the kernel run failed.*marked failed"):
        k(X)


def test_a_failed_start_is_one_line_and_marks_the_kernel_failed(
    fake: ModuleType, artifact: Path
) -> None:
    k = NpuKernel.load(artifact, backend="xrt")
    fake.config.start_error = "DRM_IOCTL_AMDXDNA_EXEC_CMD IOCTL failed (err=-22): Invalid argument"
    with pytest.raises(RunError, match=r"starting the kernel run failed: DRM_IOCTL.*reload it"):
        k(X)
    fake.config.start_error = ""
    with pytest.raises(RunError, match="earlier run ended in a failed start"):
        k(X)
    assert fake.runs_started == 0


def test_a_run_still_going_after_the_timeout_is_said_so_and_never_restarted(
    fake: ModuleType, artifact: Path
) -> None:
    k = NpuKernel.load(artifact, backend="xrt", timeout_ms=5)
    fake.config.hang = True
    with pytest.raises(RunError, match=r"did not complete within 5 ms and is still running"):
        k(X)
    with pytest.raises(RunError, match="earlier run ended in ERT_CMD_STATE_TIMEOUT"):
        k(X)  # a second start would be refused by XRT ("bad command state"); it never happens
    assert fake.runs_started == 1


def test_kernels_in_two_contexts_use_their_own_slots(fake: ModuleType, artifact: Path) -> None:
    a, b = (NpuKernel.load(artifact, backend="xrt") for _ in range(2))
    assert {xrt_of(k).bos[0].group >> 16 for k in (a, b)} == {1, 2}
    np.testing.assert_array_equal(a(X)[0], X + 1)
    np.testing.assert_array_equal(b(X + 1)[0], X + 2)


def test_legacy_layout_input_clone_is_caught_by_the_independence_check(
    fake: ModuleType, artifact: Path
) -> None:
    """Under the legacy layout every call computes f(zeros): test-hw's check must say so."""
    from codegen.testhw import input_flags
    from tests.test_runtime_support import StandinSpec

    with pytest.warns(UserWarning, match="every call computes on the copy taken at load"):
        k = NpuKernel.load(artifact, backend="xrt", layout="legacy")
    spec = StandinSpec()
    cases = [(f"seed{s}", spec.random_inputs(s)) for s in range(3)]
    runs = [(name, k(x), spec.golden(x)) for name, x in cases]
    flags = input_flags(runs, ["out"])
    assert any("does not depend on the input" in f for f in flags), flags


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


def test_a_multi_kernel_xclbin_runs_its_named_kernel(fake: ModuleType, tmp_path: Path) -> None:
    """Another kernel listed first, with other banks, neither hides ours nor merges into it."""
    art = make_standin(tmp_path / "multi", other_kernels=("vadd",))
    k = NpuKernel.load(art, backend="xrt")
    assert fake.messages == []  # no argument was found in the wrong bank, so nothing cloned
    np.testing.assert_array_equal(k(X)[0], X + 1)


def test_each_data_bo_is_allocated_in_its_own_arguments_group(fake: ModuleType,
                                                              tmp_path: Path) -> None:
    """With one HOST bank per argument, each group id is distinct: a BO allocated in another
    argument's group is in the wrong bank (XRT would clone it), and the layout check says so."""
    art = make_standin(tmp_path / "banks", host_banks=2)
    with NpuKernel.load(art, backend="xrt") as k:
        be = xrt_of(k)
        assert be.kernel.group_id(3) != be.kernel.group_id(4)
        assert [bo.group for bo in be.bos] == [be.kernel.group_id(3), be.kernel.group_id(4)]
        (out,) = k(X)
        np.testing.assert_array_equal(out, X + 1)
    assert fake.messages == []  # no clone warning: every BO is in its argument's bank


def test_an_xclbin_whose_banks_are_tagged_the_other_way_is_refused(fake: ModuleType,
                                                                  tmp_path: Path) -> None:
    """Data arguments connected to an SRAM-tagged bank (and instr to HOST) are a build defect,
    though every group would still match its connection."""
    art = make_standin(tmp_path / "tags", xclbin_tags=("SRAM", "HOST"))
    with pytest.raises(ArtifactError, match=r"argument 1 \(instr\) in bank 1 \(HOST\), "
                                            r"expected SRAM"):
        NpuKernel.load(art, backend="xrt")

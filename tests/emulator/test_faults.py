"""Each broken design fails with a message that points at the fault: line, op, FIFO."""

from pathlib import Path

import numpy as np
import pytest

from runtime.emulator import (
    CoreEndedError,
    DeadlockError,
    DmaError,
    EmulationFault,
    FifoError,
    IncompleteRunError,
    load_design,
)
from runtime.errors import RunError
from tests.emulator import designs

GOOD = designs.one_core()


def broken(old: str, new: str, text: str = GOOD) -> str:
    """`text` with one fault put in; fails loudly if the original snippet is not there."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, snippet: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if snippet in line)


def run(text: str, libs: dict[str, Path], n_in: int = 256, n_out: int = 256) -> None:
    design = load_design(text, libraries=libs)
    design.run([np.zeros(n_in, np.int32), np.zeros(n_out, np.int32)])


def test_the_unbroken_design_runs(libs: dict[str, Path]) -> None:
    run(GOOD, libs)


def test_out_of_bounds_stride_is_a_dma_error_naming_the_line(libs: dict[str, Path]) -> None:
    text = broken(
        "[1, 1, 1, 256][0, 0, 0, 1]) {metadata = @inq",
        "[1, 1, 4, 64][0, 0, 128, 1]) {metadata = @inq",
    )
    with pytest.raises(DmaError) as err:
        run(text, libs)
    msg = str(err.value)
    assert f":{line_of(text, 'metadata = @inq')}:" in msg
    assert "dma_memcpy_nd" in msg and "@inq" in msg and "beyond the host buffer" in msg


def test_waiting_on_an_input_without_issue_token_is_a_dma_error(libs: dict[str, Path]) -> None:
    wait_in = "      aiex.npu.dma_wait {symbol = @inq}\n"
    wait_out = "      aiex.npu.dma_wait {symbol = @outq}\n"
    untokened = broken(wait_out, wait_in + wait_out)
    tokened = broken("metadata = @inq, id = 1 : i64}", "metadata = @inq, id = 1 : i64, "
                     "issue_token = true}", untokened)
    run(tokened, libs)  # with issue_token = true the wait takes its token and returns
    with pytest.raises(DmaError) as err:
        run(untokened, libs)
    msg = str(err.value)
    assert f"aie.mlir:{line_of(untokened, 'symbol = @inq')}: `aiex.npu.dma_wait` on @inq" in msg
    assert f"transfer at line {line_of(untokened, 'metadata = @inq')}" in msg
    assert "issue_token = true" in msg


def test_a_bd_id_outside_the_shims_sixteen_is_a_dma_error(libs: dict[str, Path]) -> None:
    text = broken("metadata = @outq, id = 0 : i64", "metadata = @outq, id = 16 : i64")
    with pytest.raises(DmaError, match=r"BD id 16 is outside 0\.\.15") as err:
        run(text, libs)
    assert f"aie.mlir:{line_of(text, 'metadata = @outq')}:" in str(err.value)


def _two_inputs(middle: str) -> str:
    """GOOD with %in sent in two transfers on @inq, both with BD id 1, `middle` between them
    (the first issues a token, for a wait in `middle` to take)."""
    return broken(
        "      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1]) "
        "{metadata = @inq, id = 1 : i64} : memref<256xi32>\n",
        "      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, 128][0, 0, 0, 1]) "
        "{metadata = @inq, id = 1 : i64, issue_token = true} : memref<256xi32>\n"
        + middle
        + "      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 128][1, 1, 1, 128][0, 0, 0, 1]) "
        "{metadata = @inq, id = 1 : i64} : memref<256xi32>\n",
    )


def test_a_bd_id_reused_while_in_flight_is_a_dma_error(libs: dict[str, Path]) -> None:
    text = _two_inputs("")
    with pytest.raises(DmaError) as err:
        run(text, libs)
    msg = str(err.value)
    first, second = (i for i, line in enumerate(text.splitlines(), 1) if "metadata = @inq" in line)
    assert f"aie.mlir:{second}: `aiex.npu.dma_memcpy_nd` on @inq reuses BD id 1" in msg
    assert f"the transfer at line {first} (on @inq)" in msg and "still in flight" in msg


def test_a_bd_id_may_be_reused_once_its_transfer_is_waited_on(libs: dict[str, Path]) -> None:
    run(_two_inputs("      aiex.npu.dma_wait {symbol = @inq}\n"), libs)


def test_transfer_too_short_deadlocks_naming_the_fifo(libs: dict[str, Path]) -> None:
    text = broken(
        "[1, 1, 1, 256][0, 0, 0, 1]) {metadata = @inq",
        "[1, 1, 1, 192][0, 0, 0, 1]) {metadata = @inq",
    )
    with pytest.raises(DeadlockError) as err:
        run(text, libs)
    msg = str(err.value)
    acquire_line = line_of(text, "acquire @inq")
    assert f"waits at line {acquire_line}: `aie.objectfifo.acquire @inq(Consume, 1)`" in msg
    assert "@inq: 0/2 filled" in msg
    assert f"waits at line {line_of(text, 'dma_wait')}" in msg


def test_transfer_not_a_multiple_of_the_element_is_named(libs: dict[str, Path]) -> None:
    text = broken(
        "[1, 1, 1, 256][0, 0, 0, 1]) {metadata = @inq",
        "[1, 1, 1, 200][0, 0, 0, 1]) {metadata = @inq",
    )
    with pytest.raises(DeadlockError, match=r"partly filled element of @inq \(8 of 64 values\)"):
        run(text, libs)


def test_swapped_fifos_fail_naming_both(libs: dict[str, Path]) -> None:
    text = designs.ATTENTION.replace("metadata = @inq", "metadata = @tmp")
    text = text.replace("metadata = @outq", "metadata = @inq").replace("@tmp", "@outq")
    design = load_design(text, libraries=libs)
    with pytest.raises(DeadlockError) as err:
        design.run([np.zeros(49152, np.int8), np.zeros(16384, np.int8)])
    msg = str(err.value)
    assert "acquire @inq(Consume, 1)" in msg
    # %out (16384 values) fills one 12288-value element of @inq and a third of the next:
    assert "partly filled element of @inq (4096 of 12288 values)" in msg
    # ... so one tile comes out, and %in waits on @outq for the rest of its 49152 values.
    assert "S2MM from @outq" in msg and "moved 4096 of 49152" in msg


def test_acquire_beyond_depth_is_a_fifo_error(libs: dict[str, Path]) -> None:
    text = broken("@inq(Consume, 1) :", "@inq(Consume, 3) :")
    with pytest.raises(FifoError) as err:
        run(text, libs)
    msg = str(err.value)
    assert f":{line_of(text, 'acquire @inq')}:" in msg
    assert "@inq" in msg and "depth is 2" in msg


def test_release_of_what_is_not_held_is_a_fifo_error(libs: dict[str, Path]) -> None:
    text = broken("release @inq(Consume, 1)", "release @inq(Consume, 2)")
    with pytest.raises(FifoError, match=r"releases 2 element\(s\) of @inq but holds 1") as err:
        run(text, libs)
    assert f":{line_of(text, 'release @inq')}:" in str(err.value)


def test_access_after_release_is_a_fifo_error(libs: dict[str, Path]) -> None:
    access = (
        "%x2 = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<64xi32>> "
        "-> memref<64xi32>"
    )
    text = broken(
        "        aie.objectfifo.release @inq(Consume, 1)\n",
        f"        aie.objectfifo.release @inq(Consume, 1)\n        {access}\n",
    )
    with pytest.raises(FifoError) as err:
        run(text, libs)
    msg = str(err.value)
    assert f"aie.mlir:{line_of(text, '%x2 =')}: `aie.objectfifo.subview.access`" in msg
    assert f"acquire at line {line_of(text, 'acquire @inq')} of @inq (Consume)" in msg
    assert f"released at line {line_of(text, 'release @inq')}" in msg


def test_call_on_a_released_element_is_a_fifo_error(libs: dict[str, Path]) -> None:
    text = broken("        aie.objectfifo.release @inq(Consume, 1)\n", "")
    text = broken(
        "        func.call @add_i32",
        "        aie.objectfifo.release @inq(Consume, 1)\n        func.call @add_i32",
        text,
    )
    with pytest.raises(FifoError) as err:
        run(text, libs)
    msg = str(err.value)
    assert f"aie.mlir:{line_of(text, 'func.call')}: `func.call @add_i32`" in msg
    assert "argument 0 points into an element of @inq" in msg
    assert f"released at line {line_of(text, 'release @inq')}" in msg


def test_cumulative_acquire_keeps_the_unreleased_element_usable(libs: dict[str, Path]) -> None:
    # The sliding window releases one of two held elements and keeps using the other.
    design = load_design(designs.sliding_window(tiles=3), libraries=libs)
    x, y = np.arange(192, dtype=np.int32) * 7 - 500, np.zeros(128, np.int32)
    design.run([x, y])
    t = x.reshape(3, 64)
    np.testing.assert_array_equal(y.reshape(2, 64), t[:-1] + t[1:])


def test_missing_release_of_an_output_deadlocks_naming_the_fifo(libs: dict[str, Path]) -> None:
    text = broken("        aie.objectfifo.release @outq(Produce, 1)\n", "")
    with pytest.raises(DeadlockError) as err:
        run(text, libs)
    msg = str(err.value)
    assert "still holds 1 of @outq (Produce)" in msg and "missing `aie.objectfifo.release`" in msg
    assert "S2MM from @outq" in msg


def test_missing_release_of_an_input_leaves_data_in_the_fifo(libs: dict[str, Path]) -> None:
    # Acquires are cumulative (mlir-aie): re-acquiring 1 while holding 1 returns the same
    # element, so the core finishes on stale data and the input stream backs up.
    text = broken("        aie.objectfifo.release @inq(Consume, 1)\n", "")
    with pytest.raises(IncompleteRunError) as err:
        run(text, libs)
    msg = str(err.value)
    assert f":{line_of(text, 'metadata = @inq')}:" in msg and "moved only 128 of 256" in msg
    assert "still holds 1 of @inq (Consume)" in msg


def test_output_never_waited_on_is_incomplete(libs: dict[str, Path]) -> None:
    text = broken("      aiex.npu.dma_wait {symbol = @outq}\n", "")
    with pytest.raises(IncompleteRunError, match="@outq was never waited on"):
        run(text, libs)


def test_core_expecting_more_data_than_sent_is_incomplete(libs: dict[str, Path]) -> None:
    text = broken("%ct = arith.constant 4 : index", "%ct = arith.constant 5 : index")
    with pytest.raises(IncompleteRunError, match=r"acquire @inq\(Consume, 1\)`.*never finished"):
        run(text, libs)


def test_a_core_whose_program_ended_fails_the_next_run(libs: dict[str, Path]) -> None:
    design = load_design(GOOD, libraries=libs)
    x, y = np.arange(256, dtype=np.int32), np.zeros(256, np.int32)
    design.run([x, y])
    assert np.array_equal(y, x + 1)
    with pytest.raises(CoreEndedError) as err:
        design.run([x, y])
    loop = line_of(GOOD, "scf.for")
    assert str(err.value) == (
        f"aie.mlir: core tile(0, 2) finished its program during run 1 (aie.mlir:{loop}); on "
        "the NPU the next invocation would hang waiting on @inq: wrap the core body in a "
        "run-forever loop (scf.for to 9223372036854775807)"
    )
    assert isinstance(err.value, DeadlockError)


def test_after_a_fault_the_next_run_starts_from_a_loaded_design(libs: dict[str, Path]) -> None:
    design = load_design(designs.forever(GOOD), libraries=libs)
    x, y = np.arange(256, dtype=np.int32), np.zeros(256, np.int32)
    with pytest.raises(RunError):
        design.run([x[:128].copy(), y])  # a bad buffer is refused before anything runs
    design.run([x, y])
    design.run([x, y])
    short = broken(
        "[1, 1, 1, 256][0, 0, 0, 1]) {metadata = @inq",
        "[1, 1, 1, 192][0, 0, 0, 1]) {metadata = @inq",
        designs.forever(GOOD),
    )
    faulty = load_design(short, libraries=libs)
    with pytest.raises(DeadlockError):
        faulty.run([x, y])
    # The stuck core and the FIFOs are reset: the same fault is found again, not a new one.
    with pytest.raises(DeadlockError, match=r"@inq: 0/2 filled \(produced 3, consumed 3\)"):
        faulty.run([x, y])


def test_a_forever_core_stopped_mid_iteration_is_incomplete(libs: dict[str, Path]) -> None:
    # The core takes its output buffer before its input: after the last tile of the run it
    # holds a buffer of @outq while it waits for the next input.
    take_in = (
        "        %a = aie.objectfifo.acquire @inq(Consume, 1) : "
        "!aie.objectfifosubview<memref<64xi32>>\n"
        "        %x = aie.objectfifo.subview.access %a[0] : "
        "!aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>\n"
    )
    text = broken(take_in, "", designs.forever(GOOD))
    text = broken("        func.call", take_in + "        func.call", text)
    with pytest.raises(IncompleteRunError) as err:
        run(text, libs)
    msg = str(err.value)
    assert "stopped inside its run-forever loop holding 1 of @outq (Produce)" in msg
    assert f"waits at line {line_of(text, 'acquire @inq')}" in msg


def test_faults_are_run_errors() -> None:
    for fault in (CoreEndedError, DeadlockError, DmaError, FifoError, IncompleteRunError):
        assert issubclass(fault, EmulationFault) and issubclass(fault, RunError)


# -- task-completion tokens and the shim task queue (runtime.emulator.tokens) ------------------
IN_WHOLE = ("      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1]) "
            "{metadata = @inq, id = 1 : i64} : memref<256xi32>\n")
WAIT_OUT = "      aiex.npu.dma_wait {symbol = @outq}\n"


def _inputs(parts: list[tuple[int, int, bool]], after: str = "") -> str:
    """GOOD with %in sent as the transfers (start, length, token), BD ids 1, 2, .., then `after`."""
    return broken(IN_WHOLE, "".join(
        f"      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, {start}][1, 1, 1, {n}][0, 0, 0, 1]) "
        f"{{metadata = @inq, id = {i} : i64{', issue_token = true' if token else ''}}} "
        ": memref<256xi32>\n"
        for i, (start, n, token) in enumerate(parts, 1)) + after)


def test_a_token_nobody_takes_fails_the_run_naming_the_transfer(libs: dict[str, Path]) -> None:
    """It would persist into the next invocation and end that one's first wait on @inq early."""
    text = broken("metadata = @inq, id = 1 : i64}", "metadata = @inq, id = 1 : i64, "
                  "issue_token = true}")
    with pytest.raises(IncompleteRunError) as err:
        run(text, libs)
    msg = str(err.value)
    assert (f"aie.mlir:{line_of(text, 'metadata = @inq')}: `aiex.npu.dma_memcpy_nd` on @inq "
            "issues a task-completion token on @inq that no later") in msg
    assert "the next invocation's first wait on that channel returns on it" in msg


def test_a_wait_that_would_take_a_stale_token_is_refused(libs: dict[str, Path]) -> None:
    """Two token-issuing transfers, one wait: it returns on the first token, before the second
    transfer is done, and leaves that one's token for a later wait to take by mistake."""
    wait_in = "      aiex.npu.dma_wait {symbol = @inq}\n"
    run(_inputs([(0, 128, False), (128, 128, True)], wait_in), libs)  # one token, the last
    text = _inputs([(0, 128, True), (128, 128, True)], wait_in)
    first, second = (i for i, line in enumerate(text.splitlines(), 1) if "metadata = @inq" in line)
    with pytest.raises(DmaError) as err:
        run(text, libs)
    msg = str(err.value)
    assert msg.startswith(f"aie.mlir:{line_of(text, 'symbol = @inq')}: `aiex.npu.dma_wait` on "
                          f"@inq: covers 2 token-issuing transfers on @inq (lines {first}, "
                          f"{second})")
    assert f"returns on the first to arrive (line {first}'s)" in msg
    early = _inputs([(0, 128, True), (128, 128, False)], wait_in)
    with pytest.raises(DmaError, match=r"takes the token of the transfer at line \d+, but the "
                                       r"transfer at line \d+ after it on @inq"):
        run(early, libs)


def test_a_wait_with_no_token_pending_is_refused(libs: dict[str, Path]) -> None:
    text = broken(WAIT_OUT, WAIT_OUT * 2)
    second = len(text.splitlines()) - 3
    assert "dma_wait" in text.splitlines()[second - 1]
    with pytest.raises(DmaError, match=rf"aie\.mlir:{second}: `aiex\.npu\.dma_wait` on @outq: no "
                                       r"transfer was issued on @outq since the last wait"):
        run(text, libs)


def test_one_wait_for_two_output_transfers_is_refused(libs: dict[str, Path]) -> None:
    out = ("      aiex.npu.dma_memcpy_nd(%out[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1]) "
           "{metadata = @outq, id = 0 : i64} : memref<256xi32>\n")
    halves = "".join(
        f"      aiex.npu.dma_memcpy_nd(%out[0, 0, 0, {s}][1, 1, 1, 128][0, 0, 0, 1]) "
        f"{{metadata = @outq, id = {i} : i64}} : memref<256xi32>\n" for i, s in ((0, 0), (2, 128)))
    with pytest.raises(DmaError, match=r"covers 2 device->host transfers on @outq"):
        run(broken(out, halves), libs)
    first, second = halves.splitlines(keepends=True)
    run(broken(out, first + WAIT_OUT + second), libs)


def test_a_fifth_transfer_queued_on_a_shim_channel_is_refused(libs: dict[str, Path]) -> None:
    """The task queue holds 4: a push onto a full one is dropped on the NPU."""
    run(_inputs([(0, 64, False), (64, 64, False), (128, 64, False), (192, 64, False)]), libs)
    text = _inputs([(0, 64, False), (64, 64, False), (128, 64, False), (192, 32, False),
                    (224, 32, False)])
    lines = [i for i, line in enumerate(text.splitlines(), 1) if "metadata = @inq" in line]
    with pytest.raises(DmaError) as err:
        run(text, libs)
    assert str(err.value) == (
        f"aie.mlir:{lines[4]}: `aiex.npu.dma_memcpy_nd` on @inq queues a transfer on the shim "
        f"channel of @inq while 4 are queued and not done (lines "
        f"{', '.join(map(str, lines[:4]))}); a channel's task queue holds 4 (aie-rt "
        "XAIE_DMA_MAX_QUEUE_SIZE) and drops a push onto a full one: wait for an earlier "
        "transfer first")

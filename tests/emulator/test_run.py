"""Designs with known answers run on the emulator and produce them."""

from pathlib import Path

import numpy as np
import pytest

from runtime.emulator import load_design
from tests.emulator import designs

RNG = np.random.default_rng(7)


def ints(n: int) -> np.ndarray:
    return RNG.integers(-1000, 1000, n, dtype=np.int32)


def test_attention_shaped_design_matches_the_model(libs: dict[str, Path]) -> None:
    design = load_design(designs.ATTENTION, libraries=libs)
    x = RNG.integers(-40, 40, 49152, dtype=np.int8)
    y = np.zeros(16384, np.int8)
    stats = design.run([x, y])
    t = x.reshape(4, 3, 4096)
    assert np.array_equal(y.reshape(4, 4096), t[:, 0] + t[:, 1] - t[:, 2])
    assert stats["core_calls"] == 4
    assert stats["bytes_to_device"] == 49152 and stats["bytes_from_device"] == 16384


def test_load_reports_device_and_sequence_arguments(tmp_path: Path) -> None:
    path = tmp_path / "aie.mlir"
    path.write_text(designs.ATTENTION)
    design = load_design(path)
    assert design.device == "npu1_1col"
    assert design.sequence_args == [
        ("in", np.dtype(np.int8), (49152,)),
        ("out", np.dtype(np.int8), (16384,)),
    ]


def test_runs_are_repeatable_with_fresh_inputs(libs: dict[str, Path]) -> None:
    design = load_design(designs.forever(designs.one_core(k=5)), libraries=libs)
    for _ in range(3):
        x, y = ints(256), np.zeros(256, np.int32)
        design.run([x, y])
        assert np.array_equal(y, x + 5)


def test_shaped_buffers_are_accepted_and_written_in_place(libs: dict[str, Path]) -> None:
    design = load_design(designs.one_core(), libraries=libs)
    x, y = ints(256).reshape(16, 16), np.zeros((4, 64), np.int32)
    design.run([x, y])
    assert np.array_equal(y.reshape(-1), x.reshape(-1) + 1)


def test_transpose_by_dma_strides(libs: dict[str, Path]) -> None:
    # The host matrix is 16 rows x 8 cols; d1 walks columns, d0 walks down a column.
    text = designs.one_core(n=32, tiles=4, k=0, in_pattern="[0, 0, 0, 0][1, 1, 8, 16][0, 0, 1, 8]")
    design = load_design(text, libraries=libs)
    x, y = ints(128), np.zeros(128, np.int32)
    design.run([x, y])
    assert np.array_equal(y.reshape(8, 16), x.reshape(16, 8).T)


def test_tiling_into_blocks_and_back(libs: dict[str, Path]) -> None:
    # 16x16 matrix in 8x8 blocks: block row, block col, row in block, col in block.
    blocks = "[0, 0, 0, 0][2, 2, 8, 8][128, 8, 16, 1]"
    text = designs.one_core(
        tiles=4,
        in_pattern=blocks,
        out_pattern=blocks,
        decl="func.func private @tag_i32(memref<{n}xi32>, memref<{n}xi32>, index) "
        'attributes {{link_with = "kernels.o"}}',
        call="func.call @tag_i32(%x, %y, %i) : (memref<{n}xi32>, memref<{n}xi32>, index) -> ()",
    )
    design = load_design(text, libraries=libs)
    x, y = ints(256), np.zeros(256, np.int32)
    design.run([x, y])
    tag = np.repeat(np.repeat(np.array([[0, 1], [2, 3]]), 8, axis=0), 8, axis=1) * 1000
    assert np.array_equal(y.reshape(16, 16), x.reshape(16, 16) + tag)


def test_repeat_dimension_sends_the_data_again(libs: dict[str, Path]) -> None:
    text = designs.one_core(tiles=3, host_in=64, in_pattern="[0, 0, 0, 0][3, 1, 1, 64][0, 0, 0, 1]")
    design = load_design(text, libraries=libs)
    x, y = ints(64), np.zeros(192, np.int32)
    design.run([x, y])
    assert np.array_equal(y, np.tile(x + 1, 3))


def test_several_transfers_on_one_fifo_in_order(libs: dict[str, Path]) -> None:
    text = designs.one_core(tiles=4).replace(
        "aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1])",
        "aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 160][1, 1, 1, 96][0, 0, 0, 1]) "
        "{metadata = @inq, id = 2 : i64} : memref<256xi32>\n      "
        "aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, 160][0, 0, 0, 1])",
    )
    assert text.count("metadata = @inq") == 2
    design = load_design(text, libraries=libs)
    x, y = ints(256), np.zeros(256, np.int32)
    design.run([x, y])
    assert np.array_equal(y, np.concatenate([x[160:], x[:160]]) + 1)


def test_mem_tile_split_and_join_with_two_cores(libs: dict[str, Path]) -> None:
    design = load_design(designs.split_join(tiles=4), libraries=libs)
    x, y = ints(512), np.zeros(512, np.int32)
    stats = design.run([x, y])
    expect = x.reshape(4, 2, 64) + np.array([1, 2]).reshape(1, 2, 1)
    assert np.array_equal(y.reshape(4, 2, 64), expect)
    assert stats["core_calls"] == 8


def test_links_and_cores_keep_their_state_from_run_to_run(libs: dict[str, Path]) -> None:
    design = load_design(designs.forever(designs.split_join(tiles=2)), libraries=libs)
    for _ in range(3):
        x, y = ints(256), np.zeros(256, np.int32)
        design.run([x, y])
        expect = x.reshape(2, 2, 64) + np.array([1, 2]).reshape(1, 2, 1)
        assert np.array_equal(y.reshape(2, 2, 64), expect)
    assert all(f.produced == 6 for name, f in design.fifos.items() if name in ("in0", "out1"))


def test_two_cores_in_a_pipeline(libs: dict[str, Path]) -> None:
    design = load_design(designs.pipeline(tiles=5), libraries=libs)
    x, y = ints(320), np.zeros(320, np.int32)
    design.run([x, y])
    assert np.array_equal(y, (x + 3) * 2)


def test_dimensions_to_stream_on_the_mem_tile(libs: dict[str, Path]) -> None:
    design = load_design(designs.mem_tile_transpose(), libraries=libs)
    x, y = ints(128), np.zeros(128, np.int32)
    design.run([x, y])
    expect = x.reshape(2, 8, 8).transpose(0, 2, 1)
    assert np.array_equal(y.reshape(2, 8, 8), expect)


def test_cumulative_acquire_keeps_a_sliding_window(libs: dict[str, Path]) -> None:
    design = load_design(designs.sliding_window(tiles=5), libraries=libs)
    x, y = ints(320), np.zeros(256, np.int32)
    design.run([x, y])
    t = x.reshape(5, 64)
    assert np.array_equal(y.reshape(4, 64), t[:-1] + t[1:])


def test_broadcast_to_two_cores_and_two_waits(libs: dict[str, Path]) -> None:
    design = load_design(designs.broadcast(tiles=3), libraries=libs)
    x, y2, y3 = ints(192), np.zeros(192, np.int32), np.zeros(192, np.int32)
    design.run([x, y2, y3])
    assert np.array_equal(y2, x + 1) and np.array_equal(y3, x + 2)


def test_data_movement_only_needs_no_core_library() -> None:
    design = load_design(designs.DATA_MOVEMENT_ONLY)
    x, y = ints(192), np.zeros(192, np.int32)
    design.run([x, y])
    assert np.array_equal(y.reshape(3, 16, 4), x.reshape(3, 4, 16).transpose(0, 2, 1))


def test_core_buffer_and_index_cast(libs: dict[str, Path]) -> None:
    design = load_design(designs.accumulate(tiles=3, endless=True), libraries=libs)
    assert (design.buffers["acc"] == 7).all()
    for _ in range(2):
        x, y = ints(192), np.zeros(64, np.int32)
        design.run([x, y])
        assert np.array_equal(y, x.reshape(3, 64).sum(axis=0))


def test_endless_core_loop_parked_at_an_acquire_is_not_an_error(libs: dict[str, Path]) -> None:
    text = designs.one_core(tiles=4).replace(
        "%ct = arith.constant 4 : index", "%ct = arith.constant 9223372036854775807 : index"
    )
    design = load_design(text, libraries=libs)
    x, y = ints(256), np.zeros(256, np.int32)
    design.run([x, y])
    assert np.array_equal(y, x + 1)


def _tagging(tiles: int) -> str:
    """One core, forever: out tile = in tile + 1000 x (the core's loop counter)."""
    return designs.forever(
        designs.one_core(
            tiles=tiles,
            decl="func.func private @tag_i32(memref<{n}xi32>, memref<{n}xi32>, index) "
            'attributes {{link_with = "kernels.o"}}',
            call="func.call @tag_i32(%x, %y, %i) : (memref<{n}xi32>, memref<{n}xi32>, index) -> ()",
        )
    )


def test_core_programs_carry_on_from_run_to_run(libs: dict[str, Path]) -> None:
    # The core's loop counter goes on counting across runs: its program started once.
    design = load_design(_tagging(tiles=2), libraries=libs)
    for run in range(3):
        x, y = ints(128), np.zeros(128, np.int32)
        stats = design.run([x, y])
        tags = np.repeat([2 * run, 2 * run + 1], 64) * 1000
        assert np.array_equal(y, x + tags), f"run {run}"
        assert stats["core_calls"] == 2
    assert design.runs == 3


def test_runs_forever_is_read_from_the_core_body() -> None:
    assert load_design(_tagging(tiles=2)).model.cores[0].runs_forever
    assert not load_design(designs.one_core()).model.cores[0].runs_forever
    # A loop of 2**31 - 1 trips is long, not forever.
    long = designs.one_core().replace(
        "%ct = arith.constant 4 : index", "%ct = arith.constant 2147483647 : index"
    )
    assert not load_design(long).model.cores[0].runs_forever
    # Only the outermost loop counts: a forever loop nested in a finite one ends with it.
    endless = designs.accumulate(endless=True)
    assert load_design(endless).model.cores[0].runs_forever
    assert not load_design(designs.accumulate()).model.cores[0].runs_forever


def test_per_run_overhead_of_a_forever_core_is_small(libs: dict[str, Path]) -> None:
    import time

    design = load_design(_tagging(tiles=1), libraries=libs)
    x, y = ints(64), np.zeros(64, np.int32)
    design.run([x, y])
    start = time.perf_counter()
    for _ in range(200):
        design.run([x, y])
    per_run = (time.perf_counter() - start) / 200
    assert per_run < 1e-3, f"{per_run * 1e6:.0f} us per run"


@pytest.mark.parametrize(
    ("buffers", "message"),
    [
        ([np.zeros(256, np.int32)], "takes 2 buffers"),
        ([np.zeros(256, np.int16), np.zeros(256, np.int32)], "dtype int16"),
        ([np.zeros(255, np.int32), np.zeros(256, np.int32)], "255 elements"),
        ([np.zeros(512, np.int32)[::2], np.zeros(256, np.int32)], "C-contiguous"),
    ],
)
def test_bad_host_buffers_are_refused(
    libs: dict[str, Path], buffers: list[np.ndarray], message: str
) -> None:
    from runtime.errors import RunError

    design = load_design(designs.one_core(), libraries=libs)
    with pytest.raises(RunError, match=message):
        design.run(buffers)

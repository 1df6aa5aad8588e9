"""Shim DMA addressing and the hardware limits the static checker reuses."""

import re
from pathlib import Path

import numpy as np
import pytest

from runtime.emulator.dma import (
    EXEMPTION,
    MLIR_AIE_RELEASE,
    RELEASE_EXEMPTION,
    check_bd_id,
    check_dma,
    dma_element_indices,
)


def test_linear_transfer() -> None:
    idx = dma_element_indices([0, 0, 0, 8], [1, 1, 1, 4], [0, 0, 0, 1])
    assert idx.tolist() == [8, 9, 10, 11]


def test_offsets_scale_by_their_strides() -> None:
    idx = dma_element_indices([0, 0, 2, 1], [1, 1, 2, 2], [0, 0, 10, 1])
    assert idx.tolist() == [21, 22, 31, 32]


def test_outermost_dimension_repeats() -> None:
    idx = dma_element_indices([0, 0, 0, 0], [3, 1, 1, 2], [0, 0, 0, 1])
    assert idx.tolist() == [0, 1, 0, 1, 0, 1]


def test_transpose_order() -> None:
    idx = dma_element_indices([0, 0, 0, 0], [1, 1, 3, 2], [0, 0, 1, 3])
    assert np.array_equal(np.arange(6).reshape(2, 3).T.reshape(-1), idx)


def test_a_legal_transfer_has_no_problems() -> None:
    assert check_dma([0, 0, 0, 0], [1, 1, 1, 49152], [0, 0, 0, 1], 1, 49152) == []


@pytest.mark.parametrize(
    ("offsets", "sizes", "strides", "elem_bytes", "n", "problem"),
    [
        ([0, 0, 0, 1], [1, 1, 1, 4], [0, 0, 0, 1], 1, 64, "not 4-byte aligned"),
        ([0, 0, 0, 0], [1, 1, 1, 6], [0, 0, 0, 1], 1, 64, "not a multiple of 32 bits"),
        ([0, 0, 0, 0], [1, 1, 4, 4], [0, 0, 4, 2], 1, 64, "stride 2 of d0 is 2 bytes"),
        ([0, 0, 0, 0], [1, 1, 2, 4], [0, 0, 3, 1], 1, 64, "stride 3 of d1"),
        ([0, 0, 0, 0], [1, 1, 1, 8], [0, 0, 0, 1], 8, 64, "exceeds the DMA's 32 bits"),
        ([0, 0, 0, 0], [1, 1, 2, 1024], [0, 0, 2048, 1], 4, 4096, "1023-word limit"),
        ([0, 0, 0, 0], [1, 1, 2, 64], [0, 0, 64, 1], 4, 100, "beyond the host buffer"),
        ([0, 0, 0, 0], [1, 1, 0, 64], [0, 0, 64, 1], 4, 100, "at least 1"),
        ([0, 0, 0, 0], [65, 1, 1, 4], [0, 0, 0, 1], 4, 64, "repeat count"),
        ([0, 0, 0, 0], [1, 1, 1024, 4], [0, 0, 8, 1], 4, 8192, "d1 size 1024"),
        # A stride is encoded in words even where its dimension has size 1 (verifyStridesWraps).
        ([0, 0, 0, 0], [1, 1, 1, 8], [0, 3, 0, 1], 1, 64, "stride 3 of d2 is 3 bytes"),
        ([0, 0, 0, 0], [2, 1, 1, 4], [1, 0, 0, 1], 1, 64, "stride 1 of d3 is 1 bytes"),
        # Sizes of 1 everywhere but a d0 stride of 2: not linear, so the d0 wrap applies.
        ([0, 0, 0, 0], [1, 1, 1, 2048], [0, 0, 0, 2], 4, 4096, "1023-word limit"),
        ([0, 0, 0, 0], [1, 2, 2, 4], [0, 0, 4, 1], 4, 64, "only the repeat dimension"),
        ([0, 0, 0, 0], [1, 1, 2, 4], [0, 0, (1 << 20) + 1, 1], 4, 1 << 22, "exceeds 1048576"),
    ],
)
def test_each_limit_is_reported(
    offsets: list[int],
    sizes: list[int],
    strides: list[int],
    elem_bytes: int,
    n: int,
    problem: str,
) -> None:
    problems = check_dma(offsets, sizes, strides, elem_bytes, n)
    assert any(problem in p for p in problems), problems


def test_long_linear_transfers_are_not_limited_by_the_d0_wrap() -> None:
    assert check_dma([0, 0, 0, 0], [1, 1, 1, 8192], [0, 0, 0, 1], 4, 8192) == []


def test_contiguous_nd_transfers_are_linear_for_the_wrap_limits() -> None:
    # Rows of 1024 words back to back: mlir-aie lowers this in linear mode (#2924).
    assert check_dma([0, 0, 0, 0], [1, 1, 2, 1024], [0, 0, 1024, 1], 4, 2048) == []
    assert check_dma([0, 0, 0, 0], [1, 2, 1024, 4], [0, 4096, 4, 1], 4, 8192) == []
    # A size-1 dimension's stride is never applied, so any word-aligned value keeps it linear.
    assert check_dma([0, 0, 0, 0], [1, 1, 1, 2048], [0, 4, 8, 1], 4, 2048) == []


def test_narrow_elements_move_whole_words_along_d0() -> None:
    # int8 with a d0 stride of 8 bytes: two words at 8-byte steps, 4 bytes each.
    assert check_dma([0, 0, 0, 0], [1, 1, 1, 8], [0, 0, 0, 8], 1, 64) == []
    idx = dma_element_indices([0, 0, 0, 0], [1, 1, 1, 8], [0, 0, 0, 8], 1)
    assert idx.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    # ... so the bound is checked on the last byte of the last word.
    problems = check_dma([0, 0, 0, 0], [1, 1, 1, 8], [0, 0, 0, 8], 1, 11)
    assert any("up to element 11" in p for p in problems), problems


def test_bd_ids_are_the_shims_sixteen() -> None:
    assert check_bd_id(0) == [] and check_bd_id(15) == []
    assert "outside 0..15" in check_bd_id(16)[0] and check_bd_id(-1)


def test_the_wrap_rule_is_the_pinned_releases() -> None:
    """The exemption from the 1023-word wraps changed between mlir-aie releases: the checks
    follow the release CI installs, so a pin bump fails here until the rule is re-read."""
    pins = (Path(__file__).resolve().parents[2] / ".github" / "toolchain-pins.txt").read_text()
    (pinned,) = re.findall(r"^mlir_aie==(\S+)$", pins, flags=re.M)
    assert pinned == MLIR_AIE_RELEASE
    assert RELEASE_EXEMPTION[MLIR_AIE_RELEASE] == EXEMPTION


def test_a_contiguous_transfer_is_exempt_only_where_the_release_says() -> None:
    # [1, 1, 2, 32768] on i8: two contiguous rows of 8,192 words.
    args = ([0, 0, 0, 0], [1, 1, 2, 32768], [0, 0, 32768, 1], 1, 65536)
    assert check_dma(*args, exemption="contiguous") == []
    (problem,) = check_dma(*args, exemption="linear")
    assert "8192 words exceeds the 1023-word limit" in problem and "linear form" in problem
    # The pinned release's rule names the release in its message.
    (problem,) = check_dma([0, 0, 0, 0], [1, 1, 2, 1024], [0, 0, 2048, 1], 4, 4096)
    assert f"mlir-aie {MLIR_AIE_RELEASE}" in problem

"""Shim DMA addressing and hardware limits, shared by the emulator and the static checker.

A `aiex.npu.dma_memcpy_nd` gives offsets, sizes and strides outermost first ([d3, d2, d1, d0]),
all in elements of the host memref's element type; d3 is the repeat count. The start address is
the sum of offset times stride over the dimensions, as mlir-aie's `getOffsetInBytes` computes it.
"""

from collections.abc import Sequence

import numpy as np

# Shim BD fields address 32-bit words (NPU_FACTS section 2; mlir-aie `getAddressGenGranularity`).
WORD_BYTES = 4
# Limits checked by mlir-aie's `NpuDmaMemcpyNdOp::verify` for ND transfers: the d0 and d1
# wraps are 10-bit (d0 counted in 32-bit words), the repeat count (d3) is at most 64, strides
# are at most 1M words, and only the repeat dimension may have a zero stride.
MAX_WRAP = 1023
MAX_REPEAT = 64
MAX_STRIDE_WORDS = 1 << 20
MAX_ELEMENT_BYTES = 4


def dma_element_indices(
    offsets: Sequence[int], sizes: Sequence[int], strides: Sequence[int]
) -> np.ndarray:
    """The host-buffer element index of each element the transfer moves, in stream order."""
    _check_rank(offsets, sizes, strides)
    base = sum(o * t for o, t in zip(offsets, strides, strict=True))
    index = np.full((1, 1, 1, 1), base, dtype=np.int64)
    for axis, (size, stride) in enumerate(zip(sizes, strides, strict=True)):
        shape = [1, 1, 1, 1]
        shape[axis] = size
        index = index + (np.arange(size, dtype=np.int64) * stride).reshape(shape)
    return index.reshape(-1)


def is_nd(sizes: Sequence[int]) -> bool:
    """True when the transfer uses d1 or d2, so the d0 wrap limit applies."""
    return sizes[1] > 1 or sizes[2] > 1


def check_dma(
    offsets: Sequence[int],
    sizes: Sequence[int],
    strides: Sequence[int],
    elem_bytes: int,
    buffer_elems: int,
) -> list[str]:
    """The shim DMA limits this transfer breaks, one sentence each; empty when it is fine."""
    _check_rank(offsets, sizes, strides)
    problems: list[str] = []
    if elem_bytes > MAX_ELEMENT_BYTES:
        problems.append(f"element width {8 * elem_bytes} bits exceeds the DMA's 32 bits")
    if any(s < 1 for s in sizes):
        problems.append(f"sizes {list(sizes)} must all be at least 1")
    if any(t < 0 for t in strides) or any(o < 0 for o in offsets):
        problems.append("offsets and strides must not be negative")
    if problems:
        return problems
    base = sum(o * t for o, t in zip(offsets, strides, strict=True))
    if (base * elem_bytes) % WORD_BYTES:
        problems.append(
            f"start offset {base} elements = {base * elem_bytes} bytes is not 4-byte aligned"
        )
    d0_bytes = sizes[3] * elem_bytes
    if d0_bytes % WORD_BYTES:
        problems.append(
            f"innermost size {sizes[3]} x {elem_bytes} bytes is not a multiple of 32 bits"
        )
    if elem_bytes < WORD_BYTES and sizes[3] > 1 and strides[3] != 1:
        problems.append(
            f"innermost stride {strides[3]} must be 1 for {8 * elem_bytes}-bit elements "
            "(the DMA moves 32-bit words)"
        )
    for dim in range(3):
        if sizes[dim] > 1 and (strides[dim] * elem_bytes) % WORD_BYTES:
            problems.append(f"stride {strides[dim]} of d{3 - dim} is not a multiple of 32 bits")
    if sizes[0] > MAX_REPEAT:
        problems.append(f"repeat count (d3 size) {sizes[0]} exceeds {MAX_REPEAT}")
    if is_nd(sizes):
        if d0_bytes // WORD_BYTES > MAX_WRAP:
            problems.append(
                f"innermost size {sizes[3]} = {d0_bytes // WORD_BYTES} words exceeds the "
                f"{MAX_WRAP}-word limit of an ND transfer"
            )
        if sizes[2] > MAX_WRAP:
            problems.append(f"d1 size {sizes[2]} exceeds the {MAX_WRAP} limit of an ND transfer")
        for dim in (1, 2):
            if sizes[dim] > 1 and strides[dim] == 0:
                problems.append(
                    f"d{3 - dim} has size {sizes[dim]} but stride 0; only the repeat "
                    "dimension (d3) may have a zero stride"
                )
    for dim in range(3):
        if sizes[dim] > 1 and strides[dim] * elem_bytes // WORD_BYTES > MAX_STRIDE_WORDS:
            problems.append(f"stride {strides[dim]} of d{3 - dim} exceeds {MAX_STRIDE_WORDS} words")
    last = base + sum((s - 1) * t for s, t in zip(sizes, strides, strict=True))
    if last >= buffer_elems:
        problems.append(
            f"reads/writes up to element {last}, beyond the host buffer's {buffer_elems} elements"
        )
    return problems


def _check_rank(offsets: Sequence[int], sizes: Sequence[int], strides: Sequence[int]) -> None:
    if not len(offsets) == len(sizes) == len(strides) == 4:
        raise ValueError("a dma_memcpy_nd has 4 offsets, 4 sizes and 4 strides")

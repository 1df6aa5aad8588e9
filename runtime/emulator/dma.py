"""Shim DMA addressing and hardware limits, shared by the emulator and the static checker.

A `aiex.npu.dma_memcpy_nd` gives offsets, sizes and strides outermost first ([d3, d2, d1, d0]),
all in elements of the host memref's element type; d3 is the repeat count. The start address is
the sum of offset times stride over the dimensions, as mlir-aie's `getOffsetInBytes` computes it.

The limits are those of mlir-aie's `NpuDmaMemcpyNdOp::verify` and `verifyStridesWraps`
(lib/Dialect/AIEX/IR/AIEXDialect.cpp, 2026), which encode each dimension in 32-bit words; the
exemption from the wrap limits follows the pinned release (MLIR_AIE_RELEASE).
"""

from collections.abc import Sequence

import numpy as np

# Shim BD fields address 32-bit words (NPU_FACTS section 2; mlir-aie `getAddressGenGranularity`).
WORD_BYTES = 4
# `verifyStridesWraps` on a shim NOC tile: 10-bit d0/d1 wraps (d0 counted in words) unless the
# transfer is linear or contiguous, a 6-bit repeat (d3) field, 20-bit step fields (in words).
MAX_WRAP = 1023
# Which transfers escape the 10-bit wraps changed between mlir-aie releases, so the rule follows
# one release: the one pinned in .github/toolchain-pins.txt (tests/emulator/test_dma.py holds
# the two equal, so bumping the pin means re-reading the rule).
# - "linear": only the linear form [n, 1, 1, len][s, 0, 0, 1] (`isLinearTransfer`); the
#   verifier of the March 2026 sources rejects a contiguous [1, 1, 2, 32768] on an i8 buffer.
# - "contiguous": also any contiguous row-major scan on a shim NOC tile, which
#   `NpuDmaMemcpyNdOp::verify` exempts and aie-dma-to-npu lowers in linear mode (after #2924's
#   canonicalization of March 2026; so by mid-2026: mlir-air #1627 of May 2026 matches it, and
#   mlir-aie #3392 of July 2026 names contiguous transfers as the ones that fold to linear mode).
#   1.4.2 follows the 1.3.2 development wheels of June 2026, so it has this rule.
MLIR_AIE_RELEASE = "1.4.2"
WRAP_EXEMPTIONS = {"linear": "the linear form [n, 1, 1, len][s, 0, 0, 1]",
                   "contiguous": "linear and contiguous row-major transfers"}
RELEASE_EXEMPTION = {"1.4.2": "contiguous"}
EXEMPTION = RELEASE_EXEMPTION[MLIR_AIE_RELEASE]
MAX_REPEAT = 64
MAX_STRIDE_WORDS = 1 << 20
MAX_ELEMENT_BYTES = 4
# A shim tile's DMA has 16 buffer descriptors, ids 0..15 (mlir-aie `getNumBDs` for a shim tile).
SHIM_BDS = 16


def dma_element_indices(
    offsets: Sequence[int],
    sizes: Sequence[int],
    strides: Sequence[int],
    elem_bytes: int = WORD_BYTES,
) -> np.ndarray:
    """The host-buffer element index of each element the transfer moves, in stream order.

    The DMA moves whole 32-bit words: for elements narrower than a word and a d0 stride other
    than 1 (a whole number of words, as `check_dma` requires), d0 steps word by word, each step
    moving the word's `4 / elem_bytes` adjacent elements (mlir-aie encodes d0 as size x width /
    32 words at stride x width / 32 words, `encodeHardwareStridesWraps`).
    """
    _check_rank(offsets, sizes, strides)
    base = sum(o * t for o, t in zip(offsets, strides, strict=True))
    index = np.full((1, 1, 1, 1), base, dtype=np.int64)
    for axis in range(3):
        shape = [1, 1, 1, 1]
        shape[axis] = sizes[axis]
        index = index + (np.arange(sizes[axis], dtype=np.int64) * strides[axis]).reshape(shape)
    d0 = _d0_offsets(sizes[3], strides[3], elem_bytes)
    return (index + d0.reshape(1, 1, 1, -1)).reshape(-1)


def _d0_offsets(size: int, stride: int, elem_bytes: int) -> np.ndarray:
    """Element offsets d0 visits: per element, or per word for narrow elements (see above)."""
    per_word = WORD_BYTES // elem_bytes if elem_bytes < WORD_BYTES else 1
    if per_word == 1 or stride == 1 or size % per_word:
        return np.arange(size, dtype=np.int64) * stride
    words = np.arange(size // per_word, dtype=np.int64) * stride
    return (words[:, None] + np.arange(per_word, dtype=np.int64)[None, :]).reshape(-1)


def is_contiguous(sizes: Sequence[int], strides: Sequence[int]) -> bool:
    """True for a row-major scan of d2/d1/d0 (d0 stride 1, each outer stride the product of the
    inner sizes; a size-1 dimension's stride is never applied, so it does not matter).

    mlir-aie lowers such a transfer, and the linear form [n, 1, 1, len][s, 0, 0, 1], in linear
    mode, whose length register is wide: the 10-bit d0/d1 wraps do not apply (#2924).
    """
    if strides[3] != 1:
        return False
    if sizes[2] > 1 and strides[2] != sizes[3]:
        return False
    return not (sizes[1] > 1 and strides[1] != sizes[3] * sizes[2])


def is_linear(sizes: Sequence[int], strides: Sequence[int]) -> bool:
    """The linear form [n, 1, 1, len][s, 0, 0, 1] (mlir-aie `isLinearTransfer`)."""
    return sizes[1] == sizes[2] == 1 and strides[3] == 1 and strides[1] == strides[2] == 0


def is_nd(sizes: Sequence[int], strides: Sequence[int], exemption: str = EXEMPTION) -> bool:
    """True when the 10-bit d0/d1 wraps apply: the transfer is not exempt under `exemption`
    ("linear" or "contiguous", see RELEASE_EXEMPTION)."""
    if exemption == "linear":
        return not is_linear(sizes, strides)
    return not is_contiguous(sizes, strides)


def check_bd_id(bd: int) -> list[str]:
    """The problem with a transfer's buffer-descriptor id, if it is not one of the shim's 16."""
    if 0 <= bd < SHIM_BDS:
        return []
    return [f"BD id {bd} is outside 0..{SHIM_BDS - 1} (a shim tile has {SHIM_BDS} descriptors)"]


def check_dma(
    offsets: Sequence[int],
    sizes: Sequence[int],
    strides: Sequence[int],
    elem_bytes: int,
    buffer_elems: int,
    exemption: str = EXEMPTION,
) -> list[str]:
    """The shim DMA limits this transfer breaks, one sentence each; empty when it is fine.
    `exemption` chooses which transfers escape the wrap limits (default: the pinned release's)."""
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
    names = ("d3", "d2", "d1", "d0")
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
    for dim in (1, 2, 3):
        if sizes[dim] > 1 and strides[dim] == 0:
            problems.append(
                f"{names[dim]} has size {sizes[dim]} but stride 0; only the repeat "
                "dimension (d3) may have a zero stride"
            )
    # Every stride but a d0 stride of 1 is encoded in words, whatever its dimension's size.
    for dim in range(4):
        if dim == 3 and strides[dim] == 1:
            continue
        if (strides[dim] * elem_bytes) % WORD_BYTES:
            problems.append(
                f"stride {strides[dim]} of {names[dim]} is {strides[dim] * elem_bytes} bytes, "
                "not a multiple of 32 bits (every stride but a d0 stride of 1 must be, even "
                "for a dimension of size 1)"
            )
    if sizes[0] > MAX_REPEAT:
        problems.append(f"repeat count (d3 size) {sizes[0]} exceeds {MAX_REPEAT}")
    if is_nd(sizes, strides, exemption):
        source = f"mlir-aie {MLIR_AIE_RELEASE}: " if exemption == EXEMPTION else ""
        rule = f"({source}only {WRAP_EXEMPTIONS[exemption]} are exempt)"
        if d0_bytes // WORD_BYTES > MAX_WRAP:
            problems.append(
                f"innermost size {sizes[3]} = {d0_bytes // WORD_BYTES} words exceeds the "
                f"{MAX_WRAP}-word limit of an ND transfer {rule}"
            )
        if sizes[2] > MAX_WRAP:
            problems.append(f"d1 size {sizes[2]} exceeds the {MAX_WRAP} limit of an ND transfer "
                            f"{rule}")
    for dim in range(4):
        applied = sizes[dim] > 1 if dim < 3 else strides[3] * elem_bytes >= WORD_BYTES
        if applied and strides[dim] * elem_bytes // WORD_BYTES > MAX_STRIDE_WORDS:
            problems.append(
                f"stride {strides[dim]} of {names[dim]} exceeds {MAX_STRIDE_WORDS} words"
            )
    d0 = _d0_offsets(sizes[3], strides[3], elem_bytes)
    outer = zip(sizes[:3], strides[:3], strict=True)
    last = base + int(d0.max()) + sum((s - 1) * t for s, t in outer)
    if last >= buffer_elems:
        problems.append(
            f"reads/writes up to element {last}, beyond the host buffer's {buffer_elems} elements"
        )
    return problems


def _check_rank(offsets: Sequence[int], sizes: Sequence[int], strides: Sequence[int]) -> None:
    if not len(offsets) == len(sizes) == len(strides) == 4:
        raise ValueError("a dma_memcpy_nd has 4 offsets, 4 sizes and 4 strides")

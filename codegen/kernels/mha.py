"""Multi-head attention over whole sequences, int8 in and out: O_h = softmax(Q_h K_hᵀ·s) V_h.

Host layout: q [seq_q, heads·head_dim], k and v [seq_k, heads·head_dim], o like q, all int8
row-major as the projections write them; head h is columns h·d .. h·d+d-1. The runtime
sequence's DMA strides pick heads and tiles, so the host never transposes or copies.

Streaming: a core holds a block of `tq` query rows of one head while the head's keys and values
pass in tiles of `tk` rows. Per query row it keeps a running maximum m, a sum l and an int64
accumulator acc[d] (the online softmax), so no row of scores is ever stored whole.

Fixed-point online softmax (the core code and `golden` do exactly this, per query row):
1. s_j = q·k_j in int32; x_j = round(s_j · c) in Q8 log2 units, c = sq·sk/√d·log2(e) as a
   15-bit multiplier and a shift (round half up). Key j is allowed unless it is a duplicate of
   the last tile (see padding) or masked (causal: allowed when j <= i + seq_k - seq_q).
2. Per tile, mt = max of the allowed x_j (a tile with none leaves the state alone). The first
   tile with an allowed key sets m = mt. A later mt > m rescales: with u = mt - m,
   g = round(EXP2[u & 255] / 2^8) (Q16), l = round(l·g / 2^(16 + (u >> 8))), acc likewise
   (half away from zero; both become 0 when that shift exceeds 62), then m = mt. Since every
   x_j is an integer, the weights a key gets before and after a rescale are exactly
   2^((x_j - m)/256) up to the table's rounding: no error compounds through the exponents.
3. p_j = round(EXP2[t & 255] / 2^(t >> 8)) with t = m - x_j (0 when t >> 8 >= 32 or the key is
   not allowed), EXP2[f] = round(2^24 · 2^(-f/256)): the row maximum has p = 2^24. Rounding to
   nearest (not down) keeps many small weights from biasing the sum, and Q24 keeps 1,499 tiny
   weights from vanishing beside one dominant key.
4. l += Σ p_j, acc_d += Σ p_j·v_jd (int64).
5. At the end r = round(Mo·2^32 / l), Mo = round(sv/so·2^16), and o_d = round(acc_d·r / 2^48)
   half away from zero, saturated to [-128, 127]. l >= 2^24 (the maximum key contributes 2^24),
   |acc·r| < 2^62.

Padding: when tk does not divide seq_k, the K/V tiles come in two runs of `k_half` tiles, one
from key 0 and one ending at the last key, so one 4-D transfer (a repeat of 2 with a stride)
reads them all inside the buffer; keys of the second run below k_half·tk repeat keys of the
first and get zero weight, whatever the tile buffer holds there. Likewise a pass
covers rows·tq consecutive query rows, the last pass of a head starting at seq_q - rows·tq: its
overlapped rows are computed again, bit for bit the same, and written with the same bytes, so
every transfer stays inside the host buffers and no row beyond seq_q exists to be written.

Parallel split: `columns` x `rows` cores. A pass is (head, rows·tq consecutive query rows);
passes are dealt to columns in turn, and the `rows` cores of a column share one pass, each with
its own tq rows. For a causal mask's sake, odd heads take their passes in reverse order and every
other pass of a column hands its blocks to the rows in reverse order, so no core gets only the
late (long) query rows. The column's shim sends the pass's Q rows and then its K tiles on one
channel, V tiles on the other; the mem tile broadcasts both to every core of the column, so each
K/V byte crosses the shim once per pass of rows·tq queries, and the rows' outputs are joined
back into one element.

Runtime parameters (`runtime_params=1`): the three scale-derived constants (logit multiplier
and shift, output multiplier) are not compiled in but come in a fifth host buffer P, one Q/K
element (tk·head_dim bytes) laid out as `P_LAYOUT` says and built by `pack_params`. Each
column's shim sends P first on its Q/K channel (the shim has no third MM2S channel) and waits for
it; the mem tile broadcasts it, and every core copies the constants into its state buffer once
per invocation, before its passes. One build then serves every layer of its shape.

Packed Q|K|V (`packed_qkv=1`): one host buffer qkv [seq, 3·heads·head_dim] holds q's columns,
then k's, then v's, as one fused projection writes them (self-attention: seq_q == seq_k). The
runtime sequence reads each head's q, k and v columns straight out of it, at column offsets 0,
n and 2n (n = heads·head_dim) with the row stride 3n; the cores see the same tiles as with three
buffers, so only the strides change (every transfer is checked against the shim DMA limits).

Vector path (`path=vector`): QKᵀ and PV run on AIE API int8 mmul blocks (R x 8 x 8, R = 4 on
aie2, 8 on aie2p: `QK_BLOCK_ROWS`), per tile and group of 8 query rows; the softmax between them
stays the scalar code. The integers are the scalar path's, so the output is the same bit for bit.
- QKᵀ as Sᵀ = K·Qᵀ, so the K tile needs no transpose: the mem tile streams every Q/K element
  blocked [tk/R][d/8][R][8] (`qk_dims`, `dimensionsToStream`; each block one A operand, as
  matmul's A tiles), and mha_load_q, once per pass, stores the core's Q rows transposed as
  [d/8][tq/8][8][8] (each block one B operand). The group's scores land in a [tk][8] int32 stack
  array (exact in acc32: |s| < 2^21). The params element P crosses the same blocking, and
  mha_params reads its words through it.
- PV: the Q24 weights do not fit an int8 (nor an int16) operand, so each is split into
  `DIGITS` int8 digits of `DIGIT_BITS` bits (p = Σ_k digit_k·2^(7k), the top digit 0..8; the
  softmax stores the weights in the digits' blocked order and vector shifts split them); the
  mem tile streams V blocked [tk/8][d/8][8][8] (`v_dims`, one B operand per block), and per
  digit the group's [8 x tk] digits times V accumulate into int32 digit sums kept after acc's
  int64 rows (acc is 3·tq·d int64 words). A digit sum gathers at most 127·128 per key over at
  most 32767 keys, < 2^29, so no acc32 lane wraps. A row's value, acc + Σ_k sums_k·2^(7k), is
  folded into its int64 row before the row is rescaled, and read whole by mha_end.
A group none of whose rows sees a key of the tile is skipped. tq must be a multiple of 8 and tk
of 8 (chosen 16 and up to 64: the digit sums take twice the scalar accumulator's memory).
`workload` counts the mmul MACs at the vector rate, per whole group, and the softmax, the score
read-back, the blocked weight store, the vector digit split (in vector cycles), mha_load_q's
transpose and mha_end's fold as other cycles of the core (the folds before rescales depend on
the data and are not counted, as the scalar path's rescales are not).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from codegen.cost import Workload
from codegen.kernels.matmul import arch
from codegen.spec import (
    CORE_MEMORY,
    DEVICE_COLUMNS,
    MEM_TILE_MEMORY,
    Accuracy,
    KernelSpec,
    MemoryItem,
    Param,
    SpecError,
    TilePlan,
    check_value_names,
    fifo_depth_param,
    path_param,
    quantize_multiplier,
    refuse_runtime_values,
    round_half_away,
    runtime_params_param,
    saturate_i8,
    scale_param,
)
from runtime.emulator.dma import check_dma
from runtime.manifest import BufferSpec

EXP2_FRAC_BITS = 8
P_BITS = 24  # softmax numerators are Q24: the row maximum is exactly 2^24
RESCALE_BITS = 16  # the rescale factor g is Q16, so acc·g stays below 2^63
OUT_MULT_BITS = 16
ROW_MULT_SHIFT = 32
MAX_SHIFT = 62
WHISPER_ACT_SCALE = 4.0 / 127.0  # N(0,1) activations quantised over ±4 sigma
VALUE_PARAMS = ("q_scale", "k_scale", "v_scale", "o_scale")
# The params element P (runtime_params=1), little-endian: int32 words 0..2 are what the core
# reads (logit multiplier, logit shift, output multiplier), word 3 is zero; bytes 16..31 hold
# q_scale·k_scale and v_scale/o_scale as float64 for the float reference; the rest is zero.
# The smallest element (tk 4 x head_dim 8) holds these 32 bytes.
P_LAYOUT = {"logit_mult": 0, "logit_shift": 4, "out_mult": 8, "qk_scale": 16, "vo_scale": 24}
P_BD = 8  # the shim BD of P's transfer: after the two sets of 4 the passes alternate between
LOGIT_MULT_BITS = 15
OUT_MULT_LIMIT = 1 << 23

# Hardware limits a split must respect (NPU_FACTS 1, 2, 8; mlir-aie AIETargetModel).
CORE_ROWS = 4  # compute rows 2..5
SHIM_MM2S = 2
MEM_S2MM = 6
MEM_MM2S = 6
CORE_S2MM = 2
CORE_MM2S = 2
SHIM_BDS = 16
CORE_BDS = 16
MEM_BDS = 48
MAX_D1 = 1023  # the 10-bit d1 wrap of an ND shim transfer
STACK_MARGIN = 1024
# The vector path's mmul block rows (keys) per architecture: aie::mmul<R, 8, 8> int8, the native
# modes of AIE API's "Supported Matrix Multiplication Modes" (4x8x8 on aie2, 8x8x8 on aie2p).
QK_BLOCK_ROWS = {"aie2": 4, "aie2p": 8}
QK_GROUP = 8  # query rows per mmul B operand (the block's columns)
PV_KEYS = 8  # keys per PV mmul block (the depth of aie::mmul<R, 8, 8>)
DIGITS = 4  # int8 digits of a Q24 weight on the vector path's PV
DIGIT_BITS = 7
# The vector path's frames beyond the scalar ones as the host build of the AIE API subset
# measures them (vectors and accumulators as arrays; on the core they live in registers), as
# matmul's VECTOR_STACK; the [tk][8] int32 scores and the group's digits are counted on top.
VECTOR_STACK = {"aie2": 2048, "aie2p": 4096}
# Scalar-unit operations of the softmax per (query row, key) in mha_tile (scaling, maximum,
# table lookup, rounding shift, sum) and per output element in mha_end: estimates read off the
# core code, for the cost model.
SOFTMAX_OPS_PER_KEY = 8
END_OPS_PER_ELEMENT = 4
# Vector path only (npukit's count of its core code, not a measurement): reading a score back
# from the [tk][8] group array per (row, key); the weight's store in the digits' blocked order
# per (row, key) of a computed group (its index; a row that sees no key stores zeros); the
# vector digit split per 16 lanes (one acc64 register) of a group's weights: a load, then per
# digit two shift-round-saturates, a multiply-accumulate and a store; mha_load_q's transposing
# store per Q byte per pass; mha_end's fold per output element (per digit a load, a shift and
# an add).
GATHER_OPS_PER_KEY = 1
WEIGHT_ORDER_OPS_PER_KEY = 1
DIGIT_LANES = 16
DIGIT_VECTOR_CYCLES = 1 + 4 * DIGITS
TRANSPOSE_OPS_PER_BYTE = 4
FOLD_OPS_PER_ELEMENT = 3 * DIGITS


def exp2_table() -> np.ndarray:
    """EXP2[f] = round(2^24 · 2^(-f/256)): the fractional part of exp2 of a negative Q8 value."""
    f = np.arange(1 << EXP2_FRAC_BITS, dtype=np.float64)
    return np.floor((1 << P_BITS) * np.exp2(-f / (1 << EXP2_FRAC_BITS)) + 0.5).astype(np.int64)


def logit_multiplier(qk_scale: float, head_dim: int) -> tuple[int, int]:
    """c = q_scale·k_scale/√d·log2(e) in Q8 log2 units, as a 15-bit multiplier and a shift."""
    c = qk_scale / math.sqrt(head_dim) * math.log2(math.e)
    return quantize_multiplier(c * (1 << EXP2_FRAC_BITS), LOGIT_MULT_BITS, "logit scale")


def out_multiplier(vo_scale: float) -> int:
    """Mo = round(v_scale/o_scale · 2^16)."""
    return round(vo_scale * (1 << OUT_MULT_BITS))


def check_constants(shift: int, out_mult: int, vo_scale: float) -> None:
    """The scale-derived constants within what the core's arithmetic takes (one line if not)."""
    if not 1 <= shift <= MAX_SHIFT:
        raise SpecError(f"q_scale·k_scale/√head_dim gives a logit shift of {shift}, outside "
                        f"1..{MAX_SHIFT}; the scales are out of range")
    if not 1 <= out_mult < OUT_MULT_LIMIT:
        raise SpecError(f"v_scale/o_scale = {vo_scale:.6g} is outside "
                        f"[2^-16, 2^7): the output multiplier {out_mult} does not fit")


def _round_shift(x: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """x / 2^shift rounded half away from zero (shift >= 1), as npk_round_shift_s64."""
    shift = np.asarray(shift, dtype=np.int64)
    half = np.left_shift(np.int64(1), shift - 1)
    return np.where(x >= 0, (x + half) >> shift, -((-x + half) >> shift))


class MhaSpec(KernelSpec):
    """Whole-sequence multi-head attention, streamed over `columns` x `rows` cores."""

    name = "mha"
    summary = "int8 multi-head attention over whole sequences, online softmax, multi-core"
    CORE_SOURCES = ("mha.cc",)
    CORE_SYMBOLS = ("mha_load_q", "mha_begin", "mha_tile", "mha_end")
    ACCURACY = Accuracy(min_pearson=None, min_within_1=0.999, max_diff=1, max_bias=0.05)
    PARAMS = (
        Param("seq_q", int, 1500, "query positions", 4, 32767),
        Param("seq_k", int, 1500, "key/value positions", 4, 32767),
        Param("heads", int, 8, "attention heads", 1, 64),
        Param("head_dim", int, 64, "head dimension d", 8, 128, multiple_of=8),
        Param("causal", bool, False, "mask key j for query i when j > i + seq_k - seq_q"),
        scale_param("q_scale", WHISPER_ACT_SCALE, "scale of Q (real = scale · int8)"),
        scale_param("k_scale", WHISPER_ACT_SCALE, "scale of K"),
        scale_param("v_scale", WHISPER_ACT_SCALE, "scale of V"),
        scale_param("o_scale", 1.0 / 127.0, "scale of the output O"),
        Param("tq", int, 0, "query rows a core holds (0: chosen, 32 where it fits)", 0, 256),
        Param("tk", int, 0, "keys per K/V tile (0: chosen, 64 where it fits)", 0, 256,
              multiple_of=4),
        Param("columns", int, 0, "columns of cores, passes dealt to them in turn (0: all the "
              "device has)", 0, 8),
        Param("rows", int, 0, "cores per column sharing each pass's K/V stream (0: chosen, "
              f"{CORE_ROWS} where it fits)", 0, CORE_ROWS),
        fifo_depth_param(),
        Param("device", str, "npu1", "target device", choices=tuple(DEVICE_COLUMNS)),
        runtime_params_param(),
        Param("packed_qkv", int, 0, "1: one input qkv [seq, 3·heads·head_dim] (q, k, v columns "
              "as a fused projection writes them) instead of q, k, v; needs seq_q == seq_k",
              choices=(0, 1)),
        path_param(),
    )

    # -- derived sizes -------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Bytes of one host row: heads · head_dim."""
        return self.heads * self.head_dim

    @property
    def row_stride(self) -> int:
        """Bytes between two rows of an input: 3·width from qkv (packed_qkv=1), else width."""
        return 3 * self.width if self.packed_qkv else self.width

    @property
    def pass_rows(self) -> int:
        """Query rows of one pass: every core of a column holds tq of them."""
        return self.rows * self.tq

    @property
    def passes_per_head(self) -> int:
        return -(-self.seq_q // self.pass_rows)

    @property
    def n_passes(self) -> int:
        return self.heads * self.passes_per_head

    @property
    def k_tiles(self) -> int:
        """K/V tiles per pass: seq_k / tk, or when tk does not divide seq_k, two runs of
        `k_half` tiles, one from key 0 and one ending at the last key (they overlap)."""
        if not self.k_padded:
            return self.seq_k // self.tk
        return 2 * self.k_half

    @property
    def k_half(self) -> int:
        """Tiles in each of the two runs when padded (else all of them)."""
        if not self.k_padded:
            return self.seq_k // self.tk
        return -(-self.seq_k // (2 * self.tk))

    @property
    def k_padded(self) -> bool:
        return self.seq_k % self.tk != 0

    @property
    def q_bytes(self) -> int:
        return self.tq * self.head_dim

    @property
    def kv_tile_bytes(self) -> int:
        return self.tk * self.head_dim

    @property
    def q_elements(self) -> int:
        """K-tile-sized FIFO elements the Q rows of one pass take on the shared Q/K channel."""
        return self.pass_rows * self.head_dim // self.kv_tile_bytes

    def passes_of(self, column: int) -> list[int]:
        """Global pass numbers column `column` runs, in order."""
        return list(range(column, self.n_passes, self.columns))

    def pass_head_start(self, g: int) -> tuple[int, int]:
        """(head, first query row) of global pass g. Odd heads take their passes in reverse
        order, so a column dealt pass i of one head gets a late pass of the next: with a causal
        mask, early and late query rows (light and heavy passes) are mixed on every column."""
        h, i = divmod(g, self.passes_per_head)
        if h % 2:
            i = self.passes_per_head - 1 - i
        return h, min(i * self.pass_rows, self.seq_q - self.pass_rows)

    def block_of(self, g: int, r: int) -> int:
        """The block (0..rows-1) of pass g that the core on row r holds: reversed on every other
        pass of a column, so each row alternates early and late blocks (causal balance)."""
        return self.rows - 1 - r if (g // self.columns) % 2 else r

    def block_start(self, g: int, r: int) -> int:
        """The first query row the core on row r holds during pass g."""
        return self.pass_head_start(g)[1] + self.block_of(g, r) * self.tq

    def key_tile_start(self, t: int) -> int:
        """The first key of tile t (as the DMA reads it)."""
        if t < self.k_half:
            return t * self.tk
        return self.seq_k - (self.k_tiles - t) * self.tk

    def key_tile_fresh(self, t: int) -> int:
        """The first key of tile t not seen in an earlier tile: keys below it get zero weight."""
        return min(t, self.k_half) * self.tk

    @property
    def frame_bytes(self) -> int:
        """The largest core frame: scores and weights of one tile row (mha_tile); on the vector
        path also a query group's [tk][8] int32 scores, [8][tk] uint32 weights and
        [DIGITS][8][tk] int8 digits."""
        return (8 * self.tk + 8 * self.head_dim
                + self.vector * (4 + 4 + DIGITS) * QK_GROUP * self.tk)

    @property
    def stack_size(self) -> int:
        extra = VECTOR_STACK[arch(self.device)] if self.vector else 0
        return (self.frame_bytes + STACK_MARGIN + extra + 1023) // 1024 * 1024

    @property
    def vector(self) -> bool:
        """path=vector: QKᵀ on AIE API mmul blocks (module docstring, "Vector path")."""
        return self.core_path == "vector"

    @property
    def block_r(self) -> int:
        """Keys per mmul block (the A operand's rows) of the device's architecture."""
        return QK_BLOCK_ROWS[arch(self.device)]

    def qk_dims(self) -> list[tuple[int, int]]:
        """The mem tile's `dimensionsToStream` of every Q/K element on the vector path, outermost
        first: row-major tk x d -> [tk/R][d/8][R][8]."""
        r, d = self.block_r, self.head_dim
        return [(self.tk // r, r * d), (d // 8, 8), (r, d), (8, 1)]

    def v_dims(self) -> list[tuple[int, int]]:
        """The mem tile's `dimensionsToStream` of every V tile on the vector path: row-major
        tk x d -> [tk/8][d/8][8][8] (PV's B operands)."""
        d = self.head_dim
        return [(self.tk // PV_KEYS, PV_KEYS * d), (d // 8, 8), (PV_KEYS, d), (8, 1)]

    @property
    def acc_len(self) -> int:
        """int64 words of a core's accumulator: [tq][d], on the vector path followed by the
        DIGITS int32 digit sums of every element (module docstring, "Vector path")."""
        return (1 + self.vector * DIGITS // 2) * self.tq * self.head_dim

    @property
    def cores(self) -> int:
        return self.columns * self.rows

    # -- integer constants --------------------------------------------------------------
    def logit_multiplier(self) -> tuple[int, int]:
        return logit_multiplier(self.q_scale * self.k_scale, self.head_dim)

    def out_multiplier(self) -> int:
        return out_multiplier(self.v_scale / self.o_scale)

    # -- runtime parameters ---------------------------------------------------------------
    @property
    def params_bytes(self) -> int:
        """Bytes of the params input P: one Q/K element (a transfer fills whole elements)."""
        return self.kv_tile_bytes

    def pack_params(self, **values: float) -> np.ndarray:
        """The params input P (int8 [tk·head_dim]) for q_scale, k_scale, v_scale, o_scale,
        refused with one line where the compiled variant would refuse the same scales."""
        if not self.runtime_params:
            raise SpecError("pack_params needs runtime_params=1: this variant compiles its "
                            "scales in")
        check_value_names("mha", values, VALUE_PARAMS)
        scales = {}
        for name in VALUE_PARAMS:
            x = values[name]
            if isinstance(x, bool) or not isinstance(x, int | float | np.floating | np.integer):
                raise SpecError(f"{name} {x!r} is not a number")
            if not (math.isfinite(float(x)) and x > 0):
                raise SpecError(f"{name} {x} must be positive and finite")
            scales[name] = float(x)
        qk = scales["q_scale"] * scales["k_scale"]
        vo = scales["v_scale"] / scales["o_scale"]
        mult, shift = logit_multiplier(qk, self.head_dim)
        mo = out_multiplier(vo)
        check_constants(shift, mo, vo)
        raw = bytearray(self.params_bytes)
        for key, value in (("logit_mult", mult), ("logit_shift", shift), ("out_mult", mo)):
            raw[P_LAYOUT[key] : P_LAYOUT[key] + 4] = int(value).to_bytes(4, "little")
        for key, real in (("qk_scale", qk), ("vo_scale", vo)):
            raw[P_LAYOUT[key] : P_LAYOUT[key] + 8] = np.float64(real).astype("<f8").tobytes()
        return np.frombuffer(bytes(raw), dtype=np.int8).copy()

    def unpack_params(self, p: np.ndarray) -> dict[str, float]:
        """The constants and real scales P holds (numpy, independent of the core code); a P
        whose constants the core cannot use is refused with one line."""
        p = np.asarray(p)
        if p.dtype != np.int8:
            raise SpecError(f"params input P is {p.dtype}, this variant takes int8 "
                            f"({self.params_bytes} bytes): build it with spec.pack_params")
        raw = p.tobytes()
        if len(raw) != self.params_bytes:
            raise SpecError(f"params input P has {len(raw)} bytes, this variant takes "
                            f"{self.params_bytes}: build it with spec.pack_params")

        def word(key: str) -> int:
            return int(np.frombuffer(raw, "<i4", 1, P_LAYOUT[key])[0])

        def real(key: str) -> float:
            return float(np.frombuffer(raw, "<f8", 1, P_LAYOUT[key])[0])

        out = {"logit_mult": word("logit_mult"), "logit_shift": word("logit_shift"),
               "out_mult": word("out_mult"), "qk_scale": real("qk_scale"),
               "vo_scale": real("vo_scale")}
        if not 1 << (LOGIT_MULT_BITS - 1) <= out["logit_mult"] < 1 << LOGIT_MULT_BITS:
            raise SpecError(f"params input P: logit multiplier {out['logit_mult']} is outside "
                            f"[2^{LOGIT_MULT_BITS - 1}, 2^{LOGIT_MULT_BITS}): build P with "
                            "spec.pack_params")
        if not 1 <= out["logit_shift"] <= MAX_SHIFT:
            raise SpecError(f"params input P: logit shift {out['logit_shift']} is outside "
                            f"1..{MAX_SHIFT}: build P with spec.pack_params")
        if not 1 <= out["out_mult"] < OUT_MULT_LIMIT:
            raise SpecError(f"params input P: output multiplier {out['out_mult']} is outside "
                            "1..2^23-1: build P with spec.pack_params")
        return out

    # -- validation ---------------------------------------------------------------------
    def _choose_split(self) -> None:
        """Fill in the split parameters left at 0: the largest key tile up to 64 that fits
        seq_k, then the most rows (up to 4) and the largest query block (up to 32) whose pass
        fits seq_q and fills whole K tiles, then every column the device has, up to the passes.
        The chosen values shadow the 0s (`self.tq` etc.); `params` keeps what was asked."""
        given = {n: self.params[n] for n in ("tq", "tk", "rows", "columns")}
        # vector: mmul multiples, and tq at most 16 (the digit sums triple the accumulator)
        unit, tq_most = (PV_KEYS, 16) if self.vector else (1, 32)
        tks = [given["tk"]] if given["tk"] else [t for t in (64, 32, 16, 8, 4)
                                                 if t <= self.seq_k and t % unit == 0]
        rows = [given["rows"]] if given["rows"] else list(range(CORE_ROWS, 0, -1))
        tqs = [given["tq"]] if given["tq"] else [t for t in (32, 24, 16, 8, 4, 2, 1)
                                                 if t <= tq_most and t % unit == 0]
        choice = next(((tk, r, tq) for tk in tks or [4] for r in rows for tq in tqs
                       if r * tq <= self.seq_q and (r * tq) % tk == 0), None)
        if choice is None:  # nothing fits: keep the first candidates, so validation names why
            choice = ((tks or [4])[0], rows[0], tqs[0])
        tk, r, tq = choice
        self.__dict__.update(tk=tk, rows=r, tq=tq)
        if not given["columns"]:
            self.__dict__["columns"] = max(1, min(DEVICE_COLUMNS[self.device], self.n_passes))
        else:
            self.__dict__["columns"] = given["columns"]

    def validate(self) -> None:
        self._choose_split()
        if self.runtime_params:
            # The core's symbols include the params copy (an instance value: compiled
            # variants keep the class's list, and so their manifests).
            self.__dict__["CORE_SYMBOLS"] = (*type(self).CORE_SYMBOLS, "mha_params")
        if self.packed_qkv and self.seq_q != self.seq_k:
            raise SpecError(f"packed_qkv=1 needs seq_q == seq_k (got {self.seq_q} and "
                            f"{self.seq_k}): one qkv buffer holds q, k and v rows of one "
                            "sequence; use packed_qkv=0 for cross-attention")
        if self.causal and self.seq_q > self.seq_k:
            raise SpecError(f"causal needs seq_q <= seq_k (got {self.seq_q} > {self.seq_k}): "
                            "query 0 would see no key")
        refuse_runtime_values(self, VALUE_PARAMS, "P")
        if not self.runtime_params:
            _, shift = self.logit_multiplier()
            check_constants(shift, self.out_multiplier(), self.v_scale / self.o_scale)
        self._validate_split()
        for t in self.transfers():
            problems = check_dma(t["offsets"], t["sizes"], t["strides"], 1, t["elems"])
            if problems:
                hint = " (packed_qkv=0 reads with a third of the stride)" * self.packed_qkv
                raise SpecError(f"the {t['what']} breaks a shim DMA limit: "
                                f"{'; '.join(problems)}{hint}")
        self.check_memory()

    def _validate_split(self) -> None:
        if self.vector and (self.tq % QK_GROUP or self.tk % PV_KEYS):
            raise SpecError(f"path=vector needs tq a multiple of {QK_GROUP} and tk of "
                            f"{PV_KEYS} (the {arch(self.device)} mmul block "
                            f"{self.block_r}x8x8); got tq {self.tq}, tk {self.tk}")
        if self.tk > self.seq_k:
            raise SpecError(f"tk {self.tk} is more than seq_k {self.seq_k}: the key tile must "
                            "fit in the sequence (lower tk)")
        if self.pass_rows > self.seq_q:
            raise SpecError(f"rows·tq = {self.pass_rows} query rows per pass is more than seq_q "
                            f"{self.seq_q}: lower tq or rows")
        if self.pass_rows * self.head_dim % self.kv_tile_bytes:
            raise SpecError(f"the {self.pass_rows} query rows of a pass must fill whole K tiles "
                            f"on the shared Q/K channel: rows·tq must be a multiple of tk "
                            f"{self.tk}")
        if self.pass_rows > MAX_D1 or self.tk > MAX_D1:
            raise SpecError(f"a transfer of {max(self.pass_rows, self.tk)} rows exceeds the "
                            f"{MAX_D1}-row d1 wrap of a shim DMA transfer: lower rows·tq or tk")
        if self.columns > DEVICE_COLUMNS[self.device]:
            raise SpecError(f"columns {self.columns} is more than device {self.device} has "
                            f"({DEVICE_COLUMNS[self.device]})")
        if self.columns > self.n_passes:
            raise SpecError(f"columns {self.columns} is more than the {self.n_passes} pass(es) "
                            "of work: some columns would idle (lower columns)")
        if self.rows + 2 > MEM_S2MM:
            raise SpecError(f"rows {self.rows}: the mem tile receives Q/K, V and one output per "
                            f"core, {self.rows + 2} S2MM channels, and has {MEM_S2MM}")
        if 2 * self.transfers_per_pass + self.runtime_params > SHIM_BDS:
            raise SpecError(f"{self.transfers_per_pass} shim transfers per pass, double-buffered,"
                            f" need {2 * self.transfers_per_pass} BDs"
                            + (" and P one more" if self.runtime_params else "")
                            + f"; a shim tile has {SHIM_BDS}")
        # Each FIFO end takes `fifo_depth` BDs of its tile: a core has @qkb, @vb and @o; the
        # mem tile @qk, @qkb, @v, @vb, one @o part per core and the joined @o.
        if 3 * self.fifo_depth > CORE_BDS or (5 + self.rows) * self.fifo_depth > MEM_BDS:
            raise SpecError(f"fifo_depth {self.fifo_depth} needs more BDs than a tile has "
                            f"(core {CORE_BDS}, mem tile {MEM_BDS})")

    @property
    def transfers_per_pass(self) -> int:
        """Shim BDs one pass holds at a time: Q, K, V and O (its output parts reuse one BD, each
        waited on before the next is issued)."""
        return 4

    def output_parts(self, g: int) -> list[tuple[int, int]]:
        """(first row, rows) of each output transfer of pass g, in the order the mem tile's
        joined element holds them (core row 0 first): the whole pass in one transfer, or on a
        pass whose blocks are reversed (`block_of`), one transfer per block."""
        start = self.pass_head_start(g)[1]
        if self.block_of(g, 0) == 0:
            return [(start, self.pass_rows)]
        return [(self.block_start(g, r), self.tq) for r in range(self.rows)]

    @property
    def n_transfers(self) -> int:
        """Shim transfers of one invocation (P once per column with runtime_params=1)."""
        return (sum(3 + len(self.output_parts(g)) for g in range(self.n_passes))
                + self.runtime_params * self.columns)

    # -- the runtime sequence's transfers, computed here so validate() can check each one --
    def pass_inputs(self, g: int, bd_set: int) -> list[dict[str, Any]]:
        """The Q, K and V transfers of pass g (BD set 0 or 1), as the runtime sequence issues
        them: head columns picked by the offset, tiles by the strides (row stride 3·width out of
        qkv with packed_qkv=1, at column offsets 0, width, 2·width)."""
        head, start = self.pass_head_start(g)
        rs, d, base = self.row_stride, self.head_dim, head * self.head_dim
        q, k, v = ("qkv",) * 3 if self.packed_qkv else ("q", "k", "v")
        col_k, col_v = (self.width, 2 * self.width) if self.packed_qkv else (0, 0)
        if self.k_padded:
            kv_sizes = [2, self.k_half, self.tk, d]
            kv_strides = [(self.seq_k - self.k_half * self.tk) * rs, self.tk * rs, rs, 1]
        else:
            kv_sizes, kv_strides = [1, self.k_tiles, self.tk, d], [0, self.tk * rs, rs, 1]
        return [
            {"what": f"Q transfer of pass {g}", "arg": q, "fifo": "qk", "id": 4 * bd_set,
             "offsets": [0, 0, 0, start * rs + base], "sizes": [1, 1, self.pass_rows, d],
             "strides": [0, 0, rs, 1], "elems": self.seq_q * rs},
            {"what": f"K transfer of pass {g}", "arg": k, "fifo": "qk", "id": 4 * bd_set + 1,
             "offsets": [0, 0, 0, col_k + base], "sizes": kv_sizes, "strides": kv_strides,
             "elems": self.seq_k * rs},
            {"what": f"V transfer of pass {g}", "arg": v, "fifo": "v", "id": 4 * bd_set + 2,
             "offsets": [0, 0, 0, col_v + base], "sizes": kv_sizes, "strides": kv_strides,
             "elems": self.seq_k * rs},
        ]

    def pass_outputs(self, g: int) -> list[dict[str, Any]]:
        """The output transfers of pass g, one per part (`output_parts`), into o."""
        head = self.pass_head_start(g)[0]
        return [{"what": f"O transfer of pass {g}", "arg": "o", "fifo": "o",
                 "offsets": [0, 0, 0, first * self.width + head * self.head_dim],
                 "sizes": [1, 1, n, self.head_dim], "strides": [0, 0, self.width, 1],
                 "elems": self.seq_q * self.width}
                for first, n in self.output_parts(g)]

    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer of the runtime sequence (BD ids aside; P once per column), for
        validate()'s DMA check."""
        n = self.params_bytes
        out = [{"what": "P transfer", "offsets": [0, 0, 0, 0], "sizes": [1, 1, 1, n],
                "strides": [0, 0, 0, 1], "elems": n}] * (self.runtime_params * self.columns)
        for c in range(self.columns):
            for i, g in enumerate(self.passes_of(c)):
                out += self.pass_inputs(g, i % 2) + self.pass_outputs(g)
        return out

    # -- buffers and memory ------------------------------------------------------------
    def buffers(self) -> list[BufferSpec]:
        rt = self.runtime_params
        if self.packed_qkv:
            return [
                BufferSpec("qkv", "int8", (self.seq_q, 3 * self.width), "in", 0),
                *([BufferSpec("P", "int8", (self.params_bytes,), "in", 1)] if rt else []),
                BufferSpec("o", "int8", (self.seq_q, self.width), "out", 1 + rt),
            ]
        return [
            BufferSpec("q", "int8", (self.seq_q, self.width), "in", 0),
            BufferSpec("k", "int8", (self.seq_k, self.width), "in", 1),
            BufferSpec("v", "int8", (self.seq_k, self.width), "in", 2),
            *([BufferSpec("P", "int8", (self.params_bytes,), "in", 3)] if rt else []),
            BufferSpec("o", "int8", (self.seq_q, self.width), "out", 3 + rt),
        ]

    @property
    def state_len(self) -> int:
        """int64 words of a core's state: [first row, m[tq], l[tq]], then with runtime_params=1
        the logit multiplier, logit shift and output multiplier copied from P."""
        return 1 + 2 * self.tq + 3 * self.runtime_params

    def core_data(self) -> list[MemoryItem]:
        return [MemoryItem("exp2 table (uint32)", 4 << EXP2_FRAC_BITS, kind="static")]

    def memory_plan(self) -> list[TilePlan]:
        depth = self.fifo_depth
        core = [
            MemoryItem("Q/K tile buffers", self.kv_tile_bytes, depth),
            MemoryItem("V tile buffers", self.kv_tile_bytes, depth),
            MemoryItem("O block buffers", self.q_bytes, depth),
            MemoryItem("Q block", self.q_bytes),
            MemoryItem("row state (int64)", 8 * self.state_len),
            MemoryItem("accumulator (int64, then int32 digit sums)" if self.vector else
                       "accumulator (int64)", 8 * self.acc_len),
            *self.core_data(),
            MemoryItem("stack", self.stack_size, kind="stack"),
        ]
        # A link through the mem tile keeps one set of buffers, its whole FIFO's: the incoming
        # Q/K and V elements (broadcast from there) and the joined O element (written in parts).
        mem = [
            MemoryItem("Q/K elements", self.kv_tile_bytes, depth),
            MemoryItem("V elements", self.kv_tile_bytes, depth),
            MemoryItem("O joined", self.q_bytes * self.rows, depth),
        ]
        plans = []
        for c in range(self.columns):
            plans.append(TilePlan((c, 1), MEM_TILE_MEMORY, list(mem)))
            plans += [TilePlan((c, 2 + r), CORE_MEMORY, list(core)) for r in range(self.rows)]
        return plans

    # -- rendering ----------------------------------------------------------------------
    def render_context(self) -> dict[str, Any]:
        mult, shift = (None, None) if self.runtime_params else self.logit_multiplier()
        cols = []
        for c in range(self.columns):
            passes = []
            for g in self.passes_of(c):
                h, start = self.pass_head_start(g)
                passes.append({"g": g, "head": h, "start": start,
                               "parts": self.output_parts(g),
                               "inputs": self.pass_inputs(g, len(passes) % 2),
                               "outputs": self.pass_outputs(g)})
            cols.append({"index": c, "passes": passes})
        return {
            **self.params,
            "tq": self.tq,
            "tk": self.tk,
            "rows": self.rows,
            "columns": self.columns,
            "kernel": self.name,
            "object": self.object_name,
            "cols": cols,
            "width": self.width,
            "pass_rows": self.pass_rows,
            "passes_per_head": self.passes_per_head,
            "q_elements": self.q_elements,
            "k_tiles": self.k_tiles,
            "k_half": self.k_half,
            "k_second": self.seq_k - self.k_half * self.tk,
            "k_padded": self.k_padded,
            "q_bytes": self.q_bytes,
            "kv_tile": self.kv_tile_bytes,
            "o_join": self.q_bytes * self.rows,
            "state_len": self.state_len,
            "prm_index": 1 + 2 * self.tq,
            "p_bd": P_BD,
            "acc_len": self.acc_len,
            "vector": self.vector,
            "block_r": self.block_r,
            "qk_dims": ", ".join(f"<size = {n}, stride = {st}>" for n, st in self.qk_dims()),
            "v_dims": ", ".join(f"<size = {n}, stride = {st}>" for n, st in self.v_dims()),
            "stack_size": self.stack_size,
            "logit_mult": mult,
            "logit_shift": shift,
            "out_mult": None if self.runtime_params else self.out_multiplier(),
            "exp2_table": [int(x) for x in exp2_table()],
            "exp2_frac_bits": EXP2_FRAC_BITS,
            "p_bits": P_BITS,
            "rescale_bits": RESCALE_BITS,
            "row_mult_shift": ROW_MULT_SHIFT,
            "out_shift": ROW_MULT_SHIFT + OUT_MULT_BITS,
            "max_shift": MAX_SHIFT,
        }

    # -- cost model -----------------------------------------------------------------------
    def _tile_rows(self, first_row: int) -> int:
        """(row, tile) pairs of one block the core computes: it skips a tile holding no key the
        row may see (a tile of repeated keys only, or causal: wholly beyond the row's last key)."""
        starts = np.array([self.key_tile_start(t) for t in range(self.k_tiles)])
        first = np.maximum(starts, [self.key_tile_fresh(t) for t in range(self.k_tiles)])
        useful = first < starts + self.tk
        if not self.causal:
            return self.tq * int(np.count_nonzero(useful))
        last = first_row + np.arange(self.tq)[:, None] + (self.seq_k - self.seq_q)
        return int(np.count_nonzero((last >= first[None, :]) & useful[None, :]))

    def _tile_groups(self, first_row: int) -> int:
        """(group of 8 rows, tile) pairs of one block the vector path computes QKᵀ for: it skips
        a group none of whose rows sees a key of the tile (its last row sees the most)."""
        return sum(self._tile_rows_of(first_row + g * QK_GROUP + QK_GROUP - 1)
                   for g in range(self.tq // QK_GROUP))

    def _tile_rows_of(self, row: int) -> int:
        """Tiles holding a key query `row` may see (as _tile_rows, for one row)."""
        starts = np.array([self.key_tile_start(t) for t in range(self.k_tiles)])
        first = np.maximum(starts, [self.key_tile_fresh(t) for t in range(self.k_tiles)])
        useful = first < starts + self.tk
        if self.causal:
            useful &= row + (self.seq_k - self.seq_q) >= first
        return int(np.count_nonzero(useful))

    def workload(self) -> Workload:
        """Per invocation: each core's MACs (QKᵀ and PV over whole tiles, duplicates included)
        and softmax work, and the bytes on every shim, mem-tile and core channel. On the vector
        path the MACs are the mmuls' (QKᵀ and PV's DIGITS digit products, per whole group of 8
        rows), at the vector rate, and the other cycles add the score read-back, the blocked
        weight store, the vector digit split, the Q transpose and the final fold (module
        docstring, "Vector path")."""
        d = self.head_dim
        macs: dict[str, int] = {}
        scalar: dict[str, int] = {}
        shim: dict[str, int] = {}
        mem: dict[str, int] = {}
        core_bytes: dict[str, int] = {}
        kv = self.k_tiles * self.kv_tile_bytes
        prm = self.runtime_params * self.params_bytes  # P, once per column per invocation
        for c in range(self.columns):
            passes = self.passes_of(c)
            n = len(passes)
            shim[f"shim({c}) MM2S @qk{c}"] = n * (self.pass_rows * d + kv) + prm
            shim[f"shim({c}) MM2S @v{c}"] = n * kv
            shim[f"shim({c}) S2MM @o{c}"] = n * self.pass_rows * d
            mem[f"mem({c}) MM2S @qkb{c} (broadcast)"] = n * (self.pass_rows * d + kv) + prm
            mem[f"mem({c}) MM2S @vb{c} (broadcast)"] = n * kv
            mem[f"mem({c}) MM2S @o{c}"] = n * self.pass_rows * d
            for r in range(self.rows):
                core = f"core({c}, {2 + r})"
                pairs = sum(self._tile_rows(self.block_start(g, r)) for g in passes)
                macs[core] = 2 * pairs * self.tk * d
                scalar[core] = (pairs * self.tk * SOFTMAX_OPS_PER_KEY
                                + n * self.q_bytes * END_OPS_PER_ELEMENT)
                if self.vector:
                    rows_done = QK_GROUP * sum(self._tile_groups(self.block_start(g, r))
                                               for g in passes)
                    macs[core] = (1 + DIGITS) * rows_done * self.tk * d
                    scalar[core] += (pairs * self.tk * GATHER_OPS_PER_KEY
                                     + rows_done * self.tk * WEIGHT_ORDER_OPS_PER_KEY
                                     + rows_done * self.tk // DIGIT_LANES * DIGIT_VECTOR_CYCLES
                                     + n * self.q_bytes * (TRANSPOSE_OPS_PER_BYTE
                                                           + FOLD_OPS_PER_ELEMENT))
                core_bytes[f"{core} S2MM @qkb{c}"] = n * (self.pass_rows * d + kv) + prm
                core_bytes[f"{core} S2MM @vb{c}"] = n * kv
                core_bytes[f"{core} MM2S @o{c}_{r}"] = n * self.q_bytes
        notes = (
            f"{self.n_passes} passes of {self.pass_rows} query rows; each K/V byte crosses a "
            f"shim once per pass, i.e. once per {self.rows} cores",
            "MACs count whole tiles (the last tile's repeated keys and masked keys included)",
        ) + (("packed_qkv=1: Q, K, V are read out of one qkv buffer (row stride "
               f"{self.row_stride} bytes), the same bytes as from three",) * self.packed_qkv) + (
            (f"path=vector: MACs are the mmuls' (QKᵀ, and PV once per each of the {DIGITS} "
             "digits of the weights; whole groups of 8 query rows); the softmax, the vector digit "
             "split and the folds are other cycles",) * self.vector)
        return Workload(self.name, self.device, self.core_path, macs, shim, mem, core_bytes, scalar,
                        bds=self.n_transfers, notes=notes)

    # -- data ---------------------------------------------------------------------------
    def _heads(self, x: np.ndarray, seq: int) -> np.ndarray:
        """[seq, heads·d] int8 -> [heads, seq, d] int64."""
        a = np.asarray(x, dtype=np.int8).reshape(seq, self.heads, self.head_dim)
        return a.transpose(1, 0, 2).astype(np.int64)

    def _from_heads(self, o: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(o.transpose(1, 0, 2)).reshape(self.seq_q, self.width)

    def pack_qkv(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The qkv input of a packed_qkv=1 variant: [seq, 3·width], q's columns, k's, v's."""
        parts = [np.asarray(x, dtype=np.int8).reshape(self.seq_q, self.width) for x in (q, k, v)]
        return np.concatenate(parts, axis=1)

    def split_inputs(self, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray | None]:
        """([q, k, v], P or None) of an input list: with packed_qkv=1 q, k, v are numpy column
        slices of qkv (views, no copy)."""
        n = 1 if self.packed_qkv else 3
        p = inputs[n] if self.runtime_params else None
        if not self.packed_qkv:
            return list(inputs[:3]), p
        qkv = np.asarray(inputs[0]).reshape(self.seq_q, 3 * self.width)
        w = self.width
        return [qkv[:, :w], qkv[:, w : 2 * w], qkv[:, 2 * w :]], p

    def _data_inputs(self, qkv: list[np.ndarray]) -> list[np.ndarray]:
        """q, k, v in this variant's input layout: three buffers or one qkv."""
        return [self.pack_qkv(*qkv)] if self.packed_qkv else qkv

    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Q, K, V drawn N(0,1) like Whisper activations, quantised with their scales (packed
        into qkv with packed_qkv=1: the same values); with runtime_params=1 the scales are drawn
        per seed too (as layers differ) and packed in P."""
        if not self.runtime_params:
            return self._data_inputs(activations(self, "whisper", seed))
        values = layer_scales(seed)
        return [*self._data_inputs(activations(self, "whisper", seed, values)),
                self.pack_params(**values)]

    def edge_inputs(self) -> list[tuple[str, list[np.ndarray]]]:
        """The base class's edge cases; with runtime_params=1 their P holds the default scales
        (a P filled with one byte holds no constants the core can use)."""
        cases = super().edge_inputs()
        if not self.runtime_params:
            return cases
        p = self.pack_params(**{p.name: p.default for p in self.PARAMS
                                if p.name in VALUE_PARAMS})
        return [(label, [*x[:-1], p]) for label, x in cases]

    def _constants(self, inputs: list[np.ndarray]) -> tuple[int, int, int]:
        """(logit multiplier, logit shift, output multiplier): compiled in, or read from P."""
        if not self.runtime_params:
            return (*self.logit_multiplier(), self.out_multiplier())
        p = self.unpack_params(self.split_inputs(inputs)[1])
        return int(p["logit_mult"]), int(p["logit_shift"]), int(p["out_mult"])

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        constants = self._constants(inputs)
        q, k, v = (self._heads(x, n) for x, n in zip(
            self.split_inputs(inputs)[0], (self.seq_q, self.seq_k, self.seq_k), strict=True))
        # One head at a time keeps the working set in cache; rows are independent.
        o = np.concatenate([self._golden_heads(q[i : i + 1], k[i : i + 1], v[i : i + 1],
                                               constants)
                            for i in range(self.heads)])
        return [self._from_heads(o)]

    def _golden_heads(self, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                      constants: tuple[int, int, int]) -> np.ndarray:
        """The core's arithmetic on [heads, seq, d] int64 Q, K, V: int8 [heads, seq_q, d]."""
        qf = q.astype(np.float64)
        mult, shift, out_mult = constants
        table = exp2_table()
        none = np.iinfo(np.int64).min
        frac = (1 << EXP2_FRAC_BITS) - 1
        h, nq, d = q.shape
        m = np.full((h, nq), none, dtype=np.int64)
        total = np.zeros((h, nq), dtype=np.int64)
        acc = np.zeros((h, nq, d), dtype=np.int64)
        rows = np.arange(nq)[:, None]
        for t in range(self.k_tiles):
            ks = self.key_tile_start(t)
            keys = ks + np.arange(self.tk)[None, :]
            allowed = np.broadcast_to(keys >= self.key_tile_fresh(t), (h, nq, self.tk))
            if self.causal:
                allowed = allowed & (keys <= rows + (self.seq_k - self.seq_q))
            kt, vt = k[:, ks : ks + self.tk], v[:, ks : ks + self.tk]
            # Exact in float64: every partial sum is an integer below 2^53.
            s = np.matmul(qf, kt.astype(np.float64).transpose(0, 2, 1)).astype(np.int64)
            x = np.where(allowed, (s * mult + (1 << (shift - 1))) >> shift, none)
            mt = x.max(axis=2)
            seen = m != none
            grow = np.nonzero(seen & (mt > m))
            if grow[0].size:
                u = mt[grow] - m[grow]
                g = (table[u & frac] + (1 << (P_BITS - RESCALE_BITS - 1))) >> (
                    P_BITS - RESCALE_BITS)
                sh = RESCALE_BITS + (u >> EXP2_FRAC_BITS)
                ok = sh <= MAX_SHIFT
                shc = np.minimum(sh, MAX_SHIFT)
                total[grow] = np.where(ok, _round_shift(total[grow] * g, shc), 0)
                acc[grow] = np.where(ok[:, None],
                                     _round_shift(acc[grow] * g[:, None], shc[:, None]), 0)
            m = np.where(mt != none, np.maximum(m, mt), m)
            tt = np.where(allowed, m[:, :, None] - x, 0)
            whole = np.minimum(tt >> EXP2_FRAC_BITS, 32)
            p = (table[tt & frac] + ((np.int64(1) << whole) >> 1)) >> whole
            p = np.where(allowed, p, 0)  # whole == 32 already gave 0: the table is below 2^32
            total += p.sum(axis=2)
            acc += np.matmul(p.astype(np.float64), vt.astype(np.float64)).astype(np.int64)
        r = ((out_mult << ROW_MULT_SHIFT) + total // 2) // total
        return saturate_i8(_round_shift(acc * r[:, :, None], ROW_MULT_SHIFT + OUT_MULT_BITS))

    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        qkv, packed = self.split_inputs(inputs)
        q, k, v = (self._heads(x, n).astype(np.float64) for x, n in zip(
            qkv, (self.seq_q, self.seq_k, self.seq_k), strict=True))
        if packed is not None:  # only the products of the scales matter: P holds those
            p = self.unpack_params(packed)
            return self._reference(q * p["qk_scale"], k, v * p["vo_scale"], 1.0)
        return self._reference(q * self.q_scale, k * self.k_scale, v * self.v_scale,
                               self.o_scale)

    def _reference(self, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                   o_scale: float) -> list[np.ndarray]:
        out = np.empty(q.shape, dtype=np.float64)
        mask = None
        if self.causal:
            mask = (np.arange(self.seq_k)[None, :]
                    <= np.arange(self.seq_q)[:, None] + (self.seq_k - self.seq_q))
        for h in range(self.heads):
            logits = q[h] @ k[h].T / math.sqrt(self.head_dim)
            if mask is not None:
                logits = np.where(mask, logits, -np.inf)
            w = np.exp(logits - logits.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            out[h] = w @ v[h] / o_scale
        return [self._from_heads(saturate_i8(round_half_away(out)))]


# -- input families (accuracy tests and benchmarks) -----------------------------------------

FAMILIES = ("whisper", "heavy", "outlier", "peaky", "flat")


def _quant(x: np.ndarray, scale: float) -> np.ndarray:
    return saturate_i8(round_half_away(x / scale))


def layer_scales(seed: int) -> dict[str, float]:
    """Plausible per-layer scales from a seed: each within a factor of about 1.4 of the
    Whisper calibration, so seeds cover varied constants and the accuracy targets hold."""
    rng = np.random.default_rng((seed, 0x5CA1E))
    base = {"q_scale": WHISPER_ACT_SCALE, "k_scale": WHISPER_ACT_SCALE,
            "v_scale": WHISPER_ACT_SCALE, "o_scale": 1.0 / 127.0}
    return {n: float(s * 2.0 ** rng.uniform(-0.5, 0.5)) for n, s in base.items()}


def activations(spec: MhaSpec, family: str, seed: int,
                scales: dict[str, float] | None = None) -> list[np.ndarray]:
    """Seeded Q, K, V of one realistic family, in the spec's host layout and scales (or the
    `scales` given, for a runtime-params variant).

    whisper: N(0,1); heavy: Student-t (3 dof) scaled to unit variance, clipped by the int8
    range; outlier: N(0,1) with a few channels 6x larger (as Whisper's residual stream has);
    peaky: keys aligned with the queries so each row's softmax is dominated by a few keys;
    flat: small queries, so every softmax row is nearly uniform.
    """
    rng = np.random.default_rng(seed)
    nq, nk, w = spec.seq_q, spec.seq_k, spec.width
    if family == "whisper":
        q, k, v = rng.standard_normal((nq, w)), rng.standard_normal((nk, w)), \
            rng.standard_normal((nk, w))
    elif family == "heavy":
        q, k, v = (rng.standard_t(3, (n, w)) / math.sqrt(3.0) for n in (nq, nk, nk))
    elif family == "outlier":
        q, k, v = rng.standard_normal((nq, w)), rng.standard_normal((nk, w)), \
            rng.standard_normal((nk, w))
        channels = rng.choice(w, size=max(1, w // 32), replace=False)
        for a in (q, k, v):
            a[:, channels] *= 6.0
    elif family == "peaky":
        k = rng.standard_normal((nk, w))
        v = rng.standard_normal((nk, w))
        pick = rng.integers(0, nk, nq)
        q = 2.5 * k[pick] + 0.3 * rng.standard_normal((nq, w))
    elif family == "flat":
        q = 0.1 * rng.standard_normal((nq, w))
        k, v = rng.standard_normal((nk, w)), rng.standard_normal((nk, w))
    else:
        raise SpecError(f"unknown input family {family!r}; known: {', '.join(FAMILIES)}")
    s = scales or {n: spec.params[n] for n in VALUE_PARAMS}
    return [_quant(q, s["q_scale"]), _quant(k, s["k_scale"]), _quant(v, s["v_scale"])]


def dominant_key(spec: MhaSpec, seed: int, gap: float = 7.3) -> list[np.ndarray]:
    """The adversarial case: per head one key whose logit is `gap` above all the others, which
    are equal (logit 0), with values of opposite sign, so every small weight pulls the same way.
    At gap ln(seq_k - 1) the dominant key and the many small ones weigh the same in total."""
    rng = np.random.default_rng(seed)
    nq, nk, d, hd = spec.seq_q, spec.seq_k, spec.head_dim, spec.heads
    q = np.ones((nq, hd, d))
    k = np.zeros((nk, hd, d))
    v = np.empty((nk, hd, d))
    # logit = (q·k)·sq·sk/√d with q = 1 and the dominant key b in every channel.
    qi = float(_quant(np.ones(1), spec.q_scale)[0]) * spec.q_scale
    b = gap / (math.sqrt(d) * qi)
    for h in range(hd):
        dom = int(rng.integers(0, nk))
        k[dom, h] = b
        v[:, h] = -rng.uniform(0.5, 3.5, d)
        v[dom, h] = rng.uniform(0.5, 3.5, d)
    qs = [q.reshape(nq, -1), k.reshape(nk, -1), v.reshape(nk, -1)]
    scales = (spec.q_scale, spec.k_scale, spec.v_scale)
    return [_quant(x, s) for x, s in zip(qs, scales, strict=True)]

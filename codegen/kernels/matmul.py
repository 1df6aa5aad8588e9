"""C = requantise(A·B + bias): int8 A [M,K] and B [K,N], int32 accumulation, int8 C [M,N].

The host passes plain row-major matrices; the runtime sequence cuts them into tm x tk and
tk x tn tiles with DMA strides, the mem tiles broadcast them to a grid of rows x columns cores
in the blocked order of the MAC loop, and join the C tiles back into row-major blocks.
Requantisation per output column j (one shared value when per-tensor):
  c = sat(round_half_away((acc + bias_j) · mult_j / 2^shift_j)),
  mult_j · 2^-shift_j = a_scale · b_scale_j / c_scale, mult_j a 31-bit multiplier.
A per-column scale so small that its shift passes 62 (the int64 shift's limit) does not refuse
the build: that column keeps what survives at shift 62, mult_j = round(scale · 2^62) (fewer
bits, off by at most |acc| · 2^-63 < 2^-31 of an LSB), and where nothing survives (mult_j 0)
the column is exactly 0, as the float reference rounds it; the build notes each such column.
A per-tensor scale that small (every output 0) is still refused.

runtime_params=1 (one build per shape, every layer's values bound per call): the B input is
[K + tk, N] int8, the weights followed by one k-tile of per-column quantisation records, built by
`MatmulSpec.pack_params`. Record rows of column j (the rest of the tile is zero):
  rows 0-3: mult_j, int32 little-endian bytes;  rows 4-7: bias_j, int32 little-endian bytes;
  row 8: shift_j (1..62).
The same B transfer streams k_tiles + 1 tiles per output tile, so the records reach the cores as
one more B element, blocked like any B tile ([tk/s][tn/t][s][t]); the core decodes its tile's
columns from it (mlir/matmul/matmul_records.h). Always per column (the shift>62 rule above
applies); tk must hold the 9 record rows. The golden model decodes the records itself.

epilogue="gelu" (runtime_params=1 only) fuses a GELU into the output step:
  C = T[requant(acc + bias) + 128],
the int8 pre-activation (at the c_scale the records are made for) mapped through the layer's
256-entry int8 table T, the table the gelu kernel's pack_params makes, so the result equals
matmul (epilogue none) followed by the gelu kernel bit for bit. T rides in the same record
tile, after the records: in the tile's blocked order ([tk/s][tn/t][s][t], as the core receives
it) T[e] is byte TABLE_OFFSET + e, TABLE_OFFSET = 2·s·tn, the first block row past the records
(rows 2s.. of the tile, 16.. with s = 8); every column block's record tile carries its own copy.
So (tk - 2s)·tn >= 256 (the least tk is named when not), and B, the memory plan and the DMA are
unchanged. The core reads T[v + 128] straight from the record tile; the scalar path looks each
element up as it stores it, the vector path makes one pass over the tile after its vector
requantisation (AIE API has no int8 table gather), both counted in out_cycles_per_tile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codegen.cost import Workload
from codegen.kernels.gelu import GeluSpec
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
    device_param,
    fifo_depth_param,
    load_int_vector,
    load_vector,
    path_param,
    quantize_multiplier,
    refuse_runtime_values,
    round_half_away,
    runtime_params_param,
    saturate_i8,
    scale_param,
)
from runtime.emulator.dma import check_dma
from runtime.emulator.tokens import TASK_QUEUE_DEPTH
from runtime.manifest import BufferSpec

MULT_BITS = 31
# Core cycles per output tile besides the MACs, npukit's own count from the core code (not a
# measurement). Scalar path, per element: zeroing its accumulator (1) and matmul_out_i8's load,
# bias add, 64-bit multiply as 32-bit parts, round, shift, saturate and store (8). Vector path:
# the zeroing stays a scalar loop (1 per element); the requantisation sets one multiplier (and
# bias) lane per element of a block column, then per r x t block loads, multiplies, shifts and
# stores in about 4 vector cycles (matmul_mac_vector.h).
SCALAR_OUT_OPS = 9
ZERO_OPS = 1
VECTOR_BLOCK_OPS = 4
MAX_SHIFT = 62  # the core rounds acc·mult (int64) by a shift of at most 62
MAX_REPEAT = 64  # the shim BD's repeat (d3) count, NPU_FACTS 2 / mlir-aie's verifier
STACK = 1024
# The vector path's frames as the host build of the AIE API subset measures them (vectors and
# accumulators as arrays; on the core they live in registers): under 2 KiB summed for aie2's
# 4x8x8 blocks, under 4 KiB for aie2p's 8x8x8.
VECTOR_STACK = {"aie2": 2048, "aie2p": 4096}
# runtime_params=1's record rows in B's last k-tile (module docstring).
REC_MULT, REC_BIAS, REC_SHIFT = 0, 4, 8
REC_ROWS = 9
# Core cycles per tile column to decode its record (9 byte loads, shifts and ors): npukit's
# count of matmul_records.h, not a measurement.
REC_DECODE_OPS = 24
EPILOGUES = ("none", "gelu")
TABLE_SIZE = 256
# Core cycles per element of the GELU lookup (npukit's count of matmul_records.h, not a
# measurement): the scalar path adds the index offset and one byte load to its store; the vector
# path's pass after the vector requantisation loads, offsets, looks up and stores.
SCALAR_LOOKUP_OPS = 2
VECTOR_LOOKUP_OPS = 4
VALUE_PARAMS = ("a_scale", "b_scale", "c_scale", "b_scales", "bias")


# The int8 blocks each core's MAC loop consumes (shared contract with the vector MAC): A as
# [tm/r][tk/s][r][s], B as [tk/s][tn/t][s][t], the accumulator and C as [tm/r][tn/t][r][t]; AIE
# API's int8 mmul shapes, <4,8,8> on aie2 and 8x8x8 on aie2p (NPU_FACTS 8).
BLOCKS = {"aie2": (4, 8, 8), "aie2p": (8, 8, 8)}
MAX_ROWS = 4  # compute rows 2..5 on npu1 and npu2 (NPU_FACTS 1)
# A shim tile has 16 BDs (dma.SHIM_BDS): per group of row blocks a column uses one for C and
# two (A, B) per row block, so 7 row blocks would fit; but each row block is one transfer on the
# A and on the B channel, and a channel's task queue holds 4 (TASK_QUEUE_DEPTH), so a group is at
# most 4 row blocks, then every C is waited on.
SHIM_BDS = 16
MAX_GROUP = min((SHIM_BDS - 1) // 2, TASK_QUEUE_DEPTH)
MAX_WRAP = 1023  # a shim BD's d0/d1 wrap (NPU_FACTS 2)


def core_grid(m_tiles: int, n_tiles: int, rows: int, cols: int, available: int
              ) -> tuple[int, int]:
    """(rows, columns) of cores for m_tiles x n_tiles output tiles: `rows`/`cols` where given
    (non-zero), else the grid of most cores (then most columns) whose rows divide m_tiles and
    columns divide n_tiles, each A-carrying shim feeding whole rows of cores."""
    options = [
        (r, c)
        for c in ([cols] if cols else range(1, available + 1))
        for r in ([rows] if rows else range(1, MAX_ROWS + 1))
        if (cols or n_tiles % c == 0) and (rows or m_tiles % r == 0)
        # the A shims, min(r, c) of them, must each feed whole rows of cores
        and (bool(rows and cols) or r % min(r, c) == 0)
    ]
    if not options:
        return rows or 1, cols or 1
    return max(options, key=lambda rc: (rc[0] * rc[1], rc[1]))


def arch(device: str) -> str:
    return "aie2p" if device.startswith("npu2") else "aie2"


class MatmulSpec(KernelSpec):
    """Whole-matrix int8 matmul with requantisation on a grid of rows x columns cores.

    Core (c, 2 + r) computes the output tiles (bi·rows + r, bj·columns + c). Column c's shim
    streams B's column blocks to its mem tile, which broadcasts them to the column's cores; the
    A row blocks enter through the first min(rows, columns) shims, each mem tile distributing
    its rows to one broadcast per row of cores. The mem tiles re-lay tiles out into the MAC
    blocks (`dimensionsToStream`) and join each column's C tiles back into row-major order.
    """

    name = "matmul"
    summary = "int8 C = requant(A·B + bias), whole matrices per invocation, up to the whole array"
    CORE_SOURCES = ("matmul.cc",)
    CORE_SYMBOLS = ("matmul_acc_i8", "matmul_out_i8")
    ACCURACY = Accuracy(min_pearson=0.9999, min_within_1=1.0, max_diff=1)
    PARAMS = (
        Param("M", int, 64, "rows of A and C", 1, 1 << 16),
        Param("K", int, 64, "columns of A, rows of B", 1, 1 << 16),
        Param("N", int, 64, "columns of B and C", 1, 1 << 16),
        Param("tm", int, 64, "tile rows of A/C", 4, 256, multiple_of=4),
        Param("tk", int, 64, "tile depth", 8, 256, multiple_of=8),
        Param("tn", int, 64, "tile columns of B/C", 8, 256, multiple_of=8),
        Param("rows", int, 0, "compute rows per column (0: as many of 4 as divide M/tm)", 0,
              MAX_ROWS),
        Param("columns", int, 0, "columns of cores (0: as many as the device has and divide "
              "N/tn)", 0, 8),
        scale_param("a_scale", 4.0 / 127.0, "scale of A"),
        scale_param("b_scale", 0.1 / 127.0, "scale of B (per tensor)"),
        scale_param("c_scale", 2.0 / 127.0, "scale of C"),
        Param("b_scales", str, "", "per-column scales of B: a .npy file of N floats"),
        Param("bias", str, "", "int32 bias per column: a .npy file of N integers"),
        fifo_depth_param(),
        device_param(),
        path_param(),
        runtime_params_param(),
        Param("epilogue", str, "none", "fused output step: none, or gelu (C = T[requant + 128], "
              "the layer's GELU table in B's record tile; needs runtime_params=1)",
              choices=EPILOGUES),
    )

    # -- derived sizes -------------------------------------------------------------------
    @property
    def m_tiles(self) -> int:
        return self.M // self.tm

    @property
    def k_tiles(self) -> int:
        return self.K // self.tk

    @property
    def n_tiles(self) -> int:
        return self.N // self.tn

    @property
    def runtime(self) -> bool:
        """runtime_params=1: the requantisation comes in B's last k-tile (module docstring)."""
        return bool(self.runtime_params)

    @property
    def gelu(self) -> bool:
        """epilogue=gelu: C goes through the layer's GELU table (module docstring)."""
        return self.epilogue == "gelu"

    @property
    def table_offset(self) -> int:
        """Byte of T[0] in the blocked record tile: the first block row past the records."""
        return 2 * self.block[1] * self.tn

    @property
    def per_column(self) -> bool:
        return self.runtime or bool(self.b_scales)

    @property
    def b_rows(self) -> int:
        """Rows of the B input: K, plus one k-tile of records with runtime_params=1."""
        return self.K + self.tk if self.runtime else self.K

    @property
    def b_tiles(self) -> int:
        """B tiles streamed per output tile."""
        return self.k_tiles + 1 if self.runtime else self.k_tiles

    @property
    def stack_size(self) -> int:
        return VECTOR_STACK[arch(self.device)] if self.core_path == "vector" else STACK

    @property
    def columns_available(self) -> int:
        return DEVICE_COLUMNS[self.device]

    @property
    def block(self) -> tuple[int, int, int]:
        """(r, s, t): the MAC block of the device's architecture."""
        return BLOCKS[arch(self.device)]

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of cores: the parameters, else the grid of most cores (then most
        columns, for shim bandwidth) whose rows and columns divide the tiles."""
        return core_grid(self.m_tiles, self.n_tiles, self.params["rows"],
                         self.params["columns"], self.columns_available)

    @property
    def n_rows(self) -> int:
        return self.grid[0]

    @property
    def n_cols(self) -> int:
        return self.grid[1]

    @property
    def a_shims(self) -> int:
        """Columns whose shim and mem tile carry A: each serves rows / a_shims rows of cores."""
        return min(self.n_rows, self.n_cols)

    @property
    def rows_per_a(self) -> int:
        return self.n_rows // self.a_shims

    @property
    def m_blocks(self) -> int:
        """Row blocks of rows x tm output rows; each core computes one tile row per block."""
        return self.m_tiles // self.n_rows

    @property
    def n_blocks(self) -> int:
        """Column blocks of columns x tn output columns."""
        return self.n_tiles // self.n_cols

    def validate(self) -> None:
        for dim, tile in (("M", "tm"), ("K", "tk"), ("N", "tn")):
            if self.params[dim] % self.params[tile]:
                raise SpecError(f"{tile} {self.params[tile]} does not divide {dim} "
                                f"{self.params[dim]}; pad {dim} to a multiple of {tile}")
        r, s, t = self.block
        for tile, unit, what in (("tm", r, "rows"), ("tk", s, "depth"), ("tn", t, "columns")):
            if self.params[tile] % unit:
                raise SpecError(f"{tile} {self.params[tile]} is not a multiple of {unit}, the "
                                f"{arch(self.device)} int8 MAC block's {what} ({r}x{s}x{t})")
        rows, cols = self.grid
        if cols > self.columns_available:
            raise SpecError(f"columns {cols} is more than device {self.device} has "
                            f"({self.columns_available})")
        if self.m_tiles % rows:
            raise SpecError(f"{self.m_tiles} row(s) of tiles (M/tm) do not split evenly over "
                            f"{rows} rows of cores")
        if self.n_tiles % cols:
            raise SpecError(f"{self.n_tiles} column(s) of tiles (N/tn) do not split evenly over "
                            f"{cols} columns of cores")
        if rows % self.a_shims:
            raise SpecError(f"rows {rows} do not split evenly over the {self.a_shims} columns "
                            "that carry A (min(rows, columns)): each shim feeds whole rows")
        if self.n_blocks > MAX_REPEAT:
            raise SpecError(f"N/(tn·columns) = {self.n_blocks} column blocks, at most "
                            f"{MAX_REPEAT} (the shim DMA's repeat count); raise tn or columns")
        if rows * self.tm > MAX_WRAP:
            raise SpecError(f"rows·tm = {rows * self.tm} C rows per mem-tile element, more "
                            f"than the shim BD's {MAX_WRAP}-row wrap; lower tm or rows")
        if self.runtime:
            self._validate_runtime()
        elif self.gelu:
            raise SpecError("epilogue gelu needs runtime_params=1 (its table rides in B's "
                            "record tile); add -p runtime_params=1")
        else:
            self._validate_values()
        for t_ in (t for t in self.transfers() if "wait" not in t):
            problems = check_dma(t_["offsets"], t_["sizes"], t_["strides"], 1, t_["elems"])
            if problems:
                raise SpecError(f"the {t_['what']} transfer breaks a shim DMA limit: "
                                f"{'; '.join(problems)}")
        self.check_memory()

    def _validate_runtime(self) -> None:
        refuse_runtime_values(self, VALUE_PARAMS, "B")
        s = self.block[1]
        least = -(-REC_ROWS // s) * s
        if self.gelu:
            least = max(least, 2 * s + -(-TABLE_SIZE // (self.tn * s)) * s)
        if self.tk < REC_ROWS:
            raise SpecError(f"tk {self.tk} cannot hold runtime_params=1's {REC_ROWS} record "
                            f"rows (B's last k-tile); {self._tk_advice(least)}")
        if self.gelu and self.tk * self.tn - self.table_offset < TABLE_SIZE:
            raise SpecError(f"tk {self.tk} x tn {self.tn} cannot hold epilogue=gelu's "
                            f"{TABLE_SIZE}-entry table after the records (rows {2 * s}.. of "
                            f"B's record tile); {self._tk_advice(least, f' at tn {self.tn}')}")

    def _tk_advice(self, least: int, at: str = "") -> str:
        """The fix for a tk below `least`: the smallest tk >= least that divides K and makes a
        valid variant, else the least padding of K that does (tk must divide K)."""
        s = self.block[1]
        most = next(p.maximum for p in self.PARAMS if p.name == "tk")
        for t in range(least, min(self.K, most) + 1, s):
            if self.K % t == 0 and self._valid({"tk": t}):
                return f"use tk {t}{at} (it divides K {self.K})"
        for t in range(least, most + 1, s):
            padded = -(-self.K // t) * t
            if self._valid({"tk": t, "K": padded}):
                return (f"no tk >= {least} dividing K {self.K} makes a valid variant: pad K to "
                        f"{padded} and use tk {t}{at}")
        return f"no tk from {least} to {most} makes a valid variant{at}: lower tn or tm"

    def _valid(self, change: dict[str, int]) -> bool:
        try:
            type(self)({**self.params, **change})
        except SpecError:
            return False
        return True

    def _validate_values(self) -> None:
        mults, shifts = self.requant()
        for m, shift in zip(mults, shifts, strict=True):
            if not 1 <= shift <= MAX_SHIFT:
                raise SpecError(f"a_scale·b_scale/c_scale gives a shift of {shift} (multiplier "
                                f"{m}), outside 1..{MAX_SHIFT}: the scales are out of range")
        if not any(mults):
            raise SpecError("every column's a_scale·b_scale/c_scale is below 2^-63: every "
                            "output would be 0; the scales are out of range")
        self.bias_values()  # read and checked now, not first at render time

    def scales(self) -> np.ndarray:
        if self.per_column:
            s = load_vector(self.b_scales, self.N, "b_scales")
            if not np.all(s > 0):
                raise SpecError(f"b_scales {self.b_scales}: every scale must be positive")
            return s
        return np.array([self.b_scale])

    def bias_values(self) -> np.ndarray | None:
        if not self.bias:
            return None
        return load_int_vector(self.bias, self.N, "bias", 32)

    def requant(self) -> tuple[list[int], list[int]]:
        """(mult_j, shift_j) per column (one pair per tensor); see the module docstring for a
        per-column scale whose shift would pass MAX_SHIFT."""
        if self.runtime:
            raise SpecError("requant: with runtime_params=1 the values are per call, in the B "
                            "input (see spec.pack_params)")
        return requant_pairs(self.a_scale, self.scales(), self.c_scale, self.per_column)

    def notes(self) -> list[str]:
        if self.runtime:
            return []
        mults, shifts = self.requant()
        reduced = [j for j, (m, s) in enumerate(zip(mults, shifts, strict=True))
                   if self.per_column and s == MAX_SHIFT and m < 1 << (MULT_BITS - 1)]
        if not reduced:
            return []
        zero = [j for j in reduced if mults[j] == 0]
        return [f"b_scales: {len(reduced)} column(s) (first {reduced[0]}) scale below the 31-bit "
                f"multiplier's range at shift {MAX_SHIFT}: kept with fewer bits; {len(zero)} of "
                "them are exactly 0 (as the float reference rounds them)"]

    def buffers(self) -> list[BufferSpec]:
        return [
            BufferSpec("A", "int8", (self.M, self.K), "in", 0),
            BufferSpec("B", "int8", (self.b_rows, self.N), "in", 1),
            BufferSpec("C", "int8", (self.M, self.N), "out", 2),
        ]

    def core_data(self) -> list[MemoryItem]:
        if self.runtime:
            return []  # the records arrive in a B tile buffer
        n_requant = self.N if self.per_column else 1
        return [
            MemoryItem("multipliers and shifts", 8 * n_requant, kind="static"),
            *([MemoryItem("bias (int32)", 4 * self.N, kind="static")] if self.bias else []),
        ]

    def memory_plan(self) -> list[TilePlan]:
        depth = self.fifo_depth
        rows, cols = self.grid
        items = [
            MemoryItem("A tile buffers", self.tm * self.tk, depth),
            MemoryItem("B tile buffers", self.tk * self.tn, depth),
            MemoryItem("C tile buffers", self.tm * self.tn, depth),
            MemoryItem("accumulator (int32)", 4 * self.tm * self.tn),
            *self.core_data(),
            MemoryItem("stack", self.stack_size, kind="stack"),
        ]
        plans = [TilePlan((c, 2 + r), CORE_MEMORY, list(items))
                 for c in range(cols) for r in range(rows)]
        for c in range(cols):
            mem = [MemoryItem("B tile buffers", self.tk * self.tn, depth),
                   MemoryItem("C row-block buffers", rows * self.tm * self.tn, depth)]
            if c < self.a_shims:
                mem.insert(0, MemoryItem("A row-block buffers",
                                         self.rows_per_a * self.tm * self.tk, depth))
            plans.append(TilePlan((c, 1), MEM_TILE_MEMORY, mem))
        return plans

    # -- the runtime sequence, computed here so validate() can check every transfer ------
    def groups(self) -> list[range]:
        """Row blocks issued together: each column then waits for its C before the next."""
        return [range(g, min(g + MAX_GROUP, self.m_blocks))
                for g in range(0, self.m_blocks, MAX_GROUP)]

    def transfers(self) -> list[dict[str, Any]]:
        """Every dma_memcpy_nd of the runtime sequence, in issue order, and the waits."""
        rows, cols = self.grid
        tm, tk, tn, K, N = self.tm, self.tk, self.tn, self.K, self.N
        g = self.rows_per_a
        out: list[dict[str, Any]] = []
        for group in self.groups():
            for c in range(cols):
                out.append({
                    "what": f"C column {c}", "arg": "C", "fifo": f"c{c}", "id": 0,
                    "token": False, "elems": self.M * N,
                    "offsets": [0, 0, 0, group.start * rows * tm * N + c * tn],
                    "sizes": [len(group), self.n_blocks, rows * tm, tn],
                    "strides": [rows * tm * N, cols * tn, N, 1],
                })
                for i, bi in enumerate(group):
                    if c < self.a_shims:
                        out.append({
                            "what": f"A column {c}", "arg": "A", "fifo": f"a{c}",
                            "id": 1 + 2 * i, "token": False, "elems": self.M * K,
                            "offsets": [0, 0, 0, (bi * rows + c * g) * tm * K],
                            "sizes": [self.n_blocks, self.k_tiles, g * tm, tk],
                            "strides": [0, tk, K, 1],
                        })
                    out.append({
                        "what": f"B column {c}", "arg": "B", "fifo": f"b{c}",
                        "id": 2 + 2 * i, "token": False, "elems": self.b_rows * N,
                        "offsets": [0, 0, 0, c * tn],
                        "sizes": [self.n_blocks, self.b_tiles, tk, tn],
                        "strides": [cols * tn, tk * N, N, 1],
                    })
            out.extend({"wait": f"c{c}"} for c in range(cols))
        return out

    def dims(self) -> dict[str, list[tuple[int, int]]]:
        """The mem tiles' `dimensionsToStream` patterns, outermost first."""
        r, s, t = self.block
        tm, tk, tn = self.tm, self.tk, self.tn
        return {
            # row-major tm x tk -> [tm/r][tk/s][r][s]
            "a": [(tm // r, r * tk), (tk // s, s), (r, tk), (s, 1)],
            # row-major tk x tn -> [tk/s][tn/t][s][t]
            "b": [(tk // s, s * tn), (tn // t, t), (s, tn), (t, 1)],
            # rows tiles of [tm/r][tn/t][r][t] stacked -> row-major (rows·tm) x tn
            "c": [(self.n_rows * tm // r, r * tn), (r, t), (tn // t, r * t), (t, 1)],
        }

    def render_context(self) -> dict[str, Any]:
        mults, shifts = ([], []) if self.runtime else self.requant()
        bias = None if self.runtime else self.bias_values()
        rows, cols = self.grid
        r, s, t = self.block
        g = self.rows_per_a
        return {
            **self.params,
            "kernel": self.name,
            "object": self.object_name,
            "rows": rows,
            "columns": cols,
            "a_shims": self.a_shims,
            "rows_per_a": g,
            "m_blocks": self.m_blocks,
            "n_blocks": self.n_blocks,
            "k_tiles": self.k_tiles,
            "a_tile": self.tm * self.tk,
            "b_tile": self.tk * self.tn,
            "c_tile": self.tm * self.tn,
            "block_r": r,
            "block_s": s,
            "block_t": t,
            "dims": {k: ", ".join(f"<size = {n}, stride = {st}>" for n, st in v)
                     for k, v in self.dims().items()},
            "transfers": self.transfers(),
            "stack_size": self.stack_size,
            "per_column": self.per_column,
            "mults": mults,
            "shifts": shifts,
            "has_bias": bias is not None,
            "bias_values": [] if bias is None else [int(b) for b in bias],
            "runtime": self.runtime,
            "b_rows": self.b_rows,
            "gelu": self.gelu,
            "table_offset": self.table_offset,
        }

    def out_cycles_per_tile(self) -> int:
        """Core cycles per output tile outside the MAC loop (see SCALAR_OUT_OPS)."""
        tm, tn = self.tm, self.tn
        decode = tn * REC_DECODE_OPS if self.runtime else 0
        if self.core_path == "scalar":
            lookup = tm * tn * SCALAR_LOOKUP_OPS if self.gelu else 0
            return tm * tn * SCALAR_OUT_OPS + decode + lookup
        r, _, t = self.block
        lanes = (tn // t) * r * t * (2 if self.bias or self.runtime else 1)
        lookup = tm * tn * VECTOR_LOOKUP_OPS if self.gelu else 0
        return (tm * tn * ZERO_OPS + lanes + (tm // r) * (tn // t) * VECTOR_BLOCK_OPS
                + decode + lookup)

    def workload(self) -> Workload:
        """Per invocation: each core's MACs and output work, each DMA channel's bytes."""
        rows, cols = self.grid
        tm, tn, K = self.tm, self.tn, self.K
        tiles = self.m_blocks * self.n_blocks  # output tiles per core
        a_bytes = tiles * tm * K  # one row of A tiles per output tile
        b_bytes = tiles * self.b_rows * tn  # with runtime_params=1, one record tile more
        c_bytes = tiles * tm * tn
        macs, scalar, shim, mem, core = {}, {}, {}, {}, {}
        for c in range(cols):
            for r in range(rows):
                name = f"core({c}, {2 + r})"
                macs[name] = tiles * tm * tn * K
                scalar[name] = tiles * self.out_cycles_per_tile()
                core[f"{name} S2MM @ar{r}"] = a_bytes
                core[f"{name} S2MM @bc{c}"] = b_bytes
                core[f"{name} MM2S @c{c}_{r}"] = c_bytes
                mem[f"mem({c}) S2MM @c{c}_{r}"] = c_bytes
            if c < self.a_shims:
                shim[f"shim({c}) MM2S @a{c}"] = self.rows_per_a * a_bytes
                mem[f"mem({c}) S2MM @a{c}"] = self.rows_per_a * a_bytes
                for j in range(self.rows_per_a):
                    mem[f"mem({c}) MM2S @ar{c * self.rows_per_a + j}"] = a_bytes
            shim[f"shim({c}) MM2S @b{c}"] = b_bytes
            shim[f"shim({c}) S2MM @c{c}"] = rows * c_bytes
            mem[f"mem({c}) S2MM @b{c}"] = b_bytes
            mem[f"mem({c}) MM2S @bc{c}"] = b_bytes
            mem[f"mem({c}) MM2S @c{c}"] = rows * c_bytes
        bds = sum(1 for t in self.transfers() if "wait" not in t)
        return Workload(self.name, self.device, self.core_path, macs, shim, mem, core, scalar,
                        bds)

    # -- data ---------------------------------------------------------------------------
    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Activations N(0,1) over ±4 sigma, weights N(0, 0.02²) like a trained projection; with
        runtime_params=1 the layer's values (scales, per-column weight spread, bias) are drawn
        from the seed too and packed into B."""
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((self.M, self.K))
        if self.runtime:
            return self._random_layer(rng, a)
        b = rng.normal(0.0, 0.02, (self.K, self.N))
        b_scale = self.scales()[None, :] if self.per_column else self.b_scale
        return [saturate_i8(round_half_away(a / self.a_scale)),
                saturate_i8(round_half_away(b / b_scale))]

    def _random_layer(self, rng: np.random.Generator, a: np.ndarray) -> list[np.ndarray]:
        a_scale = 4.0 / 127.0 * 2.0 ** rng.uniform(-1, 1)
        c_scale = 2.0 / 127.0 * 2.0 ** rng.uniform(-1, 1)
        spread = 0.02 * 2.0 ** rng.uniform(-1, 1, self.N)
        b_scales = 5.0 * spread / 127.0 * 2.0 ** rng.uniform(-0.25, 0.25, self.N)
        b = saturate_i8(round_half_away(rng.standard_normal((self.K, self.N)) * spread
                                        / b_scales))
        bias = round_half_away(rng.normal(0.0, 0.05, self.N) / (a_scale * b_scales))
        table = {}
        if self.gelu:  # GELU's slope reaches 1.13: out_scale above that keeps steps of 1 LSB
            table = {"gelu_table": gelu_table(c_scale, c_scale * rng.uniform(1.15, 2.0))}
        return [saturate_i8(round_half_away(a / a_scale)),
                self.pack_params(b=b, b_scales=b_scales, a_scale=a_scale, c_scale=c_scale,
                                 bias=bias.astype(np.int64), **table)]

    def edge_inputs(self) -> list[tuple[str, list[np.ndarray]]]:
        """The base edge cases; with runtime_params=1 on the weights only, B's records those of
        the default scales (a record of int8 extremes is no requantisation)."""
        cases = super().edge_inputs()
        if self.runtime:
            defaults = {p.name: p.default for p in self.PARAMS}
            table = ({"gelu_table": gelu_table(defaults["c_scale"], 1.5 * defaults["c_scale"])}
                     if self.gelu else {})
            records = self.pack_params(
                b=np.zeros((self.K, self.N), np.int8), b_scales=np.full(self.N, defaults[
                    "b_scale"]), a_scale=defaults["a_scale"], c_scale=defaults["c_scale"],
                **table)
            for _, (_, b) in cases:
                b[self.K:] = records[self.K:]
        return cases

    def pack_params(self, **values: Any) -> np.ndarray:
        """The B input of runtime_params=1 from b (int8 [K, N]), b_scales (N floats), a_scale,
        c_scale, bias (N int32, or None) and, with epilogue=gelu only, gelu_table (int8 [256],
        the gelu kernel's pack_params table for in_scale=c_scale): the weights and one k-tile
        of per-column records and the table (module docstring); each value checked as the
        compiled variant checks it at build time, a SpecError naming the first bad one."""
        if not self.runtime:
            raise SpecError("pack_params builds the B input of runtime_params=1; this variant "
                            "compiles its values in (pass B [K, N] as it is)")
        names = ("b", "b_scales", "a_scale", "c_scale", "bias")
        required = names[:4]
        if self.gelu:
            names, required = (*names, "gelu_table"), (*required, "gelu_table")
        elif "gelu_table" in values:
            raise SpecError("pack_params: gelu_table is a value of epilogue=gelu; this variant "
                            "has epilogue none (build it with -p epilogue=gelu)")
        check_value_names("matmul", values, names, required, note="bias may be None")
        b, b_scales, a_scale, c_scale = (values[n] for n in names[:4])
        bias = values.get("bias")
        K, N = self.K, self.N
        b = np.asarray(b)
        if b.dtype != np.int8 or b.shape != (K, N):
            raise SpecError(f"pack_params b must be int8 [{K}, {N}], not {b.dtype} "
                            f"{list(b.shape)}")
        scales = _positive_values("b_scales", b_scales, (N,))
        a_s = float(_positive_values("a_scale", a_scale, ())[()])
        c_s = float(_positive_values("c_scale", c_scale, ())[()])
        mults, shifts = requant_pairs(a_s, scales, c_s, per_column=True)
        for j, (m, shift) in enumerate(zip(mults, shifts, strict=True)):
            if not 1 <= shift <= MAX_SHIFT:
                raise SpecError(f"pack_params: a_scale·b_scales[{j}]/c_scale gives a shift of "
                                f"{shift} (multiplier {m}), outside 1..{MAX_SHIFT}: the scales "
                                "are out of range")
        if not any(mults):
            raise SpecError("pack_params: every column's a_scale·b_scales/c_scale is below "
                            "2^-63: every output would be 0; the scales are out of range")
        bias_values = np.zeros(N, np.int64) if bias is None else _int32_values(bias, N)
        records = np.zeros((self.tk, N), np.uint8)
        for k in range(4):
            records[REC_MULT + k] = (np.array(mults, np.int64) >> (8 * k)) & 0xFF
            records[REC_BIAS + k] = (bias_values >> (8 * k)) & 0xFF
        records[REC_SHIFT] = shifts
        if self.gelu:
            records |= np.tile(self._table_rows(_table_values(values["gelu_table"])),
                               (1, self.n_tiles))
        return np.concatenate([b, records.view(np.int8)])

    def _table_rows(self, table: np.ndarray) -> np.ndarray:
        """One column block's record tile, row-major tk x tn, holding only `table` where the
        blocked tile the core reads has T[0..255] at table_offset."""
        _, s, t = self.block
        tk, tn = self.tk, self.tn
        flat = np.zeros(tk * tn, np.uint8)
        flat[self.table_offset:self.table_offset + TABLE_SIZE] = table.view(np.uint8)
        return flat.reshape(tk // s, tn // t, s, t).transpose(0, 2, 1, 3).reshape(tk, tn)

    def decode_table(self, b_input: np.ndarray) -> np.ndarray:
        """The GELU table T from an epilogue=gelu B input, read in numpy from each column
        block's blocked record tile; copies that differ are refused (pack_params writes one)."""
        _, s, t = self.block
        tk, tn = self.tk, self.tn
        rec = np.asarray(b_input).reshape(self.b_rows, self.N)[self.K:]
        tables = [rec[:, j * tn:(j + 1) * tn].reshape(tk // s, s, tn // t, t)
                  .transpose(0, 2, 1, 3).reshape(-1)[self.table_offset:][:TABLE_SIZE]
                  for j in range(self.n_tiles)]
        for j, other in enumerate(tables):
            if not np.array_equal(other, tables[0]):
                raise SpecError(f"B's GELU table in column block {j} (columns {j * tn}.."
                                f"{(j + 1) * tn - 1}) differs from block 0's; build B with "
                                "spec.pack_params")
        return tables[0].astype(np.int8)

    def decode_params(self, b_input: np.ndarray) -> tuple[np.ndarray, ...]:
        """(weights [K, N], mult, shift, bias) from a runtime_params=1 B input, decoded from
        the record rows in numpy; records pack_params cannot have made are refused."""
        b_in = np.asarray(b_input).reshape(self.b_rows, self.N)
        rec = b_in[self.K:self.K + REC_ROWS].view(np.uint8).astype(np.int64)

        def word(row: int) -> np.ndarray:
            u = sum(rec[row + k] << (8 * k) for k in range(4))
            return (u ^ (1 << 31)) - (1 << 31)  # the int32 the core reads

        mult, bias, shift = word(REC_MULT), word(REC_BIAS), rec[REC_SHIFT]
        bad = np.flatnonzero((shift < 1) | (shift > MAX_SHIFT) | (mult < 0))
        if bad.size:
            j = int(bad[0])
            raise SpecError(f"B's record of column {j} (rows {self.K}..{self.K + REC_ROWS - 1})"
                            f" has multiplier {mult[j]}, shift {shift[j]}: not a record; build "
                            "B with spec.pack_params")
        return b_in[:self.K], mult, shift, bias

    def _values(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """(A, weights, bias [N], mult [N or 1], shift [N or 1]) of one call."""
        a, b = inputs
        if self.runtime:
            w, mult, shift, bias = self.decode_params(b)
            return a, w, bias, mult, shift
        bias = self.bias_values()
        mults, shifts = (np.array(v, dtype=np.int64) for v in self.requant())
        return a, b, np.zeros(self.N, np.int64) if bias is None else bias, mults, shifts

    def _acc(self, a: np.ndarray, b: np.ndarray, bias: np.ndarray) -> np.ndarray:
        a64, b64 = (np.asarray(x, dtype=np.float64) for x in (a, b))
        # Exact: every partial sum is an integer below 2^53.
        acc = (a64.reshape(self.M, self.K) @ b64.reshape(self.K, self.N)).astype(np.int64)
        return acc + bias[None, :]

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        a, b, bias, mults, shifts = self._values(inputs)
        prod = self._acc(a, b, bias) * mults[None, :]
        half = np.left_shift(np.int64(1), shifts - 1)[None, :]
        sh = shifts[None, :]
        c = np.where(prod >= 0, (prod + half) >> sh, -((-prod + half) >> sh))
        return [self._epilogue(inputs, saturate_i8(c))]

    def _epilogue(self, inputs: list[np.ndarray], c: np.ndarray) -> np.ndarray:
        """epilogue=gelu: the int8 pre-activation c through B's table, T[c + 128]."""
        if not self.gelu:
            return c
        return self.decode_table(inputs[1])[c.astype(np.int16) + 128]

    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        a, b, bias, mults, shifts = self._values(inputs)
        if self.runtime:  # the decoded real value: mult · 2^-shift
            scale = (mults.astype(np.float64) * 2.0 ** -shifts.astype(np.float64))[None, :]
        else:
            scale = self.a_scale * self.scales()[None, :] / self.c_scale
        acc = self._acc(a, b, bias).astype(np.float64)
        return [self._epilogue(inputs, saturate_i8(round_half_away(acc * scale)))]


def requant_pairs(a_scale: float, b_scales: np.ndarray, c_scale: float,
                  per_column: bool) -> tuple[list[int], list[int]]:
    """(mult_j, shift_j) for a_scale·b_scale_j/c_scale; a per-column shift past MAX_SHIFT keeps
    what survives at MAX_SHIFT (module docstring)."""
    mults, shifts = [], []
    for s in b_scales:
        real = a_scale * float(s) / c_scale
        m, shift = quantize_multiplier(real, MULT_BITS, "requant scale")
        if shift > MAX_SHIFT and per_column:
            m, shift = int(np.floor(real * 2.0**MAX_SHIFT + 0.5)), MAX_SHIFT
        mults.append(m)
        shifts.append(shift)
    return mults, shifts


def gelu_table(in_scale: float, out_scale: float) -> np.ndarray:
    """The gelu kernel's table for these scales (its spec's pack_params), for epilogue=gelu."""
    return GeluSpec({"runtime_params": 1}).pack_params(in_scale=in_scale, out_scale=out_scale)


def _table_values(value: Any) -> np.ndarray:
    """`value` as the int8 [256] GELU table, or a one-line SpecError."""
    t = np.asarray(value)
    if t.dtype != np.int8 or t.shape != (TABLE_SIZE,):
        raise SpecError(f"pack_params gelu_table must be int8 [{TABLE_SIZE}] (the gelu kernel's "
                        f"spec.pack_params makes it), not {t.dtype} {list(t.shape)}")
    return t


def _positive_values(what: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`value` as float64 of `shape`, every entry finite and positive, or a one-line SpecError."""
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(f"pack_params {what} must be numbers, not {type(value).__name__}") from None
    if x.shape != shape:
        raise SpecError(f"pack_params {what} must have shape {list(shape)}, not {list(x.shape)}")
    bad = np.flatnonzero(~(np.isfinite(x) & (x > 0)))
    if bad.size:
        i = int(bad[0])
        where = f"[{i}]" if shape else ""
        raise SpecError(f"pack_params {what}{where} {x.ravel()[i]} must be a positive finite "
                        "number")
    return x


def _int32_values(value: Any, n: int) -> np.ndarray:
    """`value` as n int64 within int32 (integers or whole-number floats), or a SpecError."""
    x = np.asarray(value)
    if x.shape != (n,) or x.dtype.kind not in "iuf":
        raise SpecError(f"pack_params bias must be {n} integers (shape [{n}]), not {x.dtype} "
                        f"{list(x.shape)}")
    if x.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(x) | (x != np.round(x)))
        if bad.size:
            i = int(bad[0])
            raise SpecError(f"pack_params bias[{i}] {x[i]} is not a whole number")
    lo, hi = -(1 << 31), (1 << 31) - 1
    wide = x.astype(np.float64) if x.dtype.kind == "f" else x.astype(object)
    bad = np.flatnonzero((wide < lo) | (wide > hi))
    if bad.size:
        i = int(bad[0])
        raise SpecError(f"pack_params bias[{i}] {x[i]} is outside int32 ({lo}..{hi})")
    return x.astype(np.int64)

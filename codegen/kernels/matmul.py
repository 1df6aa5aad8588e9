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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codegen.cost import Workload
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
    device_param,
    fifo_depth_param,
    load_int_vector,
    load_vector,
    path_param,
    quantize_multiplier,
    round_half_away,
    saturate_i8,
    scale_param,
)
from runtime.emulator.dma import check_dma
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


# The int8 blocks each core's MAC loop consumes (shared contract with the vector MAC): A as
# [tm/r][tk/s][r][s], B as [tk/s][tn/t][s][t], the accumulator and C as [tm/r][tn/t][r][t]; AIE
# API's int8 mmul shapes, <4,8,8> on aie2 and 8x8x8 on aie2p (NPU_FACTS 8).
BLOCKS = {"aie2": (4, 8, 8), "aie2p": (8, 8, 8)}
MAX_ROWS = 4  # compute rows 2..5 on npu1 and npu2 (NPU_FACTS 1)
# A shim tile has 16 BDs (dma.SHIM_BDS): per group of row blocks a column uses one for C and
# two (A, B) per row block, so a group is at most 7 row blocks, then every C is waited on.
SHIM_BDS = 16
MAX_GROUP = (SHIM_BDS - 1) // 2
MAX_WRAP = 1023  # a shim BD's d0/d1 wrap (NPU_FACTS 2)


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
    def per_column(self) -> bool:
        return bool(self.b_scales)

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
        rows, cols = self.params["rows"], self.params["columns"]
        options = [
            (r, c)
            for c in ([cols] if cols else range(1, self.columns_available + 1))
            for r in ([rows] if rows else range(1, MAX_ROWS + 1))
            if (cols or self.n_tiles % c == 0) and (rows or self.m_tiles % r == 0)
            # the A shims, min(r, c) of them, must each feed whole rows of cores
            and (bool(rows and cols) or r % min(r, c) == 0)
        ]
        if not options:
            return rows or 1, cols or 1
        return max(options, key=lambda rc: (rc[0] * rc[1], rc[1]))

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
        mults, shifts = self.requant()
        for m, shift in zip(mults, shifts, strict=True):
            if not 1 <= shift <= MAX_SHIFT:
                raise SpecError(f"a_scale·b_scale/c_scale gives a shift of {shift} (multiplier "
                                f"{m}), outside 1..{MAX_SHIFT}: the scales are out of range")
        if not any(mults):
            raise SpecError("every column's a_scale·b_scale/c_scale is below 2^-63: every "
                            "output would be 0; the scales are out of range")
        self.bias_values()  # read and checked now, not first at render time
        for t_ in (t for t in self.transfers() if "wait" not in t):
            problems = check_dma(t_["offsets"], t_["sizes"], t_["strides"], 1, t_["elems"])
            if problems:
                raise SpecError(f"the {t_['what']} transfer breaks a shim DMA limit: "
                                f"{'; '.join(problems)}")
        self.check_memory()

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
        mults, shifts = [], []
        for s in self.scales():
            real = self.a_scale * s / self.c_scale
            m, shift = quantize_multiplier(real, MULT_BITS, "requant scale")
            if shift > MAX_SHIFT and self.per_column:
                m, shift = int(np.floor(real * 2.0**MAX_SHIFT + 0.5)), MAX_SHIFT
            mults.append(m)
            shifts.append(shift)
        return mults, shifts

    def notes(self) -> list[str]:
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
            BufferSpec("B", "int8", (self.K, self.N), "in", 1),
            BufferSpec("C", "int8", (self.M, self.N), "out", 2),
        ]

    def core_data(self) -> list[MemoryItem]:
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
                            "id": 1 + 2 * i, "token": True, "elems": self.M * K,
                            "offsets": [0, 0, 0, (bi * rows + c * g) * tm * K],
                            "sizes": [self.n_blocks, self.k_tiles, g * tm, tk],
                            "strides": [0, tk, K, 1],
                        })
                    out.append({
                        "what": f"B column {c}", "arg": "B", "fifo": f"b{c}",
                        "id": 2 + 2 * i, "token": True, "elems": K * N,
                        "offsets": [0, 0, 0, c * tn],
                        "sizes": [self.n_blocks, self.k_tiles, tk, tn],
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
        mults, shifts = self.requant()
        bias = self.bias_values()
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
        }

    def out_cycles_per_tile(self) -> int:
        """Core cycles per output tile outside the MAC loop (see SCALAR_OUT_OPS)."""
        tm, tn = self.tm, self.tn
        if self.core_path == "scalar":
            return tm * tn * SCALAR_OUT_OPS
        r, _, t = self.block
        lanes = (tn // t) * r * t * (2 if self.bias else 1)
        return tm * tn * ZERO_OPS + lanes + (tm // r) * (tn // t) * VECTOR_BLOCK_OPS

    def workload(self) -> Workload:
        """Per invocation: each core's MACs and output work, each DMA channel's bytes."""
        rows, cols = self.grid
        tm, tn, K = self.tm, self.tn, self.K
        tiles = self.m_blocks * self.n_blocks  # output tiles per core
        a_bytes = tiles * tm * K  # one row of A tiles per output tile
        b_bytes = tiles * K * tn
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
        """Activations N(0,1) over ±4 sigma, weights N(0, 0.02²) like a trained projection."""
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((self.M, self.K))
        b = rng.normal(0.0, 0.02, (self.K, self.N))
        b_scale = self.scales()[None, :] if self.per_column else self.b_scale
        return [saturate_i8(round_half_away(a / self.a_scale)),
                saturate_i8(round_half_away(b / b_scale))]

    def _acc(self, inputs: list[np.ndarray]) -> np.ndarray:
        a, b = (np.asarray(x, dtype=np.float64) for x in inputs)
        # Exact: every partial sum is an integer below 2^53.
        acc = (a.reshape(self.M, self.K) @ b.reshape(self.K, self.N)).astype(np.int64)
        bias = self.bias_values()
        return acc if bias is None else acc + bias[None, :]

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        acc = self._acc(inputs)
        mults, shifts = (np.array(v, dtype=np.int64) for v in self.requant())
        prod = acc * mults[None, :]
        half = np.left_shift(np.int64(1), shifts - 1)[None, :]
        sh = shifts[None, :]
        c = np.where(prod >= 0, (prod + half) >> sh, -((-prod + half) >> sh))
        return [saturate_i8(c)]

    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        scale = self.a_scale * self.scales()[None, :] / self.c_scale
        return [saturate_i8(round_half_away(self._acc(inputs).astype(np.float64) * scale))]

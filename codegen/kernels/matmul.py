"""C = requantise(A·B + bias): int8 A [M,K] and B [K,N], int32 accumulation, int8 C [M,N].

The host passes plain row-major matrices; the runtime sequence cuts them into tm x tk and
tk x tn tiles with DMA strides, and `columns` cores each compute every columns-th row of tiles.
Requantisation per output column j (one shared value when per-tensor):
  c = sat(round_half_away((acc + bias_j) · mult_j / 2^shift_j)),
  mult_j · 2^-shift_j = a_scale · b_scale_j / c_scale, mult_j a 31-bit multiplier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codegen.cost import Workload
from codegen.spec import (
    CORE_MEMORY,
    DEVICE_COLUMNS,
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
    quantize_multiplier,
    round_half_away,
    saturate_i8,
    scale_param,
)
from runtime.manifest import BufferSpec

MULT_BITS = 31
# Scalar ops per output element in matmul_out_i8 (load, bias add, 64-bit multiply as 32-bit
# parts, round, shift, saturate, store): npukit's own count from the code, not a measurement.
REQUANT_OPS = 8
MAX_REPEAT = 64  # the shim BD's repeat (d3) count, NPU_FACTS 2 / mlir-aie's verifier
STACK = 1024


class MatmulSpec(KernelSpec):
    """Whole-matrix int8 matmul with requantisation, tiled by DMA over 1-4 columns."""

    name = "matmul"
    summary = "int8 C = requant(A·B + bias), whole matrices per invocation, 1-4 columns"
    CORE_SOURCES = ("matmul.cc",)
    CORE_SYMBOLS = ("matmul_acc_i8", "matmul_out_i8")
    ACCURACY = Accuracy(min_pearson=0.9999, min_within_1=1.0, max_diff=1)
    PARAMS = (
        Param("M", int, 64, "rows of A and C", 1, 1 << 16),
        Param("K", int, 64, "columns of A, rows of B", 1, 1 << 16),
        Param("N", int, 64, "columns of B and C", 1, 1 << 16),
        Param("tm", int, 64, "tile rows of A/C", 4, 256, multiple_of=4),
        Param("tk", int, 64, "tile depth", 4, 256, multiple_of=4),
        Param("tn", int, 64, "tile columns of B/C", 4, 256, multiple_of=4),
        Param("columns", int, 1, "cores (one per column) sharing the rows of tiles", 1, 8),
        scale_param("a_scale", 4.0 / 127.0, "scale of A"),
        scale_param("b_scale", 0.1 / 127.0, "scale of B (per tensor)"),
        scale_param("c_scale", 2.0 / 127.0, "scale of C"),
        Param("b_scales", str, "", "per-column scales of B: a .npy file of N floats"),
        Param("bias", str, "", "int32 bias per column: a .npy file of N integers"),
        fifo_depth_param(),
        device_param(),
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
        return STACK

    def validate(self) -> None:
        for dim, tile in (("M", "tm"), ("K", "tk"), ("N", "tn")):
            if self.params[dim] % self.params[tile]:
                raise SpecError(f"{tile} {self.params[tile]} does not divide {dim} "
                                f"{self.params[dim]}; pad {dim} to a multiple of {tile}")
        if self.n_tiles > MAX_REPEAT:
            raise SpecError(f"N/tn = {self.n_tiles} column(s) of tiles, at most {MAX_REPEAT} (the "
                            f"shim DMA's repeat count); raise tn")
        if self.columns > self.columns_available:
            raise SpecError(f"columns {self.columns} is more than device {self.device} has "
                            f"({self.columns_available})")
        if self.m_tiles % self.columns:
            raise SpecError(f"{self.m_tiles} row(s) of tiles (M/tm) do not split evenly over "
                            f"{self.columns} columns")
        for m, shift in zip(*self.requant(), strict=True):
            if not 1 <= shift <= 62:
                raise SpecError(f"a_scale·b_scale/c_scale gives a shift of {shift} (multiplier "
                                f"{m}), outside 1..62: the scales are out of range")
        self.bias_values()  # read and checked now, not first at render time
        self.check_memory()

    @property
    def columns_available(self) -> int:
        return DEVICE_COLUMNS[self.device]

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
        pairs = [quantize_multiplier(self.a_scale * s / self.c_scale, MULT_BITS, "requant scale")
                 for s in self.scales()]
        return [m for m, _ in pairs], [s for _, s in pairs]

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
        items = [
            MemoryItem("A tile buffers", self.tm * self.tk, depth),
            MemoryItem("B tile buffers", self.tk * self.tn, depth),
            MemoryItem("C tile buffers", self.tm * self.tn, depth),
            MemoryItem("accumulator (int32)", 4 * self.tm * self.tn),
            *self.core_data(),
            MemoryItem("stack", self.stack_size, kind="stack"),
        ]
        return [TilePlan((c, 2), CORE_MEMORY, list(items)) for c in range(self.columns)]

    def render_context(self) -> dict[str, Any]:
        mults, shifts = self.requant()
        bias = self.bias_values()
        cols = []
        rounds = self.m_tiles // self.columns
        for c in range(self.columns):
            cols.append({"index": c, "rows": [r * self.columns + c for r in range(rounds)]})
        return {
            **self.params,
            "kernel": self.name,
            "object": self.object_name,
            "cols": cols,
            "rounds": rounds,
            "m_tiles": self.m_tiles,
            "n_tiles": self.n_tiles,
            "k_tiles": self.k_tiles,
            "a_tile": self.tm * self.tk,
            "b_tile": self.tk * self.tn,
            "c_tile": self.tm * self.tn,
            "stack_size": self.stack_size,
            "per_column": self.per_column,
            "mults": mults,
            "shifts": shifts,
            "has_bias": bias is not None,
            "bias_values": [] if bias is None else [int(b) for b in bias],
        }

    def workload(self) -> Workload:
        """Per invocation: each core's MACs and requantisation, each shim channel's bytes."""
        rounds = self.m_tiles // self.columns
        macs, scalar, shim = {}, {}, {}
        for c in range(self.columns):
            core = f"core({c}, 2)"
            macs[core] = rounds * self.tm * self.K * self.N
            scalar[core] = rounds * self.tm * self.N * REQUANT_OPS
            shim[f"shim({c}) MM2S @a{c}"] = rounds * self.n_tiles * self.tm * self.K
            shim[f"shim({c}) MM2S @b{c}"] = rounds * self.K * self.N
            shim[f"shim({c}) S2MM @c{c}"] = rounds * self.tm * self.N
        return Workload(self.name, self.device, "scalar", macs, shim, scalar_cycles=scalar,
                        bds=3 * rounds * self.columns)

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

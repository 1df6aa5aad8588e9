"""Stream kernels over several cores: an invocation's tiles spread over columns, then rows.

`cores` k > 1 (mlir/common/stream_wide.mlir.j2): as many columns as divide k (up to the
device's), then rows of cores in each column. Column c's shim moves part c of `columns` equal
contiguous parts of the input and the output; with more than one row of cores the column's mem
tile splits each element of `core_rows` consecutive tiles over its cores (an objectfifo.link
split: tile j of the column goes to core j mod rows) and joins their outputs back in order.
With runtime_params=1 each column's shim broadcasts the params element to its cores on its
second MM2S channel, one transfer per column. The tiles must split evenly over the cores.

`WideStream` is the mixin the stream specs (codegen/stream.py, codegen/kernels/mel.py) share:
the grid, the refusals, the runtime sequence, the memory plan per core and mem tile, and the
cost workload (per-core cycles, per-channel bytes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codegen.cost import Workload
from codegen.spec import (
    CORE_MEMORY,
    DEVICE_COLUMNS,
    MEM_TILE_MEMORY,
    MemoryItem,
    Param,
    SpecError,
    TilePlan,
)
from runtime.emulator.dma import check_dma

CORE_ROWS = 4  # compute tiles per column, rows 2..5 (npu1 and npu2 alike, NPU_FACTS 1)
TEMPLATE = "common/stream_wide.mlir.j2"
MLIR_TYPES = {"int8": "i8", "int16": "i16", "int32": "i32"}


def cores_param() -> Param:
    """The `cores` parameter of a stream kernel: 1 is the one-core design."""
    return Param("cores", int, 1, "cores sharing an invocation's tiles: columns first (each "
                 "column's shim feeds its cores), then rows of a column through its mem tile; "
                 "must divide the tile count", 1, 8 * CORE_ROWS)


def grid(cores: int, device: str) -> tuple[int, int] | None:
    """(columns, rows of cores per column) for `cores` on `device`: the most columns that
    divide `cores`, then rows; None when no grid of the device holds them."""
    for columns in range(min(cores, DEVICE_COLUMNS[device]), 0, -1):
        if cores % columns == 0 and cores // columns <= CORE_ROWS:
            return columns, cores // columns
    return None


def device_cores(device: str) -> list[int]:
    """Every `cores` value a grid of `device` holds."""
    return [k for k in range(1, DEVICE_COLUMNS[device] * CORE_ROWS + 1) if grid(k, device)]


def linear(arg: str, fifo: str, bd: int, start: int, n: int, total: int,
           dtype: str) -> dict[str, Any]:
    """One contiguous transfer of n elements from element `start` of a `total`-element buffer;
    it issues no token (only the waited output transfers complete one, codegen/checks.py)."""
    return {"arg": arg, "fifo": fifo, "id": bd, "token": False, "offsets": [0, 0, 0, start],
            "sizes": [1, 1, 1, n], "strides": [0, 0, 0, 1], "elems": total,
            "type": MLIR_TYPES[dtype], "dtype": dtype}


class WideStream:
    """The cores > 1 half of a stream spec. The spec gives: `params` (cores, device,
    fifo_depth), `n_tiles`, `wide_in_tile` / `wide_out_tile` (elements per tile),
    `in_dtype` / `out_dtype`, `in_name` / `out_name`, `in_len` / `out_len` (host elements),
    `runtime` with `params_name` / `params_len` / `params_dtype`, and `wide_cycles_per_tile`."""

    params: dict[str, Any]
    n_tiles: int
    wide_in_tile: int
    wide_out_tile: int
    in_len: int
    out_len: int
    runtime: bool
    params_len: int
    in_name: str = "x"
    out_name: str = "y"
    params_name: str = "p"
    in_dtype: str = "int8"
    out_dtype: str = "int8"
    params_dtype: str = "int8"
    PARAMS: Any
    #: the parameter that sets the tile size, named when the tiles do not split evenly
    tile_param: str

    def wide_cycles_per_tile(self) -> int:
        raise NotImplementedError

    def tile_units(self) -> tuple[str, int, int]:
        """(what, units, step): the invocation's indivisible units (rows, frames, words), how
        many, and the `tile_param` value of one unit; a tile is a whole number of units."""
        raise NotImplementedError

    def tile_hint(self) -> str:
        """The `tile_param` value nearest the current one that splits over the cores, or why
        none does."""
        what, units, step = self.tile_units()
        if units % self.cores:
            return (f"split the invocation otherwise (its {units:,} {what} are not a multiple of "
                    f"{self.cores}: no {self.tile_param} splits them)")
        limit = next(p.maximum for p in self.PARAMS if p.name == self.tile_param)
        current = self.params[self.tile_param] / step
        per_core = units // self.cores
        fits = [d for d in range(1, per_core + 1) if per_core % d == 0 and d * step <= limit]
        best = min(fits, key=lambda d: (abs(d - current), -d))
        return f"{self.tile_param} {best * step} ({units // best:,} tiles)"

    @property
    def cores(self) -> int:
        return int(self.params.get("cores", 1))

    @property
    def layout(self) -> tuple[int, int]:
        """(columns, rows of cores per column); a SpecError when the device cannot hold them."""
        device = self.params["device"]
        shape = grid(self.cores, device)
        if shape is None:
            raise SpecError(f"cores {self.cores} do not fit device {device} "
                            f"({DEVICE_COLUMNS[device]} column(s) of {CORE_ROWS} cores, columns "
                            f"first); use cores {', '.join(map(str, device_cores(device)))}")
        return shape

    @property
    def columns(self) -> int:
        return self.layout[0]

    @property
    def core_rows(self) -> int:
        return self.layout[1]

    @property
    def tiles_per_core(self) -> int:
        return self.n_tiles // self.cores

    @property
    def wide_params_bytes(self) -> int:
        return self.params_len * np.dtype(self.params_dtype).itemsize if self.runtime else 0

    def check_cores(self) -> None:
        """The grid fits the device, the tiles split evenly over the cores, each column's
        transfers keep the shim DMA limits."""
        if self.cores == 1:
            return
        _ = self.layout
        if self.n_tiles % self.cores:
            valid = [k for k in device_cores(self.params["device"]) if self.n_tiles % k == 0]
            raise SpecError(f"cores {self.cores}: the {self.n_tiles} tile(s) of an invocation do "
                            f"not split evenly over {self.cores} cores; use cores "
                            f"{', '.join(map(str, valid))}, or {self.tile_hint()}")
        for t in self.wide_transfers():
            if "wait" in t:
                continue
            problems = check_dma(t["offsets"], t["sizes"], t["strides"],
                                 np.dtype(t["dtype"]).itemsize, t["elems"])
            if problems:
                raise SpecError(f"cores {self.cores}: the transfer on @{t['fifo']} breaks a shim "
                                f"DMA limit: {'; '.join(problems)}")

    def column_input(self, column: int) -> dict[str, Any]:
        """Column `column`'s input transfer: its contiguous part of the tiles."""
        n = self.n_tiles // self.columns * self.wide_in_tile
        return linear(self.in_name, f"inq{column}", 1, column * n, n, self.in_len,
                      self.in_dtype)

    def wide_transfers(self) -> list[dict[str, Any]]:
        """The runtime sequence: per column its params (runtime_params=1), input part and
        output part, then a wait on every column's output."""
        steps: list[dict[str, Any]] = []
        out = self.n_tiles // self.columns * self.wide_out_tile
        for c in range(self.columns):
            if self.runtime:
                steps.append(linear(self.params_name, f"paramq{c}", 2, 0, self.params_len,
                                    self.params_len, self.params_dtype))
            steps.append(self.column_input(c))
            steps.append(linear(self.out_name, f"outq{c}", 0, c * out, out, self.out_len,
                                self.out_dtype))
        return steps + [{"wait": f"outq{c}"} for c in range(self.columns)]

    def wide_memory_plan(self, core_items: list[MemoryItem]) -> list[TilePlan]:
        """Each core's `core_items`; with rows of cores each column's mem tile holds the whole
        split and join FIFOs' buffers (a link keeps one set)."""
        depth = self.params["fifo_depth"]
        rows = self.core_rows
        in_bytes = self.wide_in_tile * np.dtype(self.in_dtype).itemsize
        out_bytes = self.wide_out_tile * np.dtype(self.out_dtype).itemsize
        plans = []
        for c in range(self.columns):
            if rows > 1:
                plans.append(TilePlan((c, 1), MEM_TILE_MEMORY, [
                    MemoryItem("inq buffers (split)", rows * in_bytes, depth),
                    MemoryItem("outq buffers (join)", rows * out_bytes, depth),
                ]))
            plans += [TilePlan((c, 2 + r), CORE_MEMORY, list(core_items)) for r in range(rows)]
        return plans

    def wide_context(self) -> dict[str, Any]:
        """What stream_wide.mlir.j2 needs beyond the one-core context."""
        return {"stream_base": TEMPLATE, "columns": self.columns, "core_rows": self.core_rows,
                "tiles_per_core": self.tiles_per_core,
                "column_cores": [[f"core{c}_{r}" for r in range(self.core_rows)]
                                 for c in range(self.columns)],
                "transfers": self.wide_transfers()}

    def wide_workload(self, kernel: str, device: str, notes: tuple[str, ...] = ()) -> Workload:
        """Per invocation: each column's part on its shim's channels (the params buffer once
        per column), through its mem tile with rows of cores, and each core's tiles."""
        rows, per_core = self.core_rows, self.tiles_per_core
        in_tile = self.wide_in_tile * np.dtype(self.in_dtype).itemsize
        out_tile = self.wide_out_tile * np.dtype(self.out_dtype).itemsize
        params = self.wide_params_bytes
        shim: dict[str, int] = {}
        mem: dict[str, int] = {}
        core: dict[str, int] = {}
        cycles: dict[str, int] = {}
        for c in range(self.columns):
            shim[f"shim({c}) MM2S @inq{c}"] = rows * per_core * in_tile
            shim[f"shim({c}) S2MM @outq{c}"] = rows * per_core * out_tile
            if params:
                shim[f"shim({c}) MM2S @paramq{c}"] = params
            if rows > 1:
                mem[f"mem({c}) S2MM @inq{c}"] = rows * per_core * in_tile
                mem[f"mem({c}) MM2S @outq{c}"] = rows * per_core * out_tile
            for r in range(rows):
                name = f"core({c}, {2 + r})"
                inq, outq = (f"inq{c}_{r}", f"outq{c}_{r}") if rows > 1 else (f"inq{c}",
                                                                              f"outq{c}")
                if rows > 1:
                    mem[f"mem({c}) MM2S @{inq}"] = per_core * in_tile
                    mem[f"mem({c}) S2MM @{outq}"] = per_core * out_tile
                core[f"{name} S2MM @{inq}"] = per_core * in_tile
                core[f"{name} MM2S @{outq}"] = per_core * out_tile
                if params:
                    core[f"{name} S2MM @paramq{c}"] = params
                cycles[name] = per_core * self.wide_cycles_per_tile()
        return Workload(kernel, device, "scalar", dict.fromkeys(cycles, 0), shim, mem, core,
                        cycles, bds=self.columns * (2 + bool(params)), notes=(
                            f"{self.cores} cores ({self.columns} column(s) x {rows}), scalar "
                            "code only: the vector projection is the scalar one", *notes))

"""Elementwise GELU, int8 -> int8, through a 256-entry table made at render time.

table[q + 128] = sat(round_half_away(gelu(q · in_scale) / out_scale)) with the exact erf GELU,
gelu(x) = x/2 · (1 + erf(x/√2)); the core looks each byte up. The float reference computes the
same function by another path, x · Φ(x) with Φ(x) = erfc(-x/√2)/2 (libm's erfc, not its erf),
so "golden = reference" is a check, not a tautology; the tests also hold the table against
PyTorch's erf GELU.

runtime_params=1: the table is the second input t (int8[256], `pack_params(in_scale=,
out_scale=)`), delivered once per invocation; in_scale and out_scale are then per-call values.
A table does not determine its scales (saturation and rounding make many pairs give one table),
so the float reference takes them: `reference(inputs, in_scale=, out_scale=)`, or, without
them, the scales of one of the last PACKED_KEPT tables this spec instance packed.

A length is refused when its largest tile that divides it is below MIN_TILE bytes (or
max_tile when that is smaller), e.g. 4·4099, a prime times 4: 4-byte tiles, 4,099 FIFO
handshakes a call. The host buffer is the user's, so npukit does not pad it silently; the
message names the nearest lengths that tile.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from codegen.spec import (
    Accuracy,
    MemoryItem,
    Param,
    SpecError,
    check_value_names,
    device_param,
    fifo_depth_param,
    round_half_away,
    runtime_params_param,
    saturate_i8,
    scale_param,
)
from codegen.stream import StreamSpec
from codegen.wide import cores_param

WORD = 4  # the shim DMA moves 32-bit words: int8 lengths are multiples of 4 (NPU_FACTS 2)
MIN_TILE = 256  # bytes: below this, per-tile FIFO and DMA handshakes dominate the call
# Scalar-unit operations per element of gelu_i8 (mlir/gelu/gelu.cc), npukit's own count of its
# core code for the cost model (an estimate, not a measurement): load x, form the index x + 128,
# load the table entry, store y. Loop control is not counted (nor is it in matmul's counts). The
# same with runtime_params=1: the table is then read through the params pointer.
OPS_PER_ELEMENT = 4
PACKED_KEPT = 64  # tables whose scales a spec instance remembers for reference(), newest kept


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact erf GELU in float64."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_by_erfc(x: np.ndarray) -> np.ndarray:
    """The same GELU through the normal CDF from erfc: x · erfc(-x/√2) / 2."""
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return 0.5 * x * erfc(-x / math.sqrt(2.0))


def _table(in_scale: float, out_scale: float) -> np.ndarray:
    """table[q + 128] = sat(round_half_away(gelu(q · in_scale) / out_scale))."""
    q = np.arange(-128, 128, dtype=np.float64)
    return saturate_i8(round_half_away(gelu(q * in_scale) / out_scale))


class GeluSpec(StreamSpec):
    """GELU over `length` int8 values per invocation, in tiles of at most `max_tile`."""

    name = "gelu"
    summary = "int8 GELU (exact erf) through a render-time table, any length"
    CORE_SOURCES = ("gelu.cc",)
    CORE_SYMBOLS = ("gelu_i8",)
    ACCURACY = Accuracy(min_pearson=0.99999, min_within_1=1.0, max_diff=0)
    PARAMS = (
        Param("length", int, 65536, "int8 values per invocation", 4, 1 << 26,
              multiple_of=WORD),
        Param("max_tile", int, 4096, "largest FIFO element (bytes); the tile divides length",
              4, 16384, multiple_of=WORD),
        scale_param("in_scale", 8.0 / 127.0, "scale of the input"),
        scale_param("out_scale", 8.0 / 127.0, "scale of the output"),
        fifo_depth_param(),
        device_param(),
        runtime_params_param(),
        cores_param(),
    )
    tile_param = "max_tile"
    VALUE_PARAMS = ("in_scale", "out_scale")
    params_name = "t"

    def __init__(self, params: Any = None) -> None:
        #: (in_scale, out_scale) of the last PACKED_KEPT tables pack_params made, by their
        #: bytes (None: two pairs made that table); only a convenience for reference()
        self._packed: OrderedDict[bytes, tuple[float, float] | None] = OrderedDict()
        super().__init__(params)

    @property
    def tile(self) -> int:
        """The largest multiple of 4 that divides `length` and is at most `max_tile`."""
        for t in range(self.max_tile - self.max_tile % WORD, 0, -WORD):
            if self.length % t == 0:
                return t
        raise AssertionError("4 divides length")  # length is a multiple of 4

    @property
    def in_tile_bytes(self) -> int:
        return self.tile

    @property
    def out_tile_bytes(self) -> int:
        return self.tile

    @property
    def n_tiles(self) -> int:
        return self.length // self.tile

    @property
    def scratch_bytes(self) -> int:
        return 64

    def tables(self) -> list[MemoryItem]:
        if self.runtime:
            return []  # the table arrives as the params input's FIFO element
        return [MemoryItem("gelu table", 256, kind="static")]

    @property
    def params_len(self) -> int:
        return 256

    def core_cycles_per_tile(self) -> int:
        return self.tile * OPS_PER_ELEMENT

    def tile_units(self) -> tuple[str, int, int]:
        return "32-bit words", self.length // WORD, WORD

    def validate(self) -> None:
        self.refuse_values()
        step = min(MIN_TILE, self.max_tile - self.max_tile % WORD)
        if self.n_tiles > 1 and self.tile < step:
            below, above = self.length // step * step, -(-self.length // step) * step
            raise SpecError(
                f"length {self.length}: its largest tile that divides it and is at most "
                f"max_tile {self.max_tile} is {self.tile} bytes, {self.n_tiles:,} tiles a call "
                f"(below {step} bytes each the handshakes dominate); pad the data to a "
                f"length that tiles, e.g. {below:,} or {above:,} (multiples of {step})")
        self.check_cores()
        self.check_memory()

    def table(self) -> np.ndarray:
        return _table(self.in_scale, self.out_scale)

    def pack_params(self, **values: Any) -> np.ndarray:
        """The table input t from in_scale and out_scale (positive, finite)."""
        names = ("in_scale", "out_scale")
        check_value_names("gelu", values, names)
        pair = (_scale(values["in_scale"], "in_scale"), _scale(values["out_scale"], "out_scale"))
        t = _table(*pair)
        key = t.tobytes()
        if key in self._packed and self._packed[key] != pair:
            pair_or_none: tuple[float, float] | None = None  # ambiguous from now on
        else:
            pair_or_none = pair
        self._packed[key] = pair_or_none
        self._packed.move_to_end(key)
        while len(self._packed) > PACKED_KEPT:
            self._packed.popitem(last=False)
        return t

    def extra_context(self) -> dict[str, Any]:
        if self.runtime:
            return {"tile": self.tile}
        return {"tile": self.tile, "table": [int(v) for v in self.table()]}

    def random_scales(self, seed: int) -> tuple[float, float]:
        """(in_scale, out_scale) a runtime_params=1 build may see, drawn from `seed`."""
        rng = np.random.default_rng(10_000 + seed)
        return rng.uniform(3.0, 12.0) / 127.0, rng.uniform(3.0, 12.0) / 127.0

    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Pre-activations of an MLP: N(0, 1.5²), quantised with in_scale; with
        runtime_params=1 the scales are drawn from the seed and the table follows."""
        x = np.random.default_rng(seed).normal(0.0, 1.5, self.length)
        if not self.runtime:
            return [saturate_i8(round_half_away(x / self.in_scale))]
        in_scale, out_scale = self.random_scales(seed)
        return [saturate_i8(round_half_away(x / in_scale)),
                self.pack_params(in_scale=in_scale, out_scale=out_scale)]

    def _input_table(self, inputs: list[np.ndarray]) -> np.ndarray:
        if not self.runtime:
            return self.table()
        t = np.asarray(inputs[1])
        if t.dtype != np.int8 or t.shape != (256,):
            raise SpecError(f"gelu table input: {t.dtype} x {t.shape} but the build takes "
                            "int8 x (256,); make it with spec.pack_params")
        return t

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(inputs[0], dtype=np.int8)
        return [self._input_table(inputs)[x.astype(np.int16) + 128]]

    def reference(self, inputs: list[np.ndarray], *, in_scale: float | None = None,
                  out_scale: float | None = None) -> list[np.ndarray]:
        """x·Φ(x) on x = q·in_scale, over out_scale. With runtime_params=1 the scales are the
        ones passed (they must make the table input), else those this spec packed it with."""
        if not self.runtime:
            if in_scale is not None or out_scale is not None:
                raise SpecError("gelu reference: in_scale/out_scale are compiled into this "
                                "variant; pass them only with runtime_params=1")
            in_scale, out_scale = self.in_scale, self.out_scale
        else:
            in_scale, out_scale = self._table_scales(self._input_table(inputs), in_scale,
                                                     out_scale)
        x = np.asarray(inputs[0], dtype=np.float64) * in_scale
        return [saturate_i8(round_half_away(gelu_by_erfc(x) / out_scale))]

    def _table_scales(self, table: np.ndarray, in_scale: float | None,
                      out_scale: float | None) -> tuple[float, float]:
        """The (in_scale, out_scale) the reference of this table input uses."""
        if (in_scale is None) != (out_scale is None):
            raise SpecError("gelu reference: pass both in_scale and out_scale, or neither")
        if in_scale is not None and out_scale is not None:
            pair = (_scale(in_scale, "in_scale"), _scale(out_scale, "out_scale"))
            if not np.array_equal(_table(*pair), table):
                raise SpecError(f"gelu reference: in_scale {pair[0]} and out_scale {pair[1]} do "
                                "not make this table input; pass the scales it was packed with")
            return pair
        key = table.tobytes()
        if key not in self._packed:
            raise SpecError("gelu reference: a table alone does not determine its scales and "
                            "this spec did not pack it lately; pass in_scale= and out_scale=")
        known = self._packed[key]
        if known is None:
            raise SpecError("gelu reference: two scale pairs packed here make this table; pass "
                            "in_scale= and out_scale=")
        return known


def _scale(value: Any, name: str) -> float:
    """A positive finite scale, or a one-line SpecError."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{name} {value!r} is not a number") from None
    if not (scale > 0 and math.isfinite(scale)):
        raise SpecError(f"{name} {scale} must be a positive finite number")
    return scale

"""Layer normalisation over rows of d int8 values, int8 out, learned gamma and beta.

Fixed-point scheme (the core code and `golden` do exactly this), per row x of length d:
1. sum = Σx, sumsq = Σx² (int32); D = d·sumsq - sum² (int64) = d²·var in input units.
2. D' = D·2^22 + E with E = max(1, round(eps / in_scale² · d² · 2^22)): D' = d²·(var + eps)
   in Q22, so epsilon keeps 22 fraction bits (a whole-number E was off by up to 0.5 of D, which
   on short near-constant rows, where D is a few units, moved outputs by several LSB); E >= 1
   keeps s > 0 on constant rows at eps 0.
3. s = isqrt(D') (so s = √(D'/2^22) · 2^11), k = floor(log2 s), R = floor(2^(30+k) / s).
4. x̂ = (d·x - sum) · R / 2^(k+3), rounded half away from zero: x̂ = (x - mean)/√(var+eps)
   in Q16.
5. y = (x̂ · G_j + B_j) / 2^28 rounded half away from zero, saturated to int8, with
   G_j = round(gamma_j / out_scale · 2^12), B_j = round(beta_j / out_scale · 2^28).

runtime_params=1: E, G and B are the params input p, int32 words (`pack_params`): p[0], p[1]
E (low, high word), p[2 : 2+d] G, then B as d (low, high) pairs; 2 + 3d words. The shifts do
not depend on the scales, so they stay compiled in.
"""

from __future__ import annotations

import math
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
    is_data_file,
    load_vector,
    round_half_away,
    runtime_params_param,
    saturate_i8,
    scale_param,
)
from codegen.stream import StreamSpec
from codegen.wide import cores_param

SQRT_SHIFT = 11
GAMMA_BITS = 12
OUT_SHIFT = 28
P_EPS, P_GAMMA = 0, 2  # word offsets in the params input; B follows G (P_GAMMA + d)
# Scalar-unit operations of layernorm_i8 (mlir/layernorm/layernorm.cc), npukit's own count of
# its core code for the cost model (estimates, not measurements; a 64-bit add, subtract or
# compare is 2 operations on the 32-bit scalar unit, a 32x32 -> 64 multiply 1, a 64x64 one 3
# multiplies and 2 adds; loop control is not counted, as in matmul's counts):
# - statistics, per element: load, add to sum, multiply, add to sum of squares: 4;
# - normalisation, per element: load (1), d·x (1), minus sum (2), times R (5), rounding shift
#   (sign test, add half, 64-bit variable shift, negate: 9), times G (3), plus B with its two
#   word loads (4), load G (1), rounding shift (9), saturate (2), store (1): 38;
# - per row: d·Σx² - (Σx)² (4), the eps term (4), isqrt (32 steps of about 12: 384), log2 (2),
#   2^(30+k) / s as a shift-and-subtract loop of 64 steps of about 8 (512; a 64-bit integer
#   division is not one scalar instruction): about 920.
# runtime_params=1 reads G, B and E from the params buffer instead of tables: the same count.
STATS_OPS = 4
NORM_OPS = 38
ROW_OPS = 920


def _vector(spec: str, d: int, what: str) -> np.ndarray:
    """A finite float, broadcast to d, or the path of a .npy file with d finite floats."""
    try:
        value = float(spec)
    except ValueError:
        if not is_data_file(spec, what):
            raise SpecError(f"{what} {spec!r} is neither a number nor a .npy file") from None
        return load_vector(spec, d, what)
    if not math.isfinite(value):
        raise SpecError(f"{what}={spec} is not a finite number")
    return np.full(d, value)


class LayerNormSpec(StreamSpec):
    """Row-wise layernorm of `rows` rows of `d` int8 values, `tile_rows` rows per core call."""

    name = "layernorm"
    summary = "int8 layernorm per row with learned gamma/beta, fixed-point mean/var/rsqrt"
    CORE_SOURCES = ("layernorm.cc",)
    CORE_SYMBOLS = ("layernorm_i8",)
    ACCURACY = Accuracy(min_pearson=0.995, min_within_1=0.99, max_diff=2, max_bias=0.05)
    PARAMS = (
        Param("rows", int, 64, "rows per invocation", 1, 1 << 16),
        Param("d", int, 512, "row length (Whisper-base width 512)", 8, 4096, multiple_of=4),
        Param("tile_rows", int, 4, "rows per FIFO element (must divide rows)", 1, 64),
        scale_param("in_scale", 4.0 / 127.0, "scale of the input"),
        scale_param("out_scale", 4.0 / 127.0, "scale of the output"),
        Param("gamma", str, "1.0", "gamma: a number, or a .npy file of d floats"),
        Param("beta", str, "0.0", "beta: a number, or a .npy file of d floats"),
        Param("eps", float, 1e-5, "epsilon added to the variance", 0.0, 1.0),
        fifo_depth_param(),
        device_param(),
        runtime_params_param(),
        cores_param(),
    )
    tile_param = "tile_rows"
    VALUE_PARAMS = ("in_scale", "out_scale", "gamma", "beta", "eps")

    @property
    def in_tile_bytes(self) -> int:
        return self.tile_rows * self.d

    @property
    def out_tile_bytes(self) -> int:
        return self.tile_rows * self.d

    @property
    def n_tiles(self) -> int:
        return self.rows // self.tile_rows

    @property
    def scratch_bytes(self) -> int:
        return 128

    def tables(self) -> list[MemoryItem]:
        if self.runtime:
            return []  # G, B and E arrive in the params input's FIFO element
        return [MemoryItem("gamma (int32)", 4 * self.d, kind="static"),
                MemoryItem("beta (int64)", 8 * self.d, kind="static")]

    @property
    def params_dtype(self) -> str:
        return "int32"

    @property
    def params_len(self) -> int:
        return P_GAMMA + 3 * self.d

    def core_cycles_per_tile(self) -> int:
        return self.tile_rows * (self.d * (STATS_OPS + NORM_OPS) + ROW_OPS)

    def tile_units(self) -> tuple[str, int, int]:
        return "rows", self.rows, 1

    def validate(self) -> None:
        if self.rows % self.tile_rows:
            raise SpecError(f"tile_rows {self.tile_rows} does not divide rows {self.rows}")
        self.refuse_values()
        if not self.runtime:
            gamma, beta = self.affine()
            _check_values(self.d, self.in_scale, self.out_scale, gamma, beta, self.eps)
        self.check_cores()
        self.check_memory()

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        return _vector(self.gamma, self.d, "gamma"), _vector(self.beta, self.d, "beta")

    def fixed_affine(self) -> tuple[np.ndarray, np.ndarray]:
        gamma, beta = self.affine()
        return _fixed_affine(gamma, beta, self.out_scale)

    def eps_term(self) -> int:
        """E of step 2: eps in Q22 units of D (d² times the variance in input units)."""
        return _eps_term(self.d, self.in_scale, self.eps)

    def pack_params(self, **values: Any) -> np.ndarray:
        """The params input p from in_scale, out_scale, gamma (d floats), beta (d floats) and
        eps, refused by the rules a compiled variant applies at build time."""
        names = ("in_scale", "out_scale", "gamma", "beta", "eps")
        check_value_names("layernorm", values, names)
        in_scale, out_scale, eps = (_real(values[n], n) for n in ("in_scale", "out_scale", "eps"))
        for name, scale in (("in_scale", in_scale), ("out_scale", out_scale)):
            if not scale > 0:
                raise SpecError(f"{name} {scale} must be positive")
        if not 0.0 <= eps <= 1.0:
            raise SpecError(f"eps {eps} is outside 0..1")
        gamma, beta = (_row(values[n], self.d, n) for n in ("gamma", "beta"))
        _check_values(self.d, in_scale, out_scale, gamma, beta, eps)
        g, b = _fixed_affine(gamma, beta, out_scale)
        words = np.empty(self.params_len, dtype=np.int64)
        words[P_EPS:P_EPS + 2] = _split(np.array([_eps_term(self.d, in_scale, eps)]))
        words[P_GAMMA:P_GAMMA + self.d] = g
        words[P_GAMMA + self.d:] = _split(b)
        return words.astype(np.int32)

    def unpack_params(self, p: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """(E, G, B) from the params input, refused when no pack_params could have made it."""
        p = np.asarray(p)
        if p.dtype != np.int32 or p.shape != (self.params_len,):
            raise SpecError(f"layernorm params input: {p.dtype} x {p.shape} but the build takes "
                            f"int32 x ({self.params_len},); make it with spec.pack_params")
        words = p.astype(np.int64)
        e = int(_join(words[P_EPS:P_EPS + 2])[0])
        g = words[P_GAMMA:P_GAMMA + self.d]
        b = _join(words[P_GAMMA + self.d:])
        if e < 1 or _variance_bound(self.d) + e >= 1 << 62:
            raise SpecError(f"layernorm params input: eps term {e} is outside 1..2^62 - "
                            f"d^2*128^2*2^22; make it with spec.pack_params")
        if np.abs(b).max() >= 1 << (OUT_SHIFT + 20):
            raise SpecError(f"layernorm params input: a beta term reaches 2^{OUT_SHIFT + 20} "
                            "(|beta|/out_scale 2^20); make it with spec.pack_params")
        return e, g, b

    def extra_context(self) -> dict[str, Any]:
        context: dict[str, Any] = {"tile_rows": self.tile_rows, "sqrt_shift": SQRT_SHIFT,
                                   "out_shift": OUT_SHIFT}
        if self.runtime:
            return {**context, "p_eps": P_EPS, "p_gamma": P_GAMMA, "p_beta": P_GAMMA + self.d}
        g, b = self.fixed_affine()
        return {**context, "eps_term": self.eps_term(), "gamma_q": [int(v) for v in g],
                "beta_q": [int(v) for v in b]}

    def random_values(self, seed: int) -> dict[str, Any]:
        """Per-layer values a runtime_params=1 build may see, drawn from `seed`."""
        rng = np.random.default_rng(10_000 + seed)
        return {"in_scale": rng.uniform(2.0, 8.0) / 127.0,
                "out_scale": rng.uniform(2.0, 8.0) / 127.0,
                "gamma": rng.normal(1.0, 0.3, self.d), "beta": rng.normal(0.0, 0.3, self.d),
                "eps": float(rng.choice([1e-5, 1e-6, 1e-3]))}

    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Residual-stream-like rows: each with its own mean and spread, quantised; with
        runtime_params=1 also the params input of values drawn from the seed."""
        rng = np.random.default_rng(seed)
        mean = rng.normal(0.0, 0.5, (self.rows, 1))
        spread = rng.uniform(0.3, 1.2, (self.rows, 1))
        x = mean + spread * rng.standard_normal((self.rows, self.d))
        if not self.runtime:
            return [saturate_i8(round_half_away(x / self.in_scale)).reshape(-1)]
        values = self.random_values(seed)
        return [saturate_i8(round_half_away(x / values["in_scale"])).reshape(-1),
                self.pack_params(**values)]

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self.runtime:
            e, g, b = self.unpack_params(inputs[1])
        else:
            e = self.eps_term()
            g, b = self.fixed_affine()
        x = np.asarray(inputs[0], dtype=np.int64).reshape(self.rows, self.d)
        d = self.d
        total = x.sum(axis=1)
        big_d = ((d * (x * x).sum(axis=1) - total * total) << (2 * SQRT_SHIFT)) + e
        s = np.array([math.isqrt(int(v)) for v in big_d], dtype=np.int64)
        k = np.array([int(v).bit_length() - 1 for v in s], dtype=np.int64)
        r = np.array([(1 << (30 + int(kk))) // int(ss) for kk, ss in zip(k, s, strict=True)],
                     dtype=np.int64)
        c = d * x - total[:, None]
        xhat = _round_shift(c * r[:, None], (k + 3)[:, None])
        y = _round_shift(xhat * g[None, :] + b[None, :], np.int64(OUT_SHIFT))
        return [saturate_i8(y).reshape(-1)]

    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """(x - mean)/√(var + eps)·gamma + beta in float64, the row statistics taken exactly
        (d·x - Σx and d·Σx² - (Σx)² are integers of the quantised row): the same value as the
        textbook formula, but defined at eps 0, where a constant row is 0/0 (taken as 0, so
        y = beta) instead of a rounding residue divided by another.

        With runtime_params=1 the values are those the params input holds: eps/in_scale² =
        E/(d²·2^22), gamma/out_scale = G/2^12, beta/out_scale = B/2^28 (the scales themselves
        are not in it; only these ratios enter y/out_scale)."""
        x = np.asarray(inputs[0], dtype=np.int64).reshape(self.rows, self.d)
        d = self.d
        if self.runtime:
            e, g, b = self.unpack_params(inputs[1])
            eps_units = e / float(d * d << (2 * SQRT_SHIFT))
            gamma, beta, out_scale = g / float(1 << GAMMA_BITS), b / float(1 << OUT_SHIFT), 1.0
        else:
            eps_units = self.eps / self.in_scale**2
            (gamma, beta), out_scale = self.affine(), self.out_scale
        total = x.sum(axis=1, keepdims=True)
        centred = (d * x - total).astype(np.float64)  # d·(x - mean), exact
        spread = (d * (x * x).sum(axis=1, keepdims=True) - total * total).astype(np.float64)
        denominator = np.sqrt(spread + eps_units * d * d)  # d·√(var + eps)
        with np.errstate(invalid="ignore", divide="ignore"):
            xhat = np.where(centred == 0, 0.0, centred / denominator)
        y = xhat * gamma + beta
        return [saturate_i8(round_half_away(y / out_scale)).reshape(-1)]


def _real(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(out):
        raise SpecError(f"{what}={value} is not a finite number")
    return out


def _row(value: Any, d: int, what: str) -> np.ndarray:
    """d finite floats (a number is broadcast)."""
    row = np.asarray(value, dtype=np.float64)
    if row.ndim == 0:
        row = np.full(d, float(row))
    if row.shape != (d,):
        raise SpecError(f"{what} has shape {row.shape}, the build takes ({d},) (d {d})")
    if not np.isfinite(row).all():
        raise SpecError(f"{what} has a value that is not finite at index "
                        f"{int(np.flatnonzero(~np.isfinite(row))[0])}")
    return row


def _variance_bound(d: int) -> int:
    """The largest (d·Σx² - (Σx)²)·2^(2·SQRT_SHIFT) of an int8 row, bounded above."""
    return d * d * (128 * 128) << (2 * SQRT_SHIFT)


def _eps_term(d: int, in_scale: float, eps: float) -> int:
    return max(1, round(eps / in_scale**2 * d**2 * (1 << 2 * SQRT_SHIFT)))


def _fixed_affine(gamma: np.ndarray, beta: np.ndarray,
                  out_scale: float) -> tuple[np.ndarray, np.ndarray]:
    g = round_half_away(gamma / out_scale * (1 << GAMMA_BITS)).astype(np.int64)
    b = round_half_away(beta / out_scale * (1 << OUT_SHIFT)).astype(np.int64)
    return g, b


def _check_values(d: int, in_scale: float, out_scale: float, gamma: np.ndarray,
                  beta: np.ndarray, eps: float) -> None:
    """The ranges the core's integers hold (a compiled build and pack_params alike)."""
    # on the rounded G: a ratio just under 2^19 can round to 2^31, which int32 wraps
    g = round_half_away(gamma / out_scale * (1 << GAMMA_BITS))  # float: no cast to wrap
    if np.abs(g).max() >= 1 << 31:
        raise SpecError(f"|gamma|/out_scale reaches {np.abs(gamma / out_scale).max():.12g}"
                        f", G = round(it·2^{GAMMA_BITS}) must stay below 2^31: the int32 gamma "
                        "multiplier overflows; lower gamma or raise out_scale")
    if np.abs(beta / out_scale).max() >= 1 << 20:
        raise SpecError(f"|beta|/out_scale reaches {np.abs(beta / out_scale).max():.4g}, "
                        "at most 2^20: the int64 beta term overflows")
    # (d·Σx² - (Σx)²)·2^(2·SQRT_SHIFT) + E must stay below 2^63 in the core.
    if _variance_bound(d) + _eps_term(d, in_scale, eps) >= 1 << 62:
        raise SpecError(f"eps/in_scale^2 = {eps / in_scale**2:.4g} is too large for "
                        f"d {d}: the variance term overflows 64 bits; raise in_scale")


def _split(v: np.ndarray) -> np.ndarray:
    """int64 values as (low, high) int32 word pairs, interleaved (the values as int64)."""
    v = np.asarray(v, dtype=np.int64)
    low = v & 0xFFFFFFFF
    low = np.where(low >= 1 << 31, low - (1 << 32), low)
    return np.stack([low, v >> 32], axis=1).reshape(-1)


def _join(words: np.ndarray) -> np.ndarray:
    """The int64 values of interleaved (low, high) int32 word pairs."""
    pairs = np.asarray(words, dtype=np.int64).reshape(-1, 2)
    return (pairs[:, 1] << 32) | (pairs[:, 0] & 0xFFFFFFFF)


def _round_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x / 2^shift rounded half away from zero, in int64."""
    half = np.left_shift(np.int64(1), shift - 1)
    return np.where(x >= 0, (x + half) >> shift, -((-x + half) >> shift))

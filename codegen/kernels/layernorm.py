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
    device_param,
    fifo_depth_param,
    is_data_file,
    load_vector,
    round_half_away,
    saturate_i8,
    scale_param,
)
from codegen.stream import StreamSpec

SQRT_SHIFT = 11
GAMMA_BITS = 12
OUT_SHIFT = 28


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
    )

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
        return [MemoryItem("gamma (int32)", 4 * self.d, kind="static"),
                MemoryItem("beta (int64)", 8 * self.d, kind="static")]

    def validate(self) -> None:
        if self.rows % self.tile_rows:
            raise SpecError(f"tile_rows {self.tile_rows} does not divide rows {self.rows}")
        gamma, beta = self.affine()
        if np.abs(gamma / self.out_scale).max() >= 1 << (31 - GAMMA_BITS):
            raise SpecError(f"|gamma|/out_scale reaches {np.abs(gamma / self.out_scale).max():.4g}"
                            f", at most 2^{31 - GAMMA_BITS}: the int32 gamma multiplier overflows")
        if np.abs(beta / self.out_scale).max() >= 1 << 20:
            raise SpecError(f"|beta|/out_scale reaches {np.abs(beta / self.out_scale).max():.4g}, "
                            "at most 2^20: the int64 beta term overflows")
        # (d·Σx² - (Σx)²)·2^(2·SQRT_SHIFT) + E must stay below 2^63 in the core.
        if (self.d * self.d * (128 * 128) << (2 * SQRT_SHIFT)) + self.eps_term() >= 1 << 62:
            raise SpecError(f"eps/in_scale^2 = {self.eps / self.in_scale**2:.4g} is too large for "
                            f"d {self.d}: the variance term overflows 64 bits; raise in_scale")
        self.check_memory()

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        return _vector(self.gamma, self.d, "gamma"), _vector(self.beta, self.d, "beta")

    def fixed_affine(self) -> tuple[np.ndarray, np.ndarray]:
        gamma, beta = self.affine()
        g = round_half_away(gamma / self.out_scale * (1 << GAMMA_BITS)).astype(np.int64)
        b = round_half_away(beta / self.out_scale * (1 << OUT_SHIFT)).astype(np.int64)
        return g, b

    def eps_term(self) -> int:
        """E of step 2: eps in Q22 units of D (d² times the variance in input units)."""
        return max(1, round(self.eps / self.in_scale**2 * self.d**2 * (1 << 2 * SQRT_SHIFT)))

    def extra_context(self) -> dict[str, Any]:
        g, b = self.fixed_affine()
        return {
            "tile_rows": self.tile_rows,
            "eps_term": self.eps_term(),
            "sqrt_shift": SQRT_SHIFT,
            "out_shift": OUT_SHIFT,
            "gamma_q": [int(v) for v in g],
            "beta_q": [int(v) for v in b],
        }

    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Residual-stream-like rows: each with its own mean and spread, quantised."""
        rng = np.random.default_rng(seed)
        mean = rng.normal(0.0, 0.5, (self.rows, 1))
        spread = rng.uniform(0.3, 1.2, (self.rows, 1))
        x = mean + spread * rng.standard_normal((self.rows, self.d))
        return [saturate_i8(round_half_away(x / self.in_scale)).reshape(-1)]

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(inputs[0], dtype=np.int64).reshape(self.rows, self.d)
        d = self.d
        total = x.sum(axis=1)
        big_d = ((d * (x * x).sum(axis=1) - total * total) << (2 * SQRT_SHIFT)) + self.eps_term()
        s = np.array([math.isqrt(int(v)) for v in big_d], dtype=np.int64)
        k = np.array([int(v).bit_length() - 1 for v in s], dtype=np.int64)
        r = np.array([(1 << (30 + int(kk))) // int(ss) for kk, ss in zip(k, s, strict=True)],
                     dtype=np.int64)
        c = d * x - total[:, None]
        xhat = _round_shift(c * r[:, None], (k + 3)[:, None])
        g, b = self.fixed_affine()
        y = _round_shift(xhat * g[None, :] + b[None, :], np.int64(OUT_SHIFT))
        return [saturate_i8(y).reshape(-1)]

    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """(x - mean)/√(var + eps)·gamma + beta in float64, the row statistics taken exactly
        (d·x - Σx and d·Σx² - (Σx)² are integers of the quantised row): the same value as the
        textbook formula, but defined at eps 0, where a constant row is 0/0 (taken as 0, so
        y = beta) instead of a rounding residue divided by another."""
        x = np.asarray(inputs[0], dtype=np.int64).reshape(self.rows, self.d)
        d = self.d
        total = x.sum(axis=1, keepdims=True)
        centred = (d * x - total).astype(np.float64)  # d·(x - mean), exact
        spread = (d * (x * x).sum(axis=1, keepdims=True) - total * total).astype(np.float64)
        denominator = np.sqrt(spread + self.eps / self.in_scale**2 * d * d)  # d·√(var + eps)
        with np.errstate(invalid="ignore", divide="ignore"):
            xhat = np.where(centred == 0, 0.0, centred / denominator)
        gamma, beta = self.affine()
        y = xhat * gamma + beta
        return [saturate_i8(round_half_away(y / self.out_scale)).reshape(-1)]


def _round_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x / 2^shift rounded half away from zero, in int64."""
    half = np.left_shift(np.int64(1), shift - 1)
    return np.where(x >= 0, (x + half) >> shift, -((-x + half) >> shift))

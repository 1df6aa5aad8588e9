"""Whisper's log-mel front end: 16 kHz int16 PCM in, log10-mel frames out (n_fft 400, hop 160).

Where each step runs, and why:
- host: validate the clip, reflect-pad it by 200 samples each side (the pad mirrors the clip's
  ends, which only the whole clip has), cut it into invocations of `frames` frames;
- DMA: framing. Frame f is pcm[160 f, 160 f + 400); the runtime sequence reads those
  overlapping rows with strides [.., 160, 1] on the i16 buffer, so the host never copies them;
- core: window, 201-bin DFT, power, Slaney mel filters, log10 with the 1e-10 floor;
- host: the clamp to (max - 8) and (x + 4) / 4, since the max is over the whole window, which
  no invocation sees.

Fixed-point scheme of the core (the core code and `golden` do exactly this), per frame x of
400 int16 samples. Rounding is half away from zero throughout; nothing saturates except where
said, and the render-time checks below prove the rest cannot overflow.
1. p = max|x|; p = 0 gives FLOOR in every bin. Block exponent e = max(0, 15 - bitlen(p)).
2. xw_n = round(x_n · W_n · 2^e / 2^22) (int32, |xw| <= 2^23: 8 bits below the sample's LSB, so
   windowing adds no noise that matters), W_n = round(hann_n · 2^30) (periodic Hann, int32:
   one multiply per sample, so the window costs nothing to keep exact).
3. re_k = Σ xw_n · C[kn mod 400], im_k = Σ xw_n · C[(kn - 100) mod 400] in int64, k = 0..200,
   C[m] = round(cos(2πm/400) · 2^30) for m = 0..100 (int32), extended by symmetry so
   C[400 - m] = C[m] and C[200 - m] = -C[m] exactly (the core folds sample pairs n, 400 - n
   on that, an exact integer identity; |pair · C| <= 2^54, 201 of them stay below 2^62).
   R = round(re / 2^38), I likewise (|R| ≈ |X_k| · 2^e in sample units); P_k = R² + I² < 2^46.
4. acc_m = Σ_k F_mk · P_k (int64), F_mk = round(slaney_mk · 2^21), the Slaney filters
   generated here; every row keeps 2^46 · Σ_k F_mk < 2^63.
5. L = log2(acc) in Q24: integer part from the leading one, fraction from T[i] =
   round(log2(1 + i/256) · 2^24) at the next 8 bits, interpolated on the 16 after them
   (round(ΔT · r / 2^16)). acc = mel · 2^(2e + 51) in whisper's units (samples / 2^15).
6. code = round((L - (2e + 51) · 2^24) · round(log10(2) · 2^28) / 2^41), at least FLOOR =
   -10 · 2^11: log10(max(mel, 1e-10)) in Q11, as int16.
The cosine table is Q30: a Q15 table's rounding errors form a fixed pattern that leaks a
tone's power into other bins at about 1e-9 to 1e-10 of its peak; a narrowband high-frequency
tone over a small noise floor, whose bins sit just there (above whisper's clamp at max - 8),
then came out up to 0.085 off whisper in normalised units. Q30 pushes that leak ~90 dB lower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from codegen.cost import Workload
from codegen.spec import (
    CORE_MEMORY,
    Accuracy,
    KernelSpec,
    MemoryItem,
    Param,
    SpecError,
    TilePlan,
    device_param,
    fifo_depth_param,
    round_half_away,
)
from codegen.stream import stream_workload
from codegen.wide import WideStream, cores_param
from runtime.errors import NpukitError
from runtime.manifest import BufferSpec

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_BINS = N_FFT // 2 + 1
PAD = N_FFT // 2
Q15 = 1 << 15
COS_BITS = 30
WINDOW_BITS = 30
XW_FRAC = 8  # fraction bits of the windowed samples (step 2)
WEIGHT_BITS = 21
POWER_BITS = 46  # P_k < 2^46 (step 3)
UNIT_SHIFT = WEIGHT_BITS + 30  # 2^30: power of int16 samples in whisper's [-1, 1) units
LOG2_BITS = 24
LOG2_INDEX_BITS = 8
LOG10_BITS = 28
CODE_FRAC_BITS = 11
CODE_SHIFT = LOG2_BITS + LOG10_BITS - CODE_FRAC_BITS
FLOOR_CODE = -10 << CODE_FRAC_BITS
LOG_CLAMP = 8.0
MAX_DMA_WRAP = 1023  # frames per DMA block (the d1 wrap of an ND transfer)
STACK_MARGIN = 1024
# Scalar-unit operations of mel_one_frame (mlir/mel/mel.cc), npukit's own count of its core
# code for the cost model (estimates, not measurements; a 64-bit add or compare is 2 operations
# on the 32-bit scalar unit, a 32x32 -> 64 multiply 1; loop control is not counted, as in
# matmul's counts):
PEAK_OPS = 5  # per sample: load, absolute value (negate, select), maximum (compare, select)
WINDOW_OPS = 16  # per sample: 2 loads, x·W (1), ·2^e (3), rounding shift (9), store
FOLD_OPS = 6  # per sample pair n, N - n: 2 loads, add, subtract, 2 stores
DFT_OPS = 16  # per (bin, pair): 4 loads, 2 multiplies, 2 64-bit adds (4), 2 index steps (6)
BIN_OPS = 32  # per bin: the DC/Nyquist terms (8), 2 rounding shifts (18), R² + I² (4), store
WEIGHT_OPS = 8  # per nonzero filter weight: 3 loads, w·P as 2 multiplies and an add, 64-bit add
MEL_OPS = 50  # per mel bin: the Q24 log2 (about 27), to log10 codes (about 20), floor, store


class AudioError(NpukitError, ValueError):
    """PCM that the Whisper front end cannot take: wrong dtype, channels, rate or length."""


# -- tables, generated at render time ---------------------------------------------------
def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """The Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    above = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / log_step
    return np.where(hz >= 1000.0, above, hz * 3.0 / 200.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * 200.0 / 3.0)


def slaney_filters(n_mels: int) -> np.ndarray:
    """[n_mels, 201] triangles on the Slaney mel scale over 0..8 kHz, each of area-norm 2/width."""
    bins_hz = np.arange(N_BINS) * SAMPLE_RATE / N_FFT
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(SAMPLE_RATE / 2)), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins_hz[None, :] - low) / (centre - low)
    falling = (high - bins_hz[None, :]) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (high - low))


def hann() -> np.ndarray:
    """The periodic Hann window of length 400 (torch.hann_window's default)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)




def window_table() -> np.ndarray:
    """W_n = round(hann_n · 2^30), int32."""
    return round_half_away(hann() * (1 << WINDOW_BITS)).astype(np.int64)


def cos_table() -> np.ndarray:
    """C[m] = round(cos(2πm/400) · 2^30) (int32), built from a quarter wave so its symmetries
    are exact."""
    m = np.arange(N_FFT // 4 + 1)
    quarter = round_half_away(np.cos(2 * np.pi * m / N_FFT) * (1 << COS_BITS)).astype(np.int64)
    half = np.concatenate([quarter, -quarter[-2::-1]])  # m = 0..200
    return np.concatenate([half, half[-2:0:-1]])


def log2_table() -> np.ndarray:
    """T[i] = round(log2(1 + i/256) · 2^24) for i = 0..256."""
    i = np.arange((1 << LOG2_INDEX_BITS) + 1, dtype=np.float64)
    return round_half_away(np.log2(1.0 + i / (1 << LOG2_INDEX_BITS)) * (1 << LOG2_BITS)).astype(
        np.int64)


def log10_2() -> int:
    return int(round_half_away(np.array(np.log10(2.0) * (1 << LOG10_BITS))))


# -- the spec -----------------------------------------------------------------------------
class MelSpec(WideStream, KernelSpec):
    """`frames` Whisper log-mel frames per invocation, `tile_frames` per core call; with
    `cores` > 1 column c's framing DMA reads its own frames' overlapping rows (codegen/wide.py)."""

    name = "mel"
    summary = "Whisper log-mel front end: int16 PCM -> Q11 log10-mel codes, DFT in fixed point"
    CORE_SOURCES = ("mel.cc",)
    CORE_SYMBOLS = ("mel_frames_i16",)
    # In Q11 codes against the float64 reference after whisper's clamp (`accuracy_problems`);
    # 16 codes are 0.002 in normalised units; against whisper's own the target is 0.02.
    ACCURACY = Accuracy(min_pearson=0.99999, min_within_1=0.98, max_diff=16)
    PARAMS = (
        Param("frames", int, 1000, "frames per invocation (a 30 s window is 3,000)", 1, 3000),
        Param("tile_frames", int, 8, "frames per core call (must divide frames)", 1, 32),
        Param("n_mels", int, 80, "mel bins (80; 128 for large-v3)", choices=(80, 128)),
        fifo_depth_param(),
        device_param(),
        cores_param(),
    )
    in_name, out_name, in_dtype, out_dtype = "pcm", "mel", "int16", "int16"
    tile_param = "tile_frames"
    runtime = False

    # -- derived sizes -----------------------------------------------------------------
    @property
    def pcm_len(self) -> int:
        """Samples of padded PCM one invocation reads: its frames overlap by 240."""
        return (self.frames - 1) * HOP + N_FFT

    @property
    def n_tiles(self) -> int:
        return self.frames // self.tile_frames

    @property
    def in_tile(self) -> int:
        return self.tile_frames * N_FFT

    @property
    def out_tile(self) -> int:
        return self.tile_frames * self.n_mels

    @property
    def dma_rows(self) -> int:
        """Frames per DMA block: the largest divisor of `frames` within the d1 wrap."""
        return _dma_rows(self.frames)

    @property
    def wide_in_tile(self) -> int:
        return self.in_tile

    @property
    def wide_out_tile(self) -> int:
        return self.out_tile

    @property
    def in_len(self) -> int:
        return self.pcm_len

    @property
    def out_len(self) -> int:
        return self.frames * self.n_mels

    def wide_cycles_per_tile(self) -> int:
        return self.tile_frames * self.core_cycles_per_frame()

    def column_input(self, column: int) -> dict[str, Any]:
        """Column `column`'s frames, its part of them, as overlapping rows of the PCM."""
        frames = self.frames // self.columns
        rows = _dma_rows(frames)
        return {"arg": "pcm", "fifo": f"inq{column}", "id": 1, "token": False,
                "offsets": [0, 0, 0, column * frames * HOP],
                "sizes": [1, frames // rows, rows, N_FFT], "strides": [0, rows * HOP, HOP, 1],
                "elems": self.pcm_len, "type": "i16", "dtype": "int16"}

    @property
    def stack_size(self) -> int:
        """The frame's windowed samples (int32) and powers (int64) plus a margin, whole KiB."""
        frame = 4 * N_FFT + 8 * N_BINS + STACK_MARGIN
        return (frame + 1023) // 1024 * 1024

    def filters_q(self) -> np.ndarray:
        """F_mk = round(slaney_mk · 2^21), int64 [n_mels, 201]."""
        return round_half_away(slaney_filters(self.n_mels) * (1 << WEIGHT_BITS)).astype(np.int64)

    def sparse_filters(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """(first bin, bin count, offset into weights, weights) of each filter's nonzero run."""
        first: list[int] = []
        count: list[int] = []
        offset: list[int] = []
        weights: list[int] = []
        for row in self.filters_q():
            nz = np.flatnonzero(row)
            lo, hi = int(nz[0]), int(nz[-1]) + 1
            first.append(lo)
            count.append(hi - lo)
            offset.append(len(weights))
            weights.extend(int(w) for w in row[lo:hi])
        return first, count, offset, weights

    def core_cycles_per_frame(self) -> int:
        """Scalar-unit cycles of one frame (the counts above; a silent frame costs less)."""
        pairs = N_FFT // 2 - 1
        weights = sum(self.sparse_filters()[1])
        return (N_FFT * (PEAK_OPS + WINDOW_OPS) + pairs * FOLD_OPS
                + N_BINS * (pairs * DFT_OPS + BIN_OPS) + weights * WEIGHT_OPS
                + self.n_mels * MEL_OPS)

    def workload(self) -> Workload:
        """Per invocation: each frame's 400 samples read by the framing DMA (overlapping rows:
        2.5x the PCM), the codes written back, the core's cycles."""
        if self.cores > 1:
            return self.wide_workload(self.name, self.device, notes=(
                "the DFT is direct (201 bins x 199 sample pairs a frame) on each core",))
        return stream_workload(
            self, self.frames * N_FFT * 2, self.frames * self.n_mels * 2, 0,
            self.frames * self.core_cycles_per_frame(),
            notes=("the DFT is direct (201 bins x 199 sample pairs a frame) on one core",))

    def tile_units(self) -> tuple[str, int, int]:
        return "frames", self.frames, 1

    def validate(self) -> None:
        if self.frames % self.tile_frames:
            raise SpecError(f"tile_frames {self.tile_frames} does not divide frames {self.frames}")
        worst = int(self.filters_q().sum(axis=1).max())
        if worst.bit_length() + POWER_BITS > 63:
            raise SpecError(f"mel weights sum to {worst} in Q{WEIGHT_BITS}: the int64 mel "
                            f"accumulator overflows for powers up to 2^{POWER_BITS}")
        self.check_cores()
        self.check_memory()

    def buffers(self) -> list[BufferSpec]:
        return [
            BufferSpec("pcm", "int16", (self.pcm_len,), "in", 0),
            BufferSpec("mel", "int16", (self.frames, self.n_mels), "out", 1),
        ]

    def core_data(self) -> list[MemoryItem]:
        _, _, _, weights = self.sparse_filters()
        return [
            MemoryItem("window (int32)", 4 * N_FFT, kind="static"),
            MemoryItem("cosine (int32)", 4 * N_FFT, kind="static"),
            MemoryItem("filter first/count/offset (int16)", 3 * 2 * self.n_mels, kind="static"),
            MemoryItem("filter weights (int32)", 4 * len(weights), kind="static"),
            MemoryItem("log2 table (int32)", 4 * ((1 << LOG2_INDEX_BITS) + 1), kind="static"),
        ]

    def memory_plan(self) -> list[TilePlan]:
        depth = self.fifo_depth
        items = [
            MemoryItem("frames buffers", 2 * self.in_tile, depth),
            MemoryItem("mels buffers", 2 * self.out_tile, depth),
            *self.core_data(),
            MemoryItem("stack", self.stack_size, kind="stack"),
        ]
        if self.cores > 1:
            return self.wide_memory_plan(items)
        return [TilePlan((0, 2), CORE_MEMORY, items)]

    def render_context(self) -> dict[str, Any]:
        first, count, offset, weights = self.sparse_filters()
        return {
            **self.params,
            "kernel": self.name,
            "symbol": self.CORE_SYMBOLS[0],
            "object": self.object_name,
            "n_fft": N_FFT,
            "hop": HOP,
            "n_bins": N_BINS,
            "pcm_len": self.pcm_len,
            "in_name": "pcm",
            "out_name": "mel",
            "in_type": "i16",
            "out_type": "i16",
            "in_len": self.pcm_len,
            "out_len": self.frames * self.n_mels,
            "n_tiles": self.n_tiles,
            "in_tile": self.in_tile,
            "out_tile": self.out_tile,
            "dma_rows": self.dma_rows,
            "dma_blocks": self.frames // self.dma_rows,
            "stack_size": self.stack_size,
            "code_frac_bits": CODE_FRAC_BITS,
            "floor_code": FLOOR_CODE,
            "unit_shift": UNIT_SHIFT,
            "weight_bits": WEIGHT_BITS,
            "xw_frac": XW_FRAC,
            "window_bits": WINDOW_BITS,
            "log10_bits": LOG10_BITS,
            "log10_2": log10_2(),
            "code_shift": CODE_SHIFT,
            "window": [int(v) for v in window_table()],
            "cos_bits": COS_BITS,
            "cosine": [int(v) for v in cos_table()],
            "mel_first": first,
            "mel_count": count,
            "mel_offset": offset,
            "mel_weights": weights,
            "log2_table": [int(v) for v in log2_table()],
            **(self.wide_context() if self.cores > 1 else {"stream_base": "common/stream.mlir.j2"}),
        }

    # -- data ------------------------------------------------------------------------------
    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Speech-like padded PCM: voiced harmonics with a gliding pitch, noise bursts, pauses."""
        return [synthetic_speech(self.pcm_len, seed)]

    def edge_inputs(self) -> list[tuple[str, list[np.ndarray]]]:
        n = self.pcm_len
        rng = np.random.default_rng(0xE0)
        tone = np.sin(2 * np.pi * 1000.0 * np.arange(n) / SAMPLE_RATE) * 32767
        return [
            ("zeros", [np.zeros(n, dtype=np.int16)]),
            ("max", [np.full(n, 32767, dtype=np.int16)]),
            ("min", [np.full(n, -32768, dtype=np.int16)]),
            ("extremes", [rng.choice(np.array([-32768, 32767], dtype=np.int16), size=n)]),
            ("tone", [round_half_away(tone).astype(np.int16)]),
            ("lsb", [rng.integers(-1, 2, size=n).astype(np.int16)]),
        ]

    def accuracy_figures(self, inputs: list[np.ndarray]) -> tuple[float, float, int]:
        """(Pearson, share within 1 code, max code difference) of golden vs float reference,
        after whisper's clamp to (max - 8): bins below it are discarded by whisper, and there
        the fixed-point DFT's relative error (not its absolute one) grows without mattering."""
        golden, ref = (normalise(f(inputs)[0]).astype(np.float64) * 4 * (1 << CODE_FRAC_BITS)
                       for f in (self.golden, self.reference))
        diff = np.abs(golden - ref)
        pearson = float(np.corrcoef(golden.ravel(), ref.ravel())[0, 1])
        return pearson, float(np.mean(diff <= 1)), int(np.ceil(diff.max()))

    def accuracy_problems(self, inputs: list[np.ndarray]) -> list[str]:
        """How the golden model misses ACCURACY on `inputs` (empty when it meets it)."""
        pearson, within1, worst = self.accuracy_figures(inputs)
        target = self.ACCURACY
        if (pearson >= target.min_pearson and within1 >= target.min_within_1
                and worst <= target.max_diff):
            return []
        return [f"mel codes after the clamp: golden vs float reference pearson {pearson:.8f} "
                f"(target {target.min_pearson}), within 1 code {within1:.2%} (target "
                f"{target.min_within_1:.0%}), max diff {worst} (target {target.max_diff})"]

    def _frames(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.asarray(pcm).reshape(-1)
        if pcm.shape != (self.pcm_len,):
            raise ValueError(f"pcm: expected {self.pcm_len} samples, got {pcm.shape}")
        view = np.lib.stride_tricks.sliding_window_view(pcm, N_FFT)[::HOP]
        return view.astype(np.int64)

    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = self._frames(inputs[0])
        peak = np.abs(x).max(axis=1)
        e = np.maximum(0, 15 - _bit_length(peak))
        xw = _round_shift(x * window_table()[None, :] * (np.int64(1) << e)[:, None],
                          WINDOW_BITS - XW_FRAC)
        m = np.arange(N_FFT)
        phase = np.outer(m, np.arange(N_BINS)) % N_FFT
        re, im = (_exact_dot(xw, cos_table()[p])
                  for p in (phase, (phase - N_FFT // 4) % N_FFT))
        r, i = _round_shift(re, COS_BITS + XW_FRAC), _round_shift(im, COS_BITS + XW_FRAC)
        acc = (r * r + i * i) @ self.filters_q().T
        codes = _log10_codes(acc, e[:, None])
        codes[peak == 0] = FLOOR_CODE
        return [codes.astype(np.int16)]

    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = self._frames(inputs[0]).astype(np.float64) / Q15
        power = np.abs(np.fft.rfft(x * hann()[None, :], axis=1)) ** 2
        mel = power @ slaney_filters(self.n_mels).T
        logs = np.log10(np.maximum(mel, 1e-10))
        return [round_half_away(logs * (1 << CODE_FRAC_BITS)).astype(np.int16)]


def _dma_rows(frames: int) -> int:
    """Frames per DMA block: the largest divisor of `frames` within the d1 wrap."""
    return max(r for r in range(1, min(frames, MAX_DMA_WRAP) + 1) if frames % r == 0)


def _exact_dot(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """x @ c in int64 through float64 BLAS, exactly: c split into 15-bit halves keeps every
    partial sum an integer below 2^53 (|x| <= 2^23, 400 terms, |half| <= 2^15)."""
    hi, lo = c >> 15, c & 0x7FFF  # c = hi · 2^15 + lo
    xf = x.astype(np.float64)
    return ((xf @ hi.astype(np.float64)).astype(np.int64) << 15) + (
        xf @ lo.astype(np.float64)).astype(np.int64)


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Bits of each non-negative int64 (0 for 0), by integer halving, never through floats."""
    v = np.asarray(v, dtype=np.int64).copy()
    bits = np.zeros(v.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << step)
        bits += np.where(big, step, 0)
        v = np.where(big, v >> step, v)
    return bits + (v > 0)


def _round_shift(x: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """x / 2^shift rounded half away from zero, in int64."""
    half = np.left_shift(np.int64(1), np.asarray(shift, dtype=np.int64) - 1)
    return np.where(x >= 0, (x + half) >> shift, -((-x + half) >> shift))


def _log10_codes(acc: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Steps 5 and 6: Q11 log10 of acc · 2^-(2e + 51), FLOOR where acc is 0 or too small."""
    positive = acc > 0
    a = np.where(positive, acc, 1).astype(np.uint64)
    b = _bit_length(a.astype(np.int64)) - 1
    frac = (a << (63 - b).astype(np.uint64)) << np.uint64(1)
    index = (frac >> np.uint64(64 - LOG2_INDEX_BITS)).astype(np.int64)
    rest = ((frac >> np.uint64(64 - LOG2_INDEX_BITS - 16)) & np.uint64(0xFFFF)).astype(np.int64)
    table = log2_table()
    step = table[index + 1] - table[index]
    log2 = (b << LOG2_BITS) + table[index] + ((step * rest + (1 << 15)) >> 16)
    log2 -= (2 * e + UNIT_SHIFT) << LOG2_BITS
    codes = _round_shift(log2 * log10_2(), CODE_SHIFT)
    return np.where(positive, np.maximum(codes, FLOOR_CODE), FLOOR_CODE)


def synthetic_speech(n: int, seed: int) -> np.ndarray:
    """n int16 samples: a gliding-pitch harmonic voice, fricative noise, pauses, a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = rng.uniform([300, 900, 2200], [900, 2200, 3500])
    voiced = np.zeros(n)
    for h in range(1, 40):
        freq = h * f0
        gain = sum(1 / (1 + ((freq - f) / 120) ** 2) for f in formants) / h
        voiced += np.where(freq < SAMPLE_RATE / 2, gain, 0) * np.sin(h * phase)
    syllables = np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)) ** 2
    hiss = np.diff(rng.standard_normal(n + 1)) * (syllables < 0.2)
    pauses = (np.sin(2 * np.pi * rng.uniform(0.3, 1) * t) > -0.6).astype(np.float64)
    x = (voiced * syllables + 0.3 * hiss) * pauses
    x = x / max(np.abs(x).max(), 1e-9) * 10 ** (rng.uniform(-30, -1) / 20)
    x += rng.standard_normal(n) * 10 ** (rng.uniform(-90, -60) / 20)
    return np.clip(round_half_away(x * 32767), -32768, 32767).astype(np.int16)


# -- the host front end -------------------------------------------------------------------
Kernel = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


def check_pcm(pcm: Any, sample_rate: int, padding: int = 0) -> np.ndarray:
    """The clip as a contiguous mono int16 array, or an AudioError saying what to fix."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"sample_rate {sample_rate} Hz: the Whisper front end takes "
                         f"{SAMPLE_RATE} Hz; resample the clip first")
    if not isinstance(pcm, np.ndarray):
        raise AudioError(f"pcm must be a numpy int16 array, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise AudioError(f"pcm must be int16 samples, got {pcm.dtype}; for float audio in "
                         "[-1, 1) use np.clip(np.round(a * 32768), -32768, 32767).astype(np.int16)")
    if pcm.ndim != 1:
        raise AudioError(f"pcm must be mono, shape (n,); got shape {pcm.shape}: mix the "
                         "channels down to one first")
    if pcm.size + padding <= PAD:
        raise AudioError(f"pcm has {pcm.size} samples (+ {padding} padding); the reflect "
                         f"padding needs more than {PAD}")
    return np.ascontiguousarray(pcm)


def normalise(codes: np.ndarray) -> np.ndarray:
    """Whisper's last step over the whole window: clamp to (max - 8), then (x + 4) / 4.

    `codes` is [frames, n_mels] of Q11 log10; the result is float32 [n_mels, frames] as
    `whisper.log_mel_spectrogram` returns it.
    """
    logs = codes.astype(np.float64) / (1 << CODE_FRAC_BITS)
    logs = np.maximum(logs, logs.max() - LOG_CLAMP)
    return ((logs + 4.0) / 4.0).astype(np.float32).T


def log_mel_codes(pcm: np.ndarray, spec: MelSpec, kernel: Kernel) -> np.ndarray:
    """Reflect-pad the clip and run the kernel on it, `spec.frames` frames a call."""
    n_frames = pcm.size // HOP
    padded = np.pad(pcm, PAD, mode="reflect")
    want = (spec.frames, spec.n_mels)
    codes = np.empty((n_frames, spec.n_mels), dtype=np.int16)
    for start in range(0, n_frames, spec.frames):
        chunk = np.zeros(spec.pcm_len, dtype=np.int16)
        piece = padded[start * HOP : start * HOP + spec.pcm_len]
        chunk[: piece.size] = piece
        out = np.asarray(kernel([chunk])[0])
        if out.dtype != np.int16 or out.size != spec.frames * spec.n_mels:
            raise NpukitError(f"mel kernel returned {out.dtype} x {out.size}, expected int16 "
                              f"{want}: the kernel and the spec disagree")
        take = min(spec.frames, n_frames - start)
        codes[start : start + take] = out.reshape(want)[:take]
    return codes


def log_mel(pcm: np.ndarray, sample_rate: int, *, padding: int = 0,
            spec: MelSpec | None = None, kernel: Kernel | None = None) -> np.ndarray:
    """What `whisper.log_mel_spectrogram(pcm / 32768, padding=padding)` computes.

    Returns float32 [n_mels, (len + padding) // 160]; `padding` zero samples are appended
    first, as whisper does. `kernel` runs one invocation (inputs list -> outputs), e.g. an
    `NpuKernel` of a mel build with `spec` its parameters; the default is the golden model.
    """
    spec = spec or MelSpec()
    if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
        raise AudioError(f"padding must be a number of samples >= 0, got {padding!r}")
    clip = check_pcm(pcm, sample_rate, int(padding))
    if padding:
        clip = np.concatenate([clip, np.zeros(int(padding), dtype=np.int16)])
    return normalise(log_mel_codes(clip, spec, kernel or spec.golden))

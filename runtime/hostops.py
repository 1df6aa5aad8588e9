"""The host steps between kernels (the contract is codegen.models.graph.HOST_OPS), numpy only.

Written apart from the golden encoder's own versions, so a bit-exact run checks both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MEL_PAD = 200  # n_fft / 2 samples of reflect padding each side (whisper's STFT centring)
MEL_CODE_ONE = 2048  # the mel kernel's codes are Q11 log10
MEL_CLAMP = 8.0


def _round_shift(total: np.ndarray, shift: int) -> np.ndarray:
    """total / 2^shift, rounded half away from zero, in integers."""
    half = np.int64(1) << np.int64(shift - 1)
    mag = (np.abs(total) + half) >> np.int64(shift)
    return np.where(total < 0, -mag, mag)


def _to_i8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -128, 127).astype(np.int8)


def mel_pad(pcm: np.ndarray, out_len: int) -> np.ndarray:
    left = pcm[1:MEL_PAD + 1][::-1]
    right = pcm[-MEL_PAD - 1:-1][::-1]
    return np.concatenate([left, pcm, right])[:out_len]


def mel_normalise(codes: np.ndarray, scale: float) -> np.ndarray:
    logs = codes.astype(np.float64) / MEL_CODE_ONE
    floor = logs.max() - MEL_CLAMP
    mel = ((np.where(logs < floor, floor, logs) + 4.0) / 4.0).astype(np.float32)
    x = mel.astype(np.float64) / scale
    return _to_i8(np.copysign(np.floor(np.abs(x) + 0.5), x))


def windows(x: np.ndarray, stride: int) -> np.ndarray:
    frames, width = x.shape
    out = np.zeros((frames // stride, 3, width), dtype=x.dtype)
    for k, shift in enumerate((-1, 0, 1)):
        src = np.arange(frames // stride) * stride + shift
        ok = (src >= 0) & (src < frames)
        out[ok, k] = x[src[ok]]
    return out.reshape(frames // stride, 3 * width)


def add(x: np.ndarray, y: np.ndarray, mx: int, my: int, shift: int) -> np.ndarray:
    return _to_i8(_round_shift(x.astype(np.int64) * mx + y.astype(np.int64) * my, shift))


def run(fn: str, args: list[np.ndarray], attrs: dict[str, Any],
        out_shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """One host op by name, its outputs in order."""
    if fn == "mel_pad":
        return [mel_pad(args[0], out_shapes[0][0])]
    if fn == "mel_normalise":
        return [mel_normalise(args[0], attrs["scale"])]
    if fn == "windows":
        return [windows(args[0], attrs["stride"])]
    if fn == "add":
        return [add(args[0], args[1], attrs["mx"], attrs["my"], attrs["shift"])]
    if fn == "dequantise":
        return [(args[0].astype(np.float64) * attrs["scale"]).astype(np.float32)]
    raise ValueError(f"unknown host op {fn!r}")

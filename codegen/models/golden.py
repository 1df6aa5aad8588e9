"""The golden encoder: the graph run with each kernel's golden model and numpy host steps.

The emulated (or NPU) run of a model artifact must equal this bit for bit. The host steps here
are written independently of the runtime's (runtime/hostops.py): both follow the contract in
codegen.models.graph.HOST_OPS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from codegen.kernels.mel import CODE_FRAC_BITS, LOG_CLAMP, PAD
from codegen.models.graph import Graph, Op
from codegen.models.reference import conv_windows
from codegen.spec import round_half_away, saturate_i8


def _mel_pad(x: np.ndarray, *, out_len: int) -> np.ndarray:
    return np.pad(x, PAD, mode="reflect")[:out_len]


def _mel_normalise(codes: np.ndarray, *, scale: float) -> np.ndarray:
    logs = codes.astype(np.float64) / (1 << CODE_FRAC_BITS)
    logs = np.maximum(logs, logs.max() - LOG_CLAMP)
    mel = ((logs + 4.0) / 4.0).astype(np.float32)  # as log_mel returns it
    return saturate_i8(round_half_away(mel.astype(np.float64) / scale))


def _add(x: np.ndarray, y: np.ndarray, *, mx: int, my: int, shift: int) -> np.ndarray:
    total = x.astype(np.int64) * mx + y.astype(np.int64) * my
    return saturate_i8(round_half_away(total / float(1 << shift)))


def run_host(op: Op, args: list[np.ndarray], graph: Graph) -> list[np.ndarray]:
    """One host op of the graph, as the contract in HOST_OPS describes it."""
    out_shapes = [graph.tensors[o].shape for o in op.outputs]
    a = op.attrs
    if op.fn == "mel_pad":
        return [_mel_pad(args[0], out_len=out_shapes[0][0])]
    if op.fn == "mel_normalise":
        return [_mel_normalise(args[0], scale=a["scale"])]
    if op.fn == "windows":
        return [conv_windows(args[0], a["stride"])]
    if op.fn == "add":
        return [_add(args[0], args[1], mx=a["mx"], my=a["my"], shift=a["shift"])]
    if op.fn == "dequantise":
        return [(args[0].astype(np.float64) * a["scale"]).astype(np.float32)]
    raise ValueError(f"unknown host op {op.fn}")


def run_golden(graph: Graph, constants: dict[str, np.ndarray], pcm: np.ndarray,
               *, on_op: Callable[[Op, list[np.ndarray]], Any] | None = None
               ) -> dict[str, np.ndarray]:
    """Every tensor of the graph for one window of `pcm` (int16, the window's length)."""
    values: dict[str, np.ndarray] = {graph.input: pcm, **constants}
    for op in graph.ops:
        args = [values[i] for i in op.inputs]
        if op.kind == "kernel":
            spec = graph.spec(op)
            shaped = [x.reshape(b.shape) for x, b in zip(args, spec.inputs(), strict=True)]
            outs = spec.golden(shaped)
        else:
            outs = run_host(op, args, graph)
        for name, out in zip(op.outputs, outs, strict=True):
            t = graph.tensors[name]
            values[name] = np.asarray(out, dtype=t.dtype).reshape(t.shape)
        if on_op is not None:
            on_op(op, [values[o] for o in op.outputs])
    return values

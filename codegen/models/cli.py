"""`invoke encode`: build (or reuse) a checkpoint's encoder model artifact, run it on a clip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from codegen.models.artifact import build_encoder
from codegen.models.audio import VOICES, espeak_speech, read_wav
from codegen.models.checkpoint import Checkpoint, load_checkpoint
from codegen.models.graph import Tensor
from codegen.models.quantise import TensorScale, report_lines
from codegen.models.whisper import float_tensors, window
from runtime.encoder import NpuWhisperEncoder
from runtime.errors import NpukitError
from runtime.model import OpReport

BACKENDS = ("auto", "xrt", "emu")


def calibration_clips(paths: Sequence[str], n_samples: int) -> list[np.ndarray]:
    """The user's WAV clips, or espeak-ng speech in several voices when none are given."""
    if paths:
        return [read_wav(p) for p in paths]
    return [espeak_speech(n_samples, voice, seed) for seed, voice in enumerate(VOICES)]


def encode(audio: str, checkpoint: str, *, backend: str = "auto", out: str = "",
           report: bool = False, calibrate: Sequence[str] = (), percentile: float = 100.0,
           build_root: Path = Path("build"), console: Console) -> np.ndarray:
    """Encode one window of `audio` with the checkpoint's encoder; print what was asked."""
    if backend not in BACKENDS:
        raise NpukitError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    pcm = read_wav(audio)
    if out and not Path(out).resolve().parent.is_dir():  # before any build or run
        raise NpukitError(f"--out {out}: its directory does not exist; create it first")
    ckpt = load_checkpoint(checkpoint)
    if backend == "xrt":  # before calibrating: the NPU build needs the toolchain
        from codegen.toolchain import discover
        from runtime.errors import ToolchainError

        tc = discover()
        if tc.missing_for_hw:
            raise ToolchainError(tc.hw_missing_line())
        if not tc.mlir_aie_include:  # the encoder's matmuls run the vector path
            from codegen.pipeline import aie_api_missing_line

            raise ToolchainError(aie_api_missing_line("matmul and mha"))
    clips = calibration_clips(calibrate, ckpt.dims.n_samples)
    model = build_encoder(checkpoint, build_root, clips=clips, percentile=percentile,
                          target={"emu": "emu", "xrt": "hw"}.get(backend, "auto"),
                          progress=lambda line: console.print(line, highlight=False))
    if report:
        for line in report_lines(model.scales):
            console.print(line, highlight=False)
    with NpuWhisperEncoder.load(model.directory, backend=backend) as encoder, \
            Progress(console=console, transient=True) as bar:
        task = bar.add_task("encoding", total=len(encoder.runner.ops))
        values = encoder.run(pcm, progress=lambda n, total, name: bar.update(
            task, completed=n, description=f"{name:<16}"))
        ops = encoder.report
        contexts = encoder.runner.contexts
        runs_on = encoder.runner.backend_name
    features = values["features"]
    seconds = sum(r.seconds for r in ops)
    console.print(f"encoded {Path(audio).name}: features {features.shape} float32 on {runs_on} "
                  f"in {seconds:.2f} s, {len(contexts.opened)} hardware context(s), "
                  f"{contexts.buffers_allocated} buffers allocated once", highlight=False)
    if out:
        np.save(out, features)
        console.print(f"wrote {out}", highlight=False)
    if report:
        _op_table(ops, console)
        _accuracy_table(ckpt, window(pcm, ckpt.dims), values, model.graph.tensors,
                        model.scales, console)
    return features


def _op_table(ops: Sequence[OpReport], console: Console) -> None:
    table = Table(title="per op", title_justify="left")
    for col in ("op", "kernel / host step", "ms", "saturated int8"):
        table.add_column(col)
    for r in ops:
        table.add_row(r.name, f"{r.fn} ({r.kind})", f"{r.seconds * 1e3:.2f}",
                      f"{r.saturated:.3%}")
    console.print(table)


def _accuracy_table(ckpt: Checkpoint, pcm: np.ndarray, values: dict[str, np.ndarray],
                    tensors: dict[str, Tensor], scales: dict[str, TensorScale],
                    console: Console) -> None:
    """Cosine per frame and relative error of each int8 tensor against the float encoder;
    q, k and v are the fused projection's column thirds, each at its own calibrated scale."""
    ref = float_tensors(ckpt, pcm)
    table = Table(title="int8 vs the float encoder (same weights), per tensor",
                  title_justify="left")
    for col in ("tensor", "mean cos", "worst frame", "rel err"):
        table.add_column(col)
    for name in ref:
        block, _, part = name.rpartition(".")
        if name not in values and part in ("q", "k", "v") and f"{block}.qkv" in values:
            qkv = values[f"{block}.qkv"]
            third = qkv.shape[1] // 3
            column = "qkv".index(part) * third
            ours = qkv[:, column:column + third].astype(np.float64) * scales[name].scale
        elif name not in values or tensors[name].scale is None:
            continue
        else:
            ours = values[name].astype(np.float64) * tensors[name].scale
        theirs = ref[name]
        cos = (ours * theirs).sum(-1) / np.maximum(
            np.linalg.norm(ours, axis=-1) * np.linalg.norm(theirs, axis=-1), 1e-30)
        rel = np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)
        table.add_row(name, f"{cos.mean():.5f}", f"{cos.min():.5f}", f"{rel:.4f}")
    console.print(table)


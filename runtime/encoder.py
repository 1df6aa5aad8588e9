"""`NpuWhisperEncoder.load(model_dir)(pcm) -> features`: a Whisper encoder model artifact run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import NpukitError, RunError
from runtime.model import ModelRunner, OpReport, Progress

log = logging.getLogger("npukit.runtime")
SATURATION_WARNING = 0.01


class AudioInputError(NpukitError, ValueError):
    """PCM of the wrong rate, dtype or shape."""


class NpuWhisperEncoder:
    """A Whisper audio encoder on the NPU or the emulator: 16 kHz int16 PCM in, features out."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        m = runner.manifest
        self.dims = dict(m["dims"])
        self.sample_rate = int(m["sample_rate"])
        self.n_samples = int(self.runner.tensors[m["input"]]["shape"][0])

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "auto") -> NpuWhisperEncoder:
        return cls(ModelRunner(model_dir, backend=backend))

    def __call__(self, pcm: Any, sample_rate: int = 16_000,
                 progress: Progress | None = None) -> np.ndarray:
        """float32 [n_audio_ctx, n_audio_state] for one window: the clip padded or trimmed."""
        return self.run(pcm, sample_rate, progress)[self.runner.manifest["output"]]

    def run(self, pcm: Any, sample_rate: int = 16_000,
            progress: Progress | None = None) -> dict[str, np.ndarray]:
        """Every tensor of the run (int8 codes; see `scale`), the features under 'features'."""
        window = self.window(pcm, sample_rate)
        values = self.runner.run(window, progress)
        worst = max(self.report, key=lambda r: r.saturated)
        if worst.saturated > SATURATION_WARNING:
            log.warning("op %s saturated %.1f%% of its int8 outputs on this audio: the "
                        "calibration does not cover it; recalibrate on similar clips",
                        worst.name, 100 * worst.saturated)
        return values

    def window(self, pcm: Any, sample_rate: int) -> np.ndarray:
        if isinstance(sample_rate, bool) or sample_rate != self.sample_rate:
            raise AudioInputError(f"sample rate {sample_rate!r} Hz: the encoder takes "
                                  f"{self.sample_rate} Hz; resample the clip first")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            what = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
            raise AudioInputError(f"pcm must be a numpy int16 array, got {what}")
        if pcm.ndim != 1:
            raise AudioInputError(f"pcm must be mono, shape (n,); got {pcm.shape}")
        if pcm.size == 0:
            raise AudioInputError("pcm is empty")
        out = np.zeros(self.n_samples, dtype=np.int16)
        out[: min(pcm.size, self.n_samples)] = pcm[: self.n_samples]
        return out

    def scale(self, tensor: str) -> float:
        s = self.runner.tensors[tensor]["scale"]
        if s is None:
            raise RunError(f"tensor {tensor} has no quantisation scale")
        return float(s)

    @property
    def report(self) -> list[OpReport]:
        return self.runner.last_report

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> NpuWhisperEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

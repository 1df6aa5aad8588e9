"""Shared helpers of the encoder tests: checkpoints, clips, whisper's float encoder, figures."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from codegen.models.audio import espeak_available, espeak_speech
from codegen.models.checkpoint import EncoderDims

CALIBRATION_VOICES = ("en-us", "de")
TEST_VOICES = ("en-gb-scotland", "en+f3")


def noise(dims: EncoderDims, seed: int, level: float = 3000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.standard_normal(dims.n_samples) * level), -32768, 32767
                   ).astype(np.int16)


def speech(dims: EncoderDims, voice: str, seed: int) -> np.ndarray:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no speech to test")
    return espeak_speech(dims.n_samples, voice, seed)


def calibration_clips(dims: EncoderDims) -> list[np.ndarray]:
    return [speech(dims, v, 0) for v in CALIBRATION_VOICES] + [noise(dims, 1)]


def test_clips(dims: EncoderDims) -> dict[str, np.ndarray]:
    clips = {f"speech {v}": speech(dims, v, 1) for v in TEST_VOICES}
    return clips | {"white noise": noise(dims, 2), "quiet noise": noise(dims, 3, 300.0)}


def whisper_encoder(whisper: ModuleType, ckpt: Path, pcm: np.ndarray, frames: int
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """openai-whisper's float AudioEncoder on `pcm`: the output and every block's output."""
    import torch

    model = whisper.load_model(str(ckpt), device="cpu")
    mel = whisper.log_mel_spectrogram(torch.from_numpy(pcm.astype(np.float32) / 32768.0),
                                      n_mels=model.dims.n_mels)[:, :frames]
    blocks: list[np.ndarray] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: blocks.append(out[0].double().numpy()))
             for b in model.encoder.blocks]
    with torch.no_grad():
        out = model.encoder(mel[None])[0].double().numpy()
    for h in hooks:
        h.remove()
    return out, blocks


def frame_cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1),
                                        1e-30)


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def fake_npu_toolchain(mp: pytest.MonkeyPatch, root: Path) -> None:
    """The fake aiecc and Peano (conftest.use_fake_toolchain), and a stand-in of mlir-aie's
    aie_api headers (the vector matmuls' and mha's Peano builds ask for them), so a model
    builds for the NPU here."""
    from tests.conftest import use_fake_toolchain

    mlir_aie = root / "mlir_aie"
    (mlir_aie / "include" / "aie_api").mkdir(parents=True, exist_ok=True)
    (mlir_aie / "include" / "aie_api" / "aie.hpp").write_text("// stand-in\n")
    mp.setenv("MLIR_AIE_INSTALL_DIR", str(mlir_aie))
    use_fake_toolchain(mp, root / "aiecc.log")

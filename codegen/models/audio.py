"""Audio for the encoder: 16 kHz mono int16 WAV files, and espeak-ng speech for calibration."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from codegen.kernels.mel import AudioError

SAMPLE_RATE = 16_000
VOICES = ("en-us", "en-gb-scotland", "en+f3", "de")  # several espeak-ng voices, two languages
SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the radio plays softly.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack.",
    "We also need a small plastic snake and a big toy frog for the kids.",
)


def read_wav(path: str | Path) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV file as int16 samples; an AudioError line for anything else."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"audio {p}: no such file")
    try:
        with wave.open(str(p)) as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise AudioError(f"audio {p}: not a PCM WAV file ({e})") from None
    if width != 2:
        raise AudioError(f"audio {p}: {8 * width}-bit samples; the encoder takes 16-bit PCM "
                         "(e.g. `ffmpeg -i IN -ac 1 -ar 16000 -sample_fmt s16 OUT.wav`)")
    if rate != SAMPLE_RATE:
        raise AudioError(f"audio {p}: {rate} Hz; the encoder takes {SAMPLE_RATE} Hz, resample "
                         "first (e.g. `ffmpeg -i IN -ac 1 -ar 16000 OUT.wav`)")
    if channels != 1:
        raise AudioError(f"audio {p}: {channels} channels; mix down to mono first")
    if not data:
        raise AudioError(f"audio {p}: holds no samples")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return path


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling through the FFT, rounded back to int16."""
    n_out = round(x.size * rate_out / rate_in)
    spectrum = np.fft.rfft(x.astype(np.float64))[: n_out // 2 + 1]
    y = np.fft.irfft(spectrum, n_out) * (n_out / x.size)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_speech(n_samples: int, voice: str, seed: int = 0) -> np.ndarray:
    """`n_samples` of espeak-ng speech in `voice` at 16 kHz: sentences spoken until it is full."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise AudioError("espeak-ng is not installed (apt-get install espeak-ng); give "
                         "calibration clips instead")
    pieces, total, k = [], 0, seed
    with tempfile.TemporaryDirectory() as tmp:
        while total < n_samples:
            wav = Path(tmp) / f"{k}.wav"
            text = SENTENCES[k % len(SENTENCES)]
            subprocess.run([espeak, "-v", voice, "-w", str(wav), text], check=True,
                           capture_output=True)
            with wave.open(str(wav)) as w:
                rate = w.getframerate()
                x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            piece = resample(x, rate, SAMPLE_RATE)
            pieces.append(piece)
            total += piece.size
            k += 1
    return np.concatenate(pieces)[:n_samples]

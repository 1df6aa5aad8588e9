"""mel: the Whisper front end against openai-whisper, golden vs host core vs emulated design."""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from pathlib import Path
from types import ModuleType

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from codegen.checks import check_design
from codegen.hostcore import HostCore
from codegen.kernels import spec_from_params
from codegen.kernels.mel import (
    FLOOR_CODE,
    HOP,
    N_FFT,
    AudioError,
    MelSpec,
    cos_table,
    log2_table,
    log_mel,
    log_mel_codes,
    slaney_filters,
    synthetic_speech,
    window_table,
)
from codegen.pipeline import BuildResult, build
from codegen.render import DESIGN_NAME, render
from codegen.spec import SpecError
from runtime.errors import NpukitError
from runtime.kernel import NpuKernel

#: the targets of KERNELS.md against whisper.log_mel_spectrogram, in normalised log-mel units
MEAN_TARGET, MAX_TARGET = 1e-3, 0.02
VARIANTS = {
    "default": {},
    "small": {"frames": "24", "tile_frames": "4", "fifo_depth": "1"},
    "two-blocks-128": {"frames": "1100", "tile_frames": "10", "n_mels": "128"},
}
SENTENCE = ("The quick brown fox jumps over the lazy dog. Whisper turns sixteen thousand "
            "samples a second into eighty mel bins, and this sentence checks that it does.")


def mel_spec(params: dict[str, str]) -> MelSpec:
    spec = spec_from_params("mel", params)
    assert isinstance(spec, MelSpec)
    return spec


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[MelSpec, BuildResult]]:
    root = tmp_path_factory.mktemp("mel")
    out = {}
    for name, params in VARIANTS.items():
        spec = mel_spec(params)
        out[name] = (spec, build(spec, root, target="emu"))
    return out


@pytest.fixture(scope="module")
def whisper() -> ModuleType:
    import whisper as module  # type: ignore[import-untyped]  # openai-whisper: dev extra, torch

    return module


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Real speech: espeak-ng's 22,050 Hz voice, resampled to 16 kHz int16."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no speech to test")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([espeak, "-w", str(wav), SENTENCE], check=True, capture_output=True)
    with wave.open(str(wav)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return resample(x, rate, 16_000)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling through the FFT, rounded back to int16."""
    n_out = round(x.size * rate_out / rate_in)
    spectrum = np.fft.rfft(x.astype(np.float64))[: n_out // 2 + 1]
    y = np.fft.irfft(spectrum, n_out) * (n_out / x.size)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def whisper_log_mel(whisper: ModuleType, pcm: np.ndarray, n_mels: int) -> np.ndarray:
    audio = pcm.astype(np.float32) / 32768.0
    return whisper.log_mel_spectrogram(audio, n_mels=n_mels).numpy()


def emulated(result: BuildResult) -> NpuKernel:
    return NpuKernel.load(result.artifact_dir, backend="emu")


def run_host_core(spec: MelSpec, result: BuildResult, pcm: np.ndarray) -> np.ndarray:
    """Frame the padded PCM as the DMA does and call the host-compiled core once per tile."""
    core = HostCore(result.artifact_dir / result.manifest.host_libraries[spec.object_name])
    starts = np.arange(spec.frames) * HOP
    frames = pcm[starts[:, None] + np.arange(N_FFT)[None, :]]
    tiles = frames.reshape(spec.n_tiles, spec.in_tile)
    out = np.full((spec.n_tiles, spec.out_tile), 99, dtype=np.int16)
    core.run_tiles(spec.CORE_SYMBOLS[0], tiles, out)
    return out.reshape(spec.frames, spec.n_mels)


def cases(spec: MelSpec) -> list[tuple[str, list[np.ndarray]]]:
    return [(f"seed{s}", spec.random_inputs(s)) for s in range(3)] + spec.edge_inputs()


def report(label: str, ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    diff = np.abs(ours.astype(np.float64) - theirs)
    mean, worst = float(diff.mean()), float(diff.max())
    print(f"mel vs whisper, {label}: {ours.shape[1]} frames, mean abs error {mean:.6f}, "
          f"max {worst:.6f} (targets {MEAN_TARGET}, {MAX_TARGET})")
    return mean, worst


# -- the tables --------------------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_slaney_filters_match_whisper_assets(whisper: ModuleType, n_mels: int) -> None:
    assets = Path(str(whisper.__file__)).parent / "assets"
    theirs = np.load(assets / "mel_filters.npz")[f"mel_{n_mels}"]
    ours = slaney_filters(n_mels)
    assert ours.shape == theirs.shape == (n_mels, 201)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    assert np.array_equal(ours > 0, theirs > 0)


def test_tables() -> None:
    w, c, t = window_table(), cos_table(), log2_table()
    assert w[0] == 0 and w[N_FFT // 2] == 1 << 30 and np.array_equal(w[1:], w[:0:-1])
    m = np.arange(N_FFT)
    assert c[0] == 1 << 30 and c[N_FFT // 2] == -(1 << 30) and c[N_FFT // 4] == 0
    assert np.array_equal(c[-m % N_FFT], c) and np.array_equal(c[(N_FFT // 2 - m) % N_FFT], -c)
    assert np.abs(c - np.cos(2 * np.pi * m / N_FFT) * (1 << 30)).max() <= 0.5
    assert t[0] == 0 and t[-1] == 1 << 24 and t[128] == round(np.log2(1.5) * (1 << 24))


# -- golden vs float reference vs core vs design ------------------------------------------
@pytest.mark.parametrize("params", [{}, {"n_mels": "128"}])
def test_golden_meets_accuracy_targets(params: dict[str, str]) -> None:
    """Against the float64 reference, in Q11 codes after whisper's clamp to (max - 8)."""
    spec = mel_spec(params)
    for seed in range(6):
        inputs = spec.random_inputs(seed)
        pearson, within1, worst = spec.accuracy_figures(inputs)
        print(f"mel {spec.variant} seed {seed}: pearson {pearson:.8f}, within 1 code "
              f"{within1:.4%}, max {worst} codes")
        assert spec.accuracy_problems(inputs) == []
        golden, ref = spec.golden(inputs)[0], spec.reference(inputs)[0]
        assert not np.array_equal(golden, ref)  # the model is of fixed point, not of float


def test_accuracy_problems_name_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = mel_spec({"frames": "24", "tile_frames": "4"})
    inputs = spec.random_inputs(0)
    shifted = [np.asarray(spec.golden(inputs)[0] + 3, dtype=np.int16)]
    monkeypatch.setattr(spec, "reference", lambda x: shifted)
    (problem,) = spec.accuracy_problems(inputs)
    assert "within 1 code 0.00% (target 98%)" in problem


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_host_core_matches_golden_bit_for_bit(
        builds: dict[str, tuple[MelSpec, BuildResult]], name: str) -> None:
    spec, result = builds[name]
    for label, inputs in cases(spec):
        got, want = run_host_core(spec, result, inputs[0]), spec.golden(inputs)[0]
        bad = np.argwhere(got != want)
        assert not bad.size, f"{name} {label}: {len(bad)} codes differ, first at {bad[0]}"


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_host_core_matches_golden_on_arbitrary_samples(
        builds: dict[str, tuple[MelSpec, BuildResult]], data: st.DataObject) -> None:
    """Any samples, at every loudness: the amplitude 2^k walks the block exponent's range."""
    spec, result = builds["small"]
    k = data.draw(st.integers(0, 15))
    pcm = data.draw(hnp.arrays(np.int16, (spec.pcm_len,),
                               elements=st.integers(-(1 << k), (1 << k) - 1)))
    event(f"amplitude 2^{k}")
    np.testing.assert_array_equal(run_host_core(spec, result, pcm), spec.golden([pcm])[0])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_emulated_design_matches_golden_bit_for_bit(
        builds: dict[str, tuple[MelSpec, BuildResult]], name: str) -> None:
    spec, result = builds[name]
    outputs = []
    with emulated(result) as kernel:
        for label, inputs in cases(spec):
            (got,) = kernel(inputs)
            want = spec.golden(inputs)[0]
            assert got.dtype == np.int16 and got.shape == (spec.frames, spec.n_mels)
            assert np.array_equal(got, want), f"{name} {label}: the design differs from golden"
            outputs.append(got)
    assert not np.array_equal(outputs[0], outputs[1])
    assert len(np.unique(outputs[0])) > 100


def test_design_frames_by_overlapping_dma_rows(
        builds: dict[str, tuple[MelSpec, BuildResult]]) -> None:
    """Frames overlap by 240 samples: the DMA reads rows 160 apart, 400 long, in <= 1023 rows."""
    texts = {n: (r.artifact_dir / "aie.mlir").read_text() for n, (_, r) in builds.items()}
    pattern = r"%pcm\[0, 0, 0, 0\]\[1, {}, {}, 400\]\[0, {}, 160, 1\]"
    assert re.search(pattern.format(1, 1000, 160_000), texts["default"])
    assert re.search(pattern.format(2, 550, 88_000), texts["two-blocks-128"])
    assert "memref<160240xi16>" in texts["default"]  # 999 hops + one frame


@settings(max_examples=20, deadline=None)
@given(tile_frames=st.sampled_from([1, 2, 4, 5, 8, 10, 16, 32]), data=st.data(),
       n_mels=st.sampled_from([80, 128]), fifo_depth=st.integers(1, 4))
def test_every_accepted_parameter_set_renders_a_design_that_passes(
        tile_frames: int, data: st.DataObject, n_mels: int, fifo_depth: int) -> None:
    """Spec and template agree (memory plan, DMA limits, coverage) wherever the spec accepts."""
    frames = tile_frames * data.draw(st.integers(1, 3000 // tile_frames))
    params = {"frames": frames, "tile_frames": tile_frames, "n_mels": n_mels,
              "fifo_depth": fifo_depth}
    try:
        spec = spec_from_params("mel", params)
    except SpecError as e:
        message = str(e)
        assert ("tile buffers need" in message or "does not fit above its buffers" in message)
        assert "\n" not in message
        return
    event("accepted")
    check_design(spec, render(spec).files[DESIGN_NAME])


# -- the front end against openai-whisper ---------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_speech_matches_whisper(whisper: ModuleType, speech: np.ndarray, n_mels: int) -> None:
    spec = mel_spec({"n_mels": str(n_mels)})
    theirs = whisper_log_mel(whisper, speech, n_mels)
    ours = log_mel(speech, 16_000, spec=spec)
    assert ours.shape == theirs.shape == (n_mels, speech.size // HOP)
    mean, worst = report(f"espeak-ng speech, {n_mels} mels", ours, theirs)
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET
    assert theirs.max() - theirs.min() > 1.5  # speech has the full clamped range


def test_a_30_second_window_through_the_emulated_design(
        whisper: ModuleType, speech: np.ndarray,
        builds: dict[str, tuple[MelSpec, BuildResult]]) -> None:
    """Speech padded to whisper's 30 s window: 3,000 frames in three invocations of the design,
    equal to the golden front end's output, and to whisper's within the targets."""
    spec, result = builds["default"]
    window = np.zeros(30 * 16_000, dtype=np.int16)
    window[: speech.size] = speech
    with emulated(result) as kernel:
        ours = log_mel(window, 16_000, spec=spec, kernel=kernel)
    assert ours.shape == (80, 3000)
    np.testing.assert_array_equal(ours, log_mel(window, 16_000, spec=spec))
    theirs = whisper_log_mel(whisper, window, 80)
    mean, worst = report("espeak-ng speech in a 30 s window, emulated design", ours, theirs)
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


def test_padding_appends_zeros_as_whisper_does(whisper: ModuleType) -> None:
    pcm = MelSpec().random_inputs(2)[0][:5000]
    ours = log_mel(pcm, 16_000, padding=1234)
    theirs = whisper.log_mel_spectrogram(pcm.astype(np.float32) / 32768, padding=1234).numpy()
    assert ours.shape == theirs.shape == (80, (5000 + 1234) // HOP)
    mean, worst = report("clip with padding=1234", ours, theirs)
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


def test_a_short_clip_with_padding_is_accepted_as_whisper_does(whisper: ModuleType) -> None:
    pcm = MelSpec().random_inputs(4)[0][:150]
    ours = log_mel(pcm, 16_000, padding=1000)
    theirs = whisper.log_mel_spectrogram(pcm.astype(np.float32) / 32768, padding=1000).numpy()
    assert ours.shape == theirs.shape == (80, 1150 // HOP)
    mean, worst = report("150 samples with padding=1000", ours, theirs)
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


@pytest.mark.parametrize("level", [30.0, 3000.0, 20000.0])
def test_noise_matches_whisper(whisper: ModuleType, level: float) -> None:
    rng = np.random.default_rng(int(level))
    pcm = np.clip(np.round(rng.standard_normal(3 * 16_000) * level), -32768, 32767)
    pcm = pcm.astype(np.int16)
    ours, theirs = log_mel(pcm, 16_000), whisper_log_mel(whisper, pcm, 80)
    mean, worst = report(f"white noise, sigma {level:g}", ours, theirs)
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


def test_silence_and_full_scale_tone_match_whisper(whisper: ModuleType) -> None:
    silence = np.zeros(16_000, dtype=np.int16)
    ours = log_mel(silence, 16_000)
    np.testing.assert_array_equal(ours, whisper_log_mel(whisper, silence, 80))
    assert np.all(ours == np.float32(-1.5))  # log10(1e-10) = -10, (-10 + 4) / 4
    t = np.arange(2 * 16_000) / 16_000
    tone = np.round(np.sin(2 * np.pi * 1000.0 * t) * 32767).astype(np.int16)
    mean, worst = report("full-scale 1 kHz tone", log_mel(tone, 16_000),
                         whisper_log_mel(whisper, tone, 80))
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


def signal(name: str, seconds: float = 1.0) -> np.ndarray:
    """One of KERNELS.md's signal families, int16 at 16 kHz."""
    rng = np.random.default_rng(len(name))
    t = np.arange(int(seconds * 16_000)) / 16_000
    floor = rng.standard_normal(t.size)
    chirp = np.sin(2 * np.pi * (100.0 * t + 3900.0 * t * t))  # 100 Hz to 7.9 kHz
    x = {
        # The Q15 cosine table's leak put these bins 0.085 off whisper.
        "7 kHz tone over a small noise floor": 8000 * np.sin(2 * np.pi * 7000 * t) + 3 * floor,
        "quiet 5 kHz tone over a tiny floor": 1000 * np.sin(2 * np.pi * 5000 * t) + 0.5 * floor,
        "7.9 kHz tone, full scale, noise": 32000 * np.sin(2 * np.pi * 7900 * t) + 10 * floor,
        "chirp": 20000 * chirp,
        "chirp over noise": 5000 * chirp + 30 * floor,
        "speech-like with a tone": synthetic_speech(t.size, 3).astype(np.float64)
        + 2000 * np.sin(2 * np.pi * 6500 * t),
        "clipped tone": 60000 * np.sin(2 * np.pi * 440 * t),
    }[name]
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("name", [
    "7 kHz tone over a small noise floor", "quiet 5 kHz tone over a tiny floor",
    "7.9 kHz tone, full scale, noise", "chirp", "chirp over noise", "speech-like with a tone",
    "clipped tone"])
def test_signal_families_match_whisper(whisper: ModuleType, name: str) -> None:
    pcm = signal(name)
    spec = mel_spec({"frames": "100", "tile_frames": "4"})
    mean, worst = report(name, log_mel(pcm, 16_000, spec=spec), whisper_log_mel(whisper, pcm, 80))
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


def test_host_core_matches_golden_on_the_signal_families(
        builds: dict[str, tuple[MelSpec, BuildResult]]) -> None:
    spec, result = builds["small"]
    for name in ("7 kHz tone over a small noise floor", "clipped tone", "chirp"):
        pcm = signal(name)[: spec.pcm_len]
        np.testing.assert_array_equal(run_host_core(spec, result, pcm), spec.golden([pcm])[0])


def test_clip_not_a_multiple_of_the_hop(whisper: ModuleType) -> None:
    """len // 160 frames, frame t centred on sample 160 t, across several invocations."""
    spec = mel_spec({"frames": "24", "tile_frames": "4"})
    pcm = MelSpec().random_inputs(4)[0][: 160 * 61 + 97]
    ours = log_mel(pcm, 16_000, spec=spec)
    assert ours.shape == (80, 61)  # three invocations of 24 frames, the last one partial
    np.testing.assert_array_equal(ours, log_mel(pcm, 16_000))  # 1,000 frames a call: one
    mean, worst = report("clip of 61 hops + 97 samples", ours, whisper_log_mel(whisper, pcm, 80))
    assert mean <= MEAN_TARGET and worst <= MAX_TARGET


def test_a_click_lands_in_the_frames_that_cover_it() -> None:
    """Frame t windows padded samples [160 t, 160 t + 400), i.e. clip samples 160 t +- 200."""
    spec = mel_spec({"frames": "24", "tile_frames": "4"})
    pcm = np.zeros(160 * 30 + 50, dtype=np.int16)
    click = 160 * 12 + 37
    pcm[click] = 20000
    codes = log_mel_codes(pcm, spec, spec.golden)
    heard = np.flatnonzero((codes > FLOOR_CODE).any(axis=1))
    t = np.arange(codes.shape[0])
    np.testing.assert_array_equal(heard, t[np.abs(click - HOP * t) < N_FFT // 2])


# -- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize(("pcm", "rate", "message"), [
    (np.zeros(16_000, np.float32), 16_000, "pcm must be int16 samples, got float32"),
    (np.zeros((16_000, 2), np.int16), 16_000, r"pcm must be mono, shape \(n,\); got shape"),
    (np.zeros((2, 16_000), np.int16), 16_000, "mix the channels down"),
    (np.zeros(16_000, np.int16), 44_100, "sample_rate 44100 Hz: the Whisper front end takes "
                                          "16000 Hz; resample"),
    (np.zeros(16_000, np.int16), 16_000.0, "sample_rate must be an integer in Hz"),
    ([0] * 16_000, 16_000, "pcm must be a numpy int16 array, got list"),
    (np.zeros(200, np.int16), 16_000, "the reflect padding needs more than 200"),
])
def test_bad_audio_is_refused(pcm: object, rate: object, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        log_mel(pcm, rate)  # type: ignore[arg-type]


def test_negative_padding_is_refused() -> None:
    with pytest.raises(AudioError, match="padding must be a number of samples >= 0, got -1"):
        log_mel(np.zeros(1000, np.int16), 16_000, padding=-1)


def test_a_kernel_of_another_shape_is_refused() -> None:
    spec = mel_spec({"frames": "24", "tile_frames": "4"})
    other = mel_spec({"frames": "24", "tile_frames": "4", "n_mels": "128"})
    with pytest.raises(NpukitError, match="the kernel and the spec disagree"):
        log_mel(np.zeros(4000, np.int16), 16_000, spec=spec, kernel=other.golden)


@pytest.mark.parametrize(("params", "message"), [
    ({"frames": "100", "tile_frames": "8"}, "tile_frames 8 does not divide frames 100"),
    ({"n_mels": "64"}, "n_mels 64 is not one of: 80, 128"),
    ({"frames": "4000"}, "frames 4000 is above the maximum 3000"),
    ({"frames": "960", "tile_frames": "32", "fifo_depth": "4"}, "tile buffers need"),
])
def test_invalid_parameters_fail_before_rendering(params: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_params("mel", params)

"""The encoder model artifact run by the graph runner on the emulator, against the golden encoder.

Tiny dims (2 blocks of 128, 2 heads, 64 frames): every op's output equals the golden encoder's
bit for bit; the run holds at most 2 hardware contexts and allocates its buffers once.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from codegen.models import golden
from codegen.models.artifact import ModelBuild, build_encoder, load_graph
from codegen.models.audio import write_wav
from codegen.models.checkpoint import load_checkpoint
from codegen.models.cli import encode
from codegen.models.quantise import CalibrationError
from codegen.models.whisper import window
from runtime.encoder import AudioInputError, NpuWhisperEncoder
from runtime.errors import ArtifactError
from tests import encoder_support as es
from tests.test_cli import invoke
from tests.whisper_checkpoints import write_checkpoint

pytest.importorskip("whisper")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ModelBuild]:
    ckpt = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=21)
    root = tmp_path_factory.mktemp("build")
    dims = load_checkpoint(ckpt).dims
    built = build_encoder(ckpt, root, clips=es.calibration_clips(dims), name="tiny")
    return ckpt, root, built


def test_emulated_encoder_equals_golden(model: tuple[Path, Path, ModelBuild]) -> None:
    ckpt, _, built = model
    dims = load_checkpoint(ckpt).dims
    graph, constants = load_graph(built.directory)
    with NpuWhisperEncoder.load(built.directory, backend="emu") as encoder:
        runner = encoder.runner
        for label, clip in es.test_clips(dims).items():
            pcm = window(clip, dims)
            ours = encoder.run(pcm)
            theirs = golden.run_golden(graph, constants, pcm)
            for name in graph.tensors:
                np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{label} {name}")
        # one variant per shape: every layer's kernels share one context of few members
        assert len(runner.contexts.opened) == 1
        kernel_ops = [op for op in graph.ops if op.kind == "kernel"]
        members = {(op["context"], op["member"]) for op in runner.ops if op["kind"] == "kernel"}
        assert len(members) == sum(runner.contexts.kernels_per_context.values()) <= 16
        member_of = {op["name"]: op["member"] for op in runner.ops if op["kind"] == "kernel"}
        for name, member in member_of.items():  # every block runs block 0's kernels
            if name.startswith("b1."):
                assert member == member_of["b0." + name[3:]], name
        # each op's weights and per-layer values are bound (once, at load: the count of BOs
        # that takes is checked through the fake pyxrt in test_encoder_xrt.py)
        assert set(runner.bindings) == {op.name for op in kernel_ops if op.fn != "mel"}
        kernels = {r.fn for r in encoder.report if r.kind == "kernel"}
        assert kernels == {"mel", "matmul", "layernorm", "mha"}  # GELU: in matmul's epilogue


def test_model_build_is_cached_and_tampering_refused(model: tuple[Path, Path, ModelBuild]
                                                     ) -> None:
    ckpt, root, built = model
    dims = load_checkpoint(ckpt).dims
    again = build_encoder(ckpt, root, clips=es.calibration_clips(dims), name="tiny")
    assert again.up_to_date and again.directory == built.directory
    victim = built.directory / "weights" / "b0.fc1.B.npy"
    saved = victim.read_bytes()
    try:
        victim.write_bytes(saved[:-4] + bytes(b ^ 0xFF for b in saved[-4:]))
        with pytest.raises(ArtifactError, match=r"b0\.fc1\.B\.npy: content does not match"):
            NpuWhisperEncoder.load(built.directory, backend="emu")
    finally:
        victim.write_bytes(saved)


def test_bad_audio_gets_one_line(model: tuple[Path, Path, ModelBuild], tmp_path: Path) -> None:
    with NpuWhisperEncoder.load(model[2].directory, backend="emu") as encoder:
        for pcm, rate, needle in [
            (np.zeros(100, np.float32), 16000, "int16 array, got float32"),
            (np.zeros((100, 2), np.int16), 16000, "mono"),
            (np.zeros(100, np.int16), 22050, "sample rate 22050"),
        ]:
            with pytest.raises(AudioInputError, match=needle):
                encoder(pcm, rate)
    wav = tmp_path / "fast.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"\0" * 400)
    result = invoke("encode", str(wav), "--checkpoint", str(model[0]), build_dir=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        f"error: audio {wav}: 22050 Hz; the encoder takes 16000 Hz, resample first (e.g. "
        "`ffmpeg -i IN -ac 1 -ar 16000 OUT.wav`)"]
    good = write_wav(tmp_path / "ok.wav", np.zeros(1600, np.int16))
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16))
    result = invoke("encode", str(empty), "--checkpoint", str(model[0]), build_dir=tmp_path)
    assert result.stdout.strip().splitlines() == [f"error: audio {empty}: holds no samples"]
    result = invoke("encode", str(good), "--checkpoint", str(model[0]), "--out",
                    str(tmp_path / "nowhere" / "enc.npy"), build_dir=tmp_path)
    assert result.returncode == 1 and "calibrating" not in result.stdout
    assert result.stdout.strip().splitlines() == [
        f"error: --out {tmp_path / 'nowhere' / 'enc.npy'}: its directory does not exist; "
        "create it first"]
    # the NPU without its toolchain: one line, before any calibration or build
    result = invoke("encode", str(good), "--checkpoint", str(model[0]), "--backend", "xrt",
                    build_dir=tmp_path)
    assert result.returncode == 1 and "calibrating" not in result.stdout
    assert result.stdout.strip().splitlines() == [
        line for line in result.stdout.strip().splitlines()
        if line.startswith("error: no xclbin: aiecc (mlir-aie) and Peano (llvm-aie) not found")]
    result = invoke("encode", str(good), "--checkpoint", str(tmp_path / "nope.pt"),
                    build_dir=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        f"error: checkpoint {tmp_path / 'nope.pt'}: no such file (give the path of a whisper .pt)"]


def test_saturating_calibration_refused(model: tuple[Path, Path, ModelBuild],
                                        tmp_path: Path) -> None:
    ckpt, root, _ = model
    wav = write_wav(tmp_path / "clip.wav", np.zeros(16000, np.int16))
    with pytest.raises(CalibrationError, match=r"clips .*% of its values"):
        encode(str(wav), str(ckpt), backend="emu", percentile=60.0, build_root=root,
               console=Console(record=True))


def test_encode_front_door(model: tuple[Path, Path, ModelBuild], tmp_path: Path) -> None:
    ckpt, root, built = model
    dims = load_checkpoint(ckpt).dims
    clip = es.speech(dims, "en-gb-scotland", 2)
    wav = write_wav(tmp_path / "clip.wav", clip)
    console = Console(record=True, width=160)
    calibration = [str(write_wav(tmp_path / f"cal{i}.wav", c))
                   for i, c in enumerate(es.calibration_clips(dims))]
    features = encode(str(wav), str(ckpt), backend="auto", out=str(tmp_path / "enc.npy"),
                      report=True, calibrate=calibration, build_root=root, console=console)
    text = console.export_text()
    assert "on emu" in text  # auto: emulation-only kernels run on the emulator
    assert "1 hardware context(s)" in text and "int8 vs the float encoder" in text
    # q, k and v are reported from the fused projection's thirds, each near the float value
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()
             if line.startswith("│")]
    rows = {c[0]: c[1:] for c in cells if c and c[0] in ("b0.q", "b0.k", "b0.v")}
    assert set(rows) == {"b0.q", "b0.k", "b0.v"}
    assert all(float(r[0]) > 0.99 for r in rows.values())  # mean cosine per frame
    np.testing.assert_array_equal(np.load(tmp_path / "enc.npy"), features)
    with NpuWhisperEncoder.load(built.directory, backend="emu") as encoder:
        np.testing.assert_array_equal(encoder(clip), features)


def test_weight_file_of_the_wrong_shape_refused(model: tuple[Path, Path, ModelBuild],
                                                tmp_path: Path) -> None:
    """A weight rewritten with another shape (and the manifest hash matched to it) is refused
    by the loader naming the file, before its data is used."""
    import json
    import shutil

    from runtime.manifest import sha256_file

    _, _, built = model
    copy = tmp_path / "tiny"
    shutil.copytree(built.directory, copy)
    victim = copy / "weights" / "conv1.B.npy"
    np.save(victim, np.zeros((3, 3), dtype=np.int8))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["weights/conv1.B.npy"] = {"sha256": sha256_file(victim),
                                                 "bytes": victim.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"weight conv1\.B .*conv1\.B\.npy: expected shape"):
        NpuWhisperEncoder.load(copy, backend="emu")

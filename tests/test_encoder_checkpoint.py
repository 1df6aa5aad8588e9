"""openai-whisper checkpoints: read from a path in whisper's own format, bad ones refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.models import reference
from codegen.models.checkpoint import CheckpointError, load_checkpoint
from tests.whisper_checkpoints import write_checkpoint

whisper = pytest.importorskip("whisper")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=3)


def test_loads_what_whisper_loads(tiny: Path) -> None:
    ckpt = load_checkpoint(tiny)
    model = whisper.load_model(str(tiny), device="cpu")  # the reader the format is defined by
    assert ckpt.dims.n_audio_state == model.dims.n_audio_state == 128
    for name, value in model.encoder.state_dict().items():
        np.testing.assert_array_equal(ckpt[name], value.numpy(), err_msg=name)


def test_float_reference_matches_whisper_encoder(tiny: Path) -> None:
    ckpt = load_checkpoint(tiny)
    model = whisper.load_model(str(tiny), device="cpu")
    mel = np.random.default_rng(0).uniform(-1, 1.5, (80, ckpt.dims.n_frames)).astype(np.float32)
    with torch.no_grad():
        theirs = model.encoder(torch.from_numpy(mel)[None])[0].double().numpy()
    ours = reference.forward(ckpt, mel)["ln_post"]
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(("audio", "needle"), [
    ({"n_audio_head": 4}, "n_audio_state/n_audio_head = 32"),
    ({"n_mels": 64}, "n_mels 64"),
    ({"n_audio_ctx": 62}, "n_audio_ctx 62"),
])
def test_unsupported_dims_are_named(tmp_path: Path, audio: dict[str, int], needle: str) -> None:
    path = write_checkpoint(tmp_path / "odd.pt", seed=0, **audio)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(path)


def test_bad_files_get_one_line(tiny: Path, tmp_path: Path) -> None:
    cases = {
        "no such file": tmp_path / "missing.pt",
        "not a PyTorch checkpoint": (tmp_path / "junk.pt"),
        "expected openai-whisper's dict": _save(tmp_path / "list.pt", [1, 2]),
    }
    cases["not a PyTorch checkpoint"].write_bytes(b"not a checkpoint")
    raw = torch.load(tiny, weights_only=True)
    del raw["model_state_dict"]["encoder.blocks.1.attn.key.weight"]
    cases["encoder.blocks.1.attn.key.weight is missing"] = _save(tmp_path / "hole.pt", raw)
    raw = torch.load(tiny, weights_only=True)
    raw["model_state_dict"]["encoder.conv1.bias"] = torch.zeros(7)
    cases["has shape"] = _save(tmp_path / "shape.pt", raw)
    raw = torch.load(tiny, weights_only=True)
    raw["dims"]["n_audio_layer"] = "two"
    cases["not an integer"] = _save(tmp_path / "dims.pt", raw)
    for needle, path in cases.items():
        with pytest.raises(CheckpointError, match=needle) as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value)


def test_the_model_key_holds_the_kernels_sources(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to a core's C++ (not Python) changes the model key: the model keeps its own
    copies of the kernels, so a stale key would run the old core code."""
    import shutil

    from codegen import pipeline
    from codegen.models.artifact import model_key
    from codegen.models.checkpoint import load_checkpoint

    for part in ("codegen", "runtime", "mlir"):
        shutil.copytree(pipeline.CODE_ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline, "CODE_ROOT", tmp_path)
    ckpt = load_checkpoint(write_checkpoint(tmp_path / "tiny.pt", seed=1))
    clips = [np.zeros(16, np.int16)]
    before = model_key(ckpt, clips, {})
    header = tmp_path / "mlir" / "mha" / "mha_vector.h"
    header.write_text(header.read_text() + "\n// edited\n")
    assert model_key(ckpt, clips, {}) != before


def test_auto_without_the_npu_toolchain_is_the_emu_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from codegen.models.artifact import build_settings

    monkeypatch.delenv("PEANO_INSTALL_DIR", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no aiecc, no Peano
    assert build_settings("auto", 100.0) == build_settings("emu", 100.0)
    assert build_settings("hw", 100.0)["target"] == "hw"

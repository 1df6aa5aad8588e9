"""The tiny-dims encoder built for the NPU (fake aiecc and Peano) and run through pyxrt (the fake,
strict as XRT's sources): one multi-kernel xclbin, ONE hardware context, every BO made at load.

The fake device executes each kernel's own design on the emulator, so its output must equal the
golden encoder bit for bit, as the emulated run does.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from codegen.models import golden
from codegen.models.artifact import build_encoder, load_graph
from codegen.models.checkpoint import load_checkpoint
from codegen.models.whisper import window
from runtime.context import read_context
from runtime.encoder import NpuWhisperEncoder
from tests import encoder_support as es
from tests.whisper_checkpoints import write_checkpoint

pytest.importorskip("whisper")


@pytest.fixture(scope="module")
def hw_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Built with target auto twice: first without the NPU toolchain (an emulation-only model),
    then with the fake aiecc and Peano installed, which must rebuild it for the NPU."""
    ckpt = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=21)
    root = tmp_path_factory.mktemp("build")
    clips = es.calibration_clips(load_checkpoint(ckpt).dims)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PEANO_INSTALL_DIR", raising=False)
        first = build_encoder(ckpt, root, clips=clips, name="tiny", target="auto")
    assert read_context(first.directory / "contexts" / "context0")["emulation_only"]
    with pytest.MonkeyPatch.context() as mp:
        es.fake_npu_toolchain(mp, root)
        built = build_encoder(ckpt, root, clips=clips, name="tiny", target="auto")
    assert not built.up_to_date  # the toolchain appeared: not the emulation-only model
    return ckpt, built.directory


def test_npu_run_uses_one_context_and_allocates_nothing_per_layer(
        hw_model: tuple[Path, Path], fake: ModuleType) -> None:
    ckpt, directory = hw_model
    dims = load_checkpoint(ckpt).dims
    context = read_context(directory / "contexts" / "context0")
    assert not context["emulation_only"] and len(context["members"]) <= 16
    graph, constants = load_graph(directory)
    before = fake.bos_allocated()
    with NpuWhisperEncoder.load(directory, backend="xrt") as encoder:
        assert encoder.runner.backend_name == "xrt"
        assert fake.live_contexts() == 1  # the whole encoder: one hardware context
        at_load = fake.bos_allocated() - before
        # per member: its instruction BO and data BOs; per kernel op: its bound constants
        members = [encoder.runner.loaded["context0"].kernel(n)
                   for n in encoder.runner.loaded["context0"].names]
        expected = sum(1 + len(m.manifest.buffers) for m in members) + sum(
            len(b.names) for b in encoder.runner.bindings.values())
        assert at_load == expected
        for label, clip in list(es.test_clips(dims).items())[:2]:
            pcm = window(clip, dims)
            ours = encoder.run(pcm)
            theirs = golden.run_golden(graph, constants, pcm)
            for name in graph.tensors:
                np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{label} {name}")
        assert fake.bos_allocated() - before == at_load  # two windows: not one BO more
        assert fake.live_contexts() == 1
    assert fake.messages == []  # no BO was cloned into another bank
    assert fake.live_contexts() == 0

"""One Whisper-base-dims encoder over a 30 s window, built for the NPU and run through the fake
pyxrt on the emulator, against the golden encoder and openai-whisper.

The one full-size run of the encoder (6 blocks of 512, 8 heads, 1,500 frames): it needs the mha
kernel for whole-sequence attention. `-s` prints the accuracy per block and the times.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from codegen.models import golden
from codegen.models.artifact import build_encoder, load_graph
from codegen.models.checkpoint import load_checkpoint
from codegen.models.whisper import window
from runtime.encoder import NpuWhisperEncoder
from tests import encoder_support as es
from tests.whisper_checkpoints import BASE, write_checkpoint

whisper = pytest.importorskip("whisper")


def test_base_dims_window(tmp_path: Path, fake: ModuleType) -> None:
    """Built for the NPU with the fake aiecc and Peano, run through the fake pyxrt (which runs
    each kernel's design on the emulator): one hardware context, no BO after load."""
    ckpt = write_checkpoint(tmp_path / "base.pt", seed=5, **BASE)
    dims = load_checkpoint(ckpt).dims
    clips = [es.speech(dims, "en-us", 0), es.noise(dims, 1)]
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        es.fake_npu_toolchain(mp, tmp_path)
        built = build_encoder(ckpt, tmp_path / "build", clips=clips, target="hw")
    build_s = time.perf_counter() - start
    graph, constants = load_graph(built.directory)
    pcm = window(es.speech(dims, "en-gb-scotland", 1), dims)
    with NpuWhisperEncoder.load(built.directory, backend="xrt") as encoder:
        assert encoder.runner.backend_name == "xrt" and fake.live_contexts() == 1
        at_load = fake.bos_allocated()
        ours = encoder.run(pcm)
        emulated_s = sum(r.seconds for r in encoder.report)
        assert fake.bos_allocated() == at_load and fake.live_contexts() == 1
        contexts = encoder.runner.contexts
        variants = sum(contexts.kernels_per_context.values())
    theirs = golden.run_golden(graph, constants, pcm)
    for name in graph.tensors:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    out, blocks = es.whisper_encoder(whisper, ckpt, pcm, dims.n_frames)
    print(f"\nbase dims, 30 s espeak-ng en-gb-scotland: build {build_s:.0f} s, run through the "
          f"fake pyxrt (emulated) {emulated_s:.1f} s, {len(contexts.opened)} hardware context(s) "
          f"for "
          f"{variants} kernel variants ({len(encoder.report)} ops)")
    for i, block in enumerate(blocks):
        x = ours[f"b{i}.x2"] * graph.tensors[f"b{i}.x2"].scale
        cos = es.frame_cosines(x, block)
        print(f"block {i}: mean cos {cos.mean():.5f} worst {cos.min():.5f} "
              f"rel err {es.rel_error(x, block):.4f}")
    cos = es.frame_cosines(ours["features"], out)
    print(f"output: mean cos {cos.mean():.5f} worst {cos.min():.5f} "
          f"rel err {es.rel_error(ours['features'], out):.4f}")
    assert cos.mean() >= 0.995 and cos.min() >= 0.98
    # one variant per shape: 6 blocks share 9 variants, one context (at most 2 allowed)
    assert len(contexts.opened) == 1 and variants <= 16

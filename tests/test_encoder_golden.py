"""Quantisation, calibration and the golden encoder against openai-whisper's float AudioEncoder.

`-s` prints the accuracy tables: cosine per frame (mean, worst) and relative error, per block
and for the output, on espeak-ng speech in voices not calibrated on, and on noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.models import golden
from codegen.models import whisper as plan
from codegen.models.checkpoint import Checkpoint, load_checkpoint
from codegen.models.graph import Graph
from codegen.models.quantise import CalibrationError, calibrate, report_lines, weight_scales
from tests import encoder_support as es
from tests.whisper_checkpoints import write_checkpoint

whisper = pytest.importorskip("whisper")
MEAN_COSINE, WORST_COSINE = 0.995, 0.98


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Checkpoint]:
    path = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=11)
    return path, load_checkpoint(path)


@pytest.fixture(scope="module")
def planned(tiny: tuple[Path, Checkpoint]) -> tuple[Graph, dict[str, np.ndarray]]:
    ckpt = tiny[1]
    scales = plan.calibrate_encoder(ckpt, es.calibration_clips(ckpt.dims))
    return plan.plan_encoder(ckpt, scales)


def test_weights_per_output_channel() -> None:
    w = np.array([[0.5, -0.01], [-1.0, 0.02]])
    np.testing.assert_allclose(weight_scales(w), [1.0 / 127, 0.02 / 127])


def test_calibration_report_and_saturation_refused() -> None:
    rng = np.random.default_rng(0)
    runs = [{"x": rng.standard_normal(10_000)}]
    scales = calibrate(runs, ["x"], percentile=99.95)
    assert 0 < scales["x"].clipped <= 0.001
    assert "x" in report_lines(scales)[1]
    with pytest.raises(CalibrationError, match=r"x: .* clips 10\.00% of its values"):
        calibrate(runs, ["x"], percentile=90.0)


def test_graph_is_kernels_with_named_host_steps(planned: tuple[Graph, dict]) -> None:
    graph = planned[0]
    kernels = [op.fn for op in graph.ops if op.kind == "kernel"]
    assert kernels.count("matmul") == 2 + 4 * 2  # conv1, conv2; qkv, out, fc1, fc2 per block
    assert kernels.count("layernorm") == 2 * 2 + 1 and kernels.count("gelu") == 0
    fused = [op.name for op in graph.ops if op.params.get("epilogue") == "gelu"]
    assert fused == ["conv1", "conv2", "b0.fc1", "b1.fc1"]  # GELU in their output step
    assert {op.fn for op in graph.ops if op.kind == "host"} <= set(golden_host_ops())
    qkv = next(op for op in graph.ops if op.name == "b0.qkv")
    # shape-only variants: the layer's scales and bias ride in its packed weight tensor
    assert qkv.params["N"] == 3 * 128 and qkv.params["runtime_params"] == 1
    assert "b_scales" not in qkv.params and "bias" not in qkv.params
    assert qkv.inputs[1] == "b0.qkv.B" and "b0.qkv.B" in graph.constants
    tk = qkv.params["tk"]
    assert graph.tensors["b0.qkv.B"].shape == (128 + tk, 3 * 128)
    twins = [(op, next(o for o in graph.ops if o.name == "b1." + op.name[3:]))
             for op in graph.ops if op.kind == "kernel" and op.name.startswith("b0.")]
    assert twins and all(a.params == b.params for a, b in twins)


def golden_host_ops() -> list[str]:
    from codegen.models.graph import HOST_OPS

    return list(HOST_OPS)


def test_golden_encoder_against_whisper(tiny: tuple[Path, Checkpoint],
                                        planned: tuple[Graph, dict]) -> None:
    path, ckpt = tiny
    graph, constants = planned
    layers = ckpt.dims.n_audio_layer
    print(f"\ngolden encoder (int8) vs whisper's float AudioEncoder, dims {ckpt.dims}")
    print(f"{'clip':<22} {'tensor':<8} {'mean cos':>9} {'worst':>9} {'rel err':>8}")
    for label, clip in es.test_clips(ckpt.dims).items():
        pcm = plan.window(clip, ckpt.dims)
        values = golden.run_golden(graph, constants, pcm)
        out, blocks = es.whisper_encoder(whisper, path, pcm, ckpt.dims.n_frames)
        rows = [(f"block {i}", values[f"b{i}.x2"] * graph.tensors[f"b{i}.x2"].scale, blocks[i])
                for i in range(layers)]
        rows.append(("output", values["features"], out))
        for name, ours, theirs in rows:
            cos = es.frame_cosines(ours, theirs)
            print(f"{label:<22} {name:<8} {cos.mean():>9.5f} {cos.min():>9.5f} "
                  f"{es.rel_error(ours, theirs):>8.4f}")
        cos = es.frame_cosines(values["features"], out)
        assert cos.mean() >= MEAN_COSINE and cos.min() >= WORST_COSINE, label

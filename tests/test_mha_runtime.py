"""mha with runtime_params=1: one build, the scales per call in the params input P."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codegen.checks import check_design
from codegen.kernels import spec_from_params
from codegen.kernels.mha import MhaSpec, activations, layer_scales
from codegen.pipeline import BuildResult, build
from codegen.render import render
from codegen.spec import SpecError
from runtime.kernel import NpuKernel
from tests.test_cost import emulate_once, emulated_shim_bytes
from tests.test_mha import run_host_core

TINY = {"seq_q": "32", "seq_k": "32", "heads": "2", "head_dim": "16", "device": "npu1_1col"}
#: two columns (P on each column's Q/K channel), padded K tiles, causal
CAUSAL = {"seq_q": "24", "seq_k": "40", "heads": "2", "head_dim": "16", "tq": "4", "tk": "8",
          "rows": "2", "columns": "2", "causal": "1", "device": "npu1_2col"}
#: one core, 8x8 tiles, 51 keys: the rescale paths of tests/test_mha.py
RESCALE = {"seq_q": "8", "seq_k": "51", "heads": "1", "tq": "8", "tk": "8", "columns": "1",
           "rows": "1", "device": "npu1_1col"}
RUNTIME = {"tiny": TINY, "causal": CAUSAL, "rescale": RESCALE}
SCALES = ("q_scale", "k_scale", "v_scale", "o_scale")


def mha(params: dict[str, str], runtime: bool = True) -> MhaSpec:
    spec = spec_from_params("mha", {**params, "runtime_params": "1" if runtime else "0"})
    assert isinstance(spec, MhaSpec)
    return spec


def hand_packed(spec: MhaSpec, mult: int, shift: int, out_mult: int) -> np.ndarray:
    """P written from the documented layout alone (not by pack_params): int32 words 0..2."""
    raw = np.zeros(spec.kv_tile_bytes, dtype=np.uint8)
    raw[:12] = np.array([mult, shift, out_mult], dtype="<i4").view(np.uint8)
    raw[16:32] = np.array([1e-3, 1.0], dtype="<f8").view(np.uint8)
    return raw.view(np.int8)


@pytest.fixture(scope="module")
def host_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    root = tmp_path_factory.mktemp("mha-runtime")
    return {name: build(mha(p), root, target="emu") for name, p in RUNTIME.items()}


@pytest.mark.parametrize("name", ["tiny", "causal"])
def test_one_emulated_build_serves_several_layers(host_builds: dict[str, BuildResult],
                                                  name: str) -> None:
    """The same loaded kernel, called with different P (the same Q, K, V too): each output is
    the golden model's for that P, and the outputs differ, so P is read on every call."""
    spec = mha(RUNTIME[name])
    base = spec.random_inputs(0)
    cases = [spec.random_inputs(s) for s in (1, 2)] + [[*base[:3], spec.random_inputs(s)[3]]
                                                      for s in (0, 3, 0)]
    outputs = []
    with NpuKernel.load(host_builds[name].artifact_dir, backend="emu") as kernel:
        for i, inputs in enumerate(cases):
            (got,) = kernel(*inputs)
            want = spec.golden(inputs)[0]
            bad = np.argwhere(got.reshape(want.shape) != want)
            assert bad.size == 0, f"{name} call {i}: {len(bad)} bytes differ, first at {bad[0]}"
            outputs.append(want)
    assert not np.array_equal(outputs[2], outputs[3])  # same Q, K, V; P of seed 0 vs seed 3
    np.testing.assert_array_equal(outputs[2], outputs[4])


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_golden_equals_the_compiled_variants_golden(name: str) -> None:
    """golden(runtime, P = pack_params(scales)) is the compiled variant's golden for the same
    scales, bit for bit, and the float references agree."""
    runtime = mha(RUNTIME[name])
    for seed in range(6):
        scales = layer_scales(seed)
        compiled = spec_from_params("mha", {**RUNTIME[name], **scales})
        x = compiled.random_inputs(seed)
        p = runtime.pack_params(**scales)
        np.testing.assert_array_equal(runtime.golden([*x, p])[0], compiled.golden(x)[0])
        diff = runtime.reference([*x, p])[0].astype(int) - compiled.reference(x)[0]
        assert np.abs(diff).max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000
        assert [a.tobytes() for a in runtime.random_inputs(seed)] == \
            [a.tobytes() for a in [*x, p]]


def test_seeds_draw_varied_constants_within_the_accuracy_targets() -> None:
    spec = mha(TINY)
    consts = {tuple(spec.unpack_params(spec.random_inputs(s)[3]).values())[:3]
              for s in range(8)}
    assert len(consts) == 8
    for s in range(4):
        assert spec.accuracy_problems(spec.random_inputs(s)) == []


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_host_core_equals_golden_on_many_seeds(host_builds: dict[str, BuildResult],
                                               name: str) -> None:
    spec = mha(RUNTIME[name])
    rng = np.random.default_rng(7)
    cases = [(f"seed{s}", spec.random_inputs(s)) for s in range(24)] + spec.edge_inputs()
    for s in range(8):
        x = activations(spec, "heavy", s, layer_scales(s))
        cases.append((f"hand{s}", [*x, hand_packed(spec, int(rng.integers(1 << 14, 1 << 15)),
                                                   int(rng.integers(12, 30)),
                                                   int(rng.integers(1, 1 << 23)))]))
    for case, inputs in cases:
        got = run_host_core(spec, host_builds[name], inputs)
        want = spec.golden(inputs)[0]
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{name} {case}: {len(bad)} bytes differ, first at {bad[0]}"


def test_rendered_runtime_designs_pass_the_static_checks() -> None:
    """P adds a sequence argument, one transfer and a wait per column, one state triple per
    core: the checks (arguments, coverage, BDs, memory plan = design) pass on each."""
    for params in (TINY, CAUSAL, {"seq_q": "256", "seq_k": "320", "heads": "8", "tq": "16",
                                  "columns": "8", "rows": "4", "device": "npu2",
                                  "fifo_depth": "1"}):
        spec = mha(params)
        passed = check_design(spec, render(spec).files["aie.mlir"])
        assert "5 sequence arguments match the host buffers in order" in passed


def test_workload_counts_what_the_emulator_moves(host_builds: dict[str, BuildResult]) -> None:
    """The cost model's bytes per shim channel (P included) and transfers are the emulator's."""
    spec = mha(CAUSAL)
    design, buffers, stats = emulate_once(spec, host_builds["causal"])
    work = spec.workload()
    assert work.shim_bytes == emulated_shim_bytes(design)
    assert stats["transfers"] == work.bds == mha(CAUSAL, runtime=False).n_transfers + 2
    np.testing.assert_array_equal(buffers[4], spec.golden(buffers[:4])[0])


def test_compiled_variant_is_unchanged_by_the_parameter() -> None:
    compiled = spec_from_params("mha", TINY)
    assert compiled.variant == spec_from_params("mha", {**TINY, "runtime_params": "0"}).variant
    assert [b.name for b in compiled.buffers()] == ["q", "k", "v", "o"]
    assert [b.name for b in mha(TINY).buffers()] == ["q", "k", "v", "P", "o"]
    assert "mha_params" not in compiled.CORE_SYMBOLS
    assert "scale" not in mha(TINY).variant


def test_a_manifests_params_rebuild_the_spec() -> None:
    """The manifest records every parameter, the scales at their defaults: accepted."""
    spec = mha(CAUSAL)
    assert spec_from_params("mha", spec.params).variant == spec.variant


@pytest.mark.parametrize("name", SCALES)
def test_an_explicit_scale_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(SpecError) as e:
        spec_from_params("mha", {**TINY, "runtime_params": "1", name: "0.05"})
    assert str(e.value) == (f"{name} is a per-call value with runtime_params=1: pass it in the "
                            "P input (see spec.pack_params)")


GOOD = {"q_scale": 0.03, "k_scale": 0.03, "v_scale": 0.03, "o_scale": 0.01}


@pytest.mark.parametrize(("values", "message"), [
    ({**GOOD, "q_scale": 0.0}, "q_scale 0.0 must be positive and finite"),
    ({**GOOD, "o_scale": -0.01}, "o_scale -0.01 must be positive and finite"),
    ({**GOOD, "k_scale": math.nan}, "k_scale nan must be positive and finite"),
    ({**GOOD, "v_scale": "big"}, "v_scale 'big' is not a number"),
    ({**GOOD, "v_scale": 1.0, "o_scale": 1e-3}, "output multiplier 65536000 does not fit"),
    ({**GOOD, "v_scale": 1e-7, "o_scale": 1.0}, "output multiplier 0 does not fit"),
    ({**GOOD, "q_scale": 1e-12, "k_scale": 1e-12}, "logit shift of 88, outside 1..62"),
    ({**GOOD, "q_scale": 1e3, "k_scale": 1e3}, "logit shift of -12, outside 1..62"),
    ({k: v for k, v in GOOD.items() if k != "v_scale"}, "missing value 'v_scale'"),
    ({**GOOD, "bias": 1.0}, "unknown value 'bias'"),
])
def test_pack_params_refuses_bad_values_in_one_line(values: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(SpecError) as e:
        mha(TINY).pack_params(**values)  # type: ignore[arg-type]
    assert message in str(e.value) and "\n" not in str(e.value)


def test_pack_params_needs_the_runtime_variant() -> None:
    with pytest.raises(SpecError, match="pack_params needs runtime_params=1"):
        mha(TINY, runtime=False).pack_params(**GOOD)


@pytest.mark.parametrize(("p", "message"), [
    (np.zeros(512, dtype=np.int8), "logit multiplier 0 is outside"),
    (np.zeros(64, dtype=np.int8), "params input P has 64 bytes, this variant takes 512"),
    (mha(TINY).pack_params(**{"q_scale": 0.03, "k_scale": 0.03, "v_scale": 0.03,
                              "o_scale": 0.01}).astype(np.int16),
     r"params input P is int16, this variant takes int8 \(512 bytes\)"),
    (mha(TINY).pack_params(**{"q_scale": 0.03, "k_scale": 0.03, "v_scale": 0.03,
                              "o_scale": 0.01}).view(np.uint8),
     r"params input P is uint8, this variant takes int8"),
])
def test_golden_refuses_a_p_the_core_cannot_use(p: np.ndarray, message: str) -> None:
    spec = mha(TINY)
    q, k, v = spec.random_inputs(0)[:3]
    with pytest.raises(SpecError, match=message) as e:
        spec.golden([q, k, v, p])
    assert "\n" not in str(e.value)


def test_p_shift_and_output_multiplier_are_range_checked() -> None:
    spec = mha(TINY)
    x = spec.random_inputs(0)[:3]
    for args, message in (((1 << 14, 0, 100), "logit shift 0"),
                          ((1 << 14, 20, 1 << 23), "output multiplier 8388608")):
        with pytest.raises(SpecError, match=message):
            spec.golden([*x, hand_packed(spec, *args)])

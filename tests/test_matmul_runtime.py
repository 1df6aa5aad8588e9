"""matmul runtime_params=1: one build, many layers. The per-column records ride as B's last k-tile;
the emulated design, the host core and the golden model agree on every value set, and the
golden model equals the compiled variant's for the same values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from codegen.checks import check_design, read_design
from codegen.kernels import spec_from_params
from codegen.kernels.matmul import REC_ROWS, MatmulSpec
from codegen.pipeline import build
from codegen.render import DESIGN_NAME, render
from codegen.spec import SpecError
from runtime.kernel import NpuKernel
from tests.test_cost import design_shim_bytes
from tests.test_matmul import run_tiled_host_core

# 2 x 2 cores, 2 k-tiles of weights plus the record tile per output tile.
SMALL = {"M": "16", "K": "32", "N": "32", "tm": "8", "tk": "16", "tn": "16", "rows": "2",
         "columns": "2", "device": "npu1_2col", "runtime_params": "1"}
SEEDS = 24


def _spec(params: dict[str, str]) -> MatmulSpec:
    spec = spec_from_params("matmul", params)
    assert isinstance(spec, MatmulSpec)
    return spec


def _values(spec: MatmulSpec, seed: int, spread: str = "wide") -> dict[str, object]:
    """One layer's values: per-column scales inside one binade (every block column shares a
    shift) or across several, a bias, and a few columns whose shift passes 62 when asked."""
    rng = np.random.default_rng(seed)
    lo, hi = (0.126, 0.246) if spread == "one-binade" else (0.02, 0.3)
    scales = rng.uniform(lo, hi, spec.N) / 127
    if spread == "underflow":
        scales[3], scales[spec.N - 2] = 1e-25, 1e-17  # mult 0 (a zero column), a few bits
    a_scale = 4.0 / 127 * 2.0 ** rng.uniform(-1, 1)
    c_scale = 2.0 / 127 * 2.0 ** rng.uniform(-1, 1) * np.sqrt(spec.K / 8)
    if spread == "one-binade":  # a_scale/c_scale a power of 2 keeps the scales in one binade
        c_scale = a_scale * 2.0 ** round(np.log2(c_scale / a_scale))
    return {"b": rng.integers(-128, 128, (spec.K, spec.N), dtype=np.int8), "b_scales": scales,
            "a_scale": a_scale, "c_scale": c_scale, "bias": rng.integers(-20000, 20000, spec.N)}


def _layer(spec: MatmulSpec, seed: int, spread: str = "wide") -> list[np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    a = rng.integers(-128, 128, (spec.M, spec.K), dtype=np.int8)
    return [a, spec.pack_params(**_values(spec, seed, spread))]


def _emulate(spec: MatmulSpec, root: Path, layers: list[list[np.ndarray]]) -> None:
    result = build(spec, root, target="emu")
    assert result.manifest.core_build["path"] == spec.core_path
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        for k, inputs in enumerate(layers):
            want = spec.golden(inputs)[0]
            np.testing.assert_array_equal(kernel(*inputs)[0], want,
                                          err_msg=f"{spec.variant} layer {k}")
            assert len(np.unique(want)) > 16  # neither constant nor saturated


def test_one_build_serves_layers_with_different_values(tmp_path: Path) -> None:
    spec = _spec(SMALL)
    layers = [spec.random_inputs(0), spec.random_inputs(1), _layer(spec, 2, "underflow")]
    assert not np.array_equal(layers[0][1][spec.K:], layers[1][1][spec.K:])
    _emulate(spec, tmp_path, layers)


@pytest.mark.parametrize("device", ["npu1", "npu2"])
def test_vector_path_one_build_serves_layers(device: str, tmp_path: Path) -> None:
    """The vector requantisation (a shared shift per block column) and its per-element fallback,
    both reading the records; npu2's 8x8x8 blocks."""
    params = {**SMALL, "path": "vector"}
    if device == "npu2":
        params.update({"device": "npu2_2col", "tm": "16", "M": "32", "rows": "2"})
    spec = _spec(params)
    layers = [_layer(spec, 3, "one-binade"), _layer(spec, 4, "wide"), spec.random_inputs(5)]
    shifts = spec.decode_params(layers[0][1])[2]
    assert len(set(shifts)) == 1 and len(set(spec.decode_params(layers[1][1])[2])) > 1
    _emulate(spec, tmp_path, layers)


@pytest.mark.parametrize("seed", range(4))
def test_golden_equals_the_compiled_variant_for_the_same_values(seed: int,
                                                                tmp_path: Path) -> None:
    spec = _spec(SMALL)
    values = _values(spec, seed, "underflow" if seed % 2 else "wide")
    np.save(tmp_path / "scales.npy", values["b_scales"])
    np.save(tmp_path / "bias.npy", values["bias"])
    compiled = _spec({**{k: v for k, v in SMALL.items() if k != "runtime_params"},
                      "a_scale": repr(float(values["a_scale"])),
                      "c_scale": repr(float(values["c_scale"])),
                      "b_scales": str(tmp_path / "scales.npy"),
                      "bias": str(tmp_path / "bias.npy")})
    b = spec.pack_params(**values)
    _, mult, shift, bias = spec.decode_params(b)
    mults, shifts = compiled.requant()
    assert list(mult) == mults and list(shift) == shifts and list(bias) == list(values["bias"])
    if seed % 2:
        assert shift[3] == 62 and mult[3] == 0 and 0 < mult[spec.N - 2] < 1 << 30
    for k in range(3):
        a = np.random.default_rng(seed * 10 + k).integers(-128, 128, (spec.M, spec.K),
                                                          dtype=np.int8)
        want = compiled.golden([a, values["b"]])[0]
        np.testing.assert_array_equal(spec.golden([a, b])[0], want)
        ref = compiled.reference([a, values["b"]])[0]
        assert np.abs(spec.reference([a, b])[0].astype(int) - ref).max() <= 1


@pytest.mark.parametrize("path", ["scalar", "vector"])
def test_host_core_equals_golden_on_many_seeds(path: str, tmp_path: Path) -> None:
    spec = _spec({**SMALL, "K": "64", "N": "64", "tn": "32", "path": path})
    result = build(spec, tmp_path, target="emu")
    lib = result.artifact_dir / result.manifest.host_libraries[spec.object_name]
    cases = [(f"random seed {s}", spec.random_inputs(s)) for s in range(SEEDS)]
    cases += [(f"{spread} seed {s}", _layer(spec, s, spread))
              for s in range(SEEDS) for spread in ("wide", "one-binade", "underflow")]
    cases += spec.edge_inputs()
    for name, (a, b) in cases:
        got = run_tiled_host_core(spec, lib, a, b)
        bad = np.flatnonzero(got != spec.golden([a, b])[0])
        assert bad.size == 0, f"{path} {name}: {bad.size} bytes differ, first at {bad[0]}"


def test_random_layers_meet_the_accuracy_targets() -> None:
    spec = _spec({**SMALL, "K": "256", "tk": "64"})
    for seed in range(6):
        inputs = spec.random_inputs(seed)
        assert spec.accuracy_problems(inputs) == []
        assert np.std(spec.golden(inputs)[0]) > 4


@pytest.mark.parametrize("params", [
    SMALL,
    {**SMALL, "path": "vector", "fifo_depth": "1"},
    {"M": "256", "K": "128", "N": "256", "columns": "2", "device": "npu2", "runtime_params": "1"},
    {"runtime_params": "1"},
])
def test_static_checks_memory_plan_and_cost_account_for_the_record_tile(
        params: dict[str, str]) -> None:
    spec = _spec(params)
    text = render(spec).files[DESIGN_NAME]
    check_design(spec, text)  # raises on any failed check
    compiled = _spec({k: v for k, v in params.items() if k != "runtime_params"})
    for rt, ct in zip(spec.memory_plan(), compiled.memory_plan(), strict=True):
        assert rt.items == [i for i in ct.items if i.kind != "static"]
    design = read_design(text)
    moved = design_shim_bytes(design)
    w = spec.workload()
    assert w.shim_bytes == moved
    assert sum(v for k, v in moved.items() if "@b" in k) == (
        spec.m_blocks * (spec.K + spec.tk) * spec.N)
    assert w.bds == compiled.workload().bds
    assert all(w.scalar_cycles[k] > v for k, v in compiled.workload().scalar_cycles.items())


def _one_line(exc: pytest.ExceptionInfo[SpecError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("name,value", [
    ("a_scale", "0.05"), ("b_scale", "0.001"), ("c_scale", "0.02"), ("b_scales", "s.npy"),
    ("bias", "b.npy")])
def test_a_value_parameter_is_refused_with_runtime_params(name: str, value: str) -> None:
    with pytest.raises(SpecError) as exc:
        _spec({**SMALL, name: value})
    assert _one_line(exc) == (f"{name} is a per-call value with runtime_params=1: pass it in the "
                              "B input (see spec.pack_params)")


def test_a_tile_depth_below_the_record_rows_is_refused() -> None:
    with pytest.raises(SpecError) as exc:
        _spec({**SMALL, "tk": "8"})
    assert _one_line(exc) == (f"tk 8 cannot hold runtime_params=1's {REC_ROWS} record rows "
                              "(B's last k-tile); use tk 16 (it divides K 32)")


@pytest.mark.parametrize("K,fix", [
    ("24", "use tk 24 (it divides K 24)"),  # 16 does not divide 24
    ("8", "no tk >= 16 dividing K 8 makes a valid variant: pad K to 16 and use tk 16"),
    ("296", "no tk >= 16 dividing K 296 makes a valid variant: pad K to 304 and use tk 16"),
])
def test_the_named_tile_depth_divides_k_or_k_is_padded(K: str, fix: str) -> None:
    """The tk a refusal names divides K (tk must), or K is padded; either way it builds."""
    with pytest.raises(SpecError) as exc:
        _spec({**SMALL, "tk": "8", "K": K})
    assert _one_line(exc).endswith(f"(B's last k-tile); {fix}")
    tk = fix.split("use tk ")[1].split()[0]
    padded = fix.split("pad K to ")[1].split()[0] if "pad K" in fix else K
    _spec({**SMALL, "tk": tk, "K": padded})


@pytest.mark.parametrize("change,message", [
    ({"b_scales": "zero"}, "pack_params b_scales[5] 0.0 must be a positive finite number"),
    ({"a_scale": -1.0}, "pack_params a_scale -1.0 must be a positive finite number"),
    ({"c_scale": float("inf")}, "pack_params c_scale inf must be a positive finite number"),
    ({"bias": "big"}, "pack_params bias[7] 2147483648 is outside int32"),
    ({"bias": "half"}, "pack_params bias[0] 0.5 is not a whole number"),
    ({"bias": "short"}, "pack_params bias must be 32 integers (shape [32])"),
    ({"b_scales": "short"}, "pack_params b_scales must have shape [32], not [31]"),
    ({"b": "wide"}, "pack_params b must be int8 [32, 32], not int8 [32, 33]"),
    ({"b": "int16"}, "pack_params b must be int8 [32, 32], not int16 [32, 32]"),
    ({"a_scale": 1e15}, "pack_params: a_scale·b_scales[0]/c_scale gives a shift of"),
    ({"b_scales": "tiny"}, "pack_params: every column's a_scale·b_scales/c_scale is below 2^-63"),
])
def test_pack_params_refuses_bad_values(change: dict[str, object], message: str) -> None:
    spec = _spec(SMALL)
    values = _values(spec, 0)
    n = spec.N
    edits: dict[str, object] = {
        "zero": np.where(np.arange(n) == 5, 0.0, values["b_scales"]),
        "big": np.where(np.arange(n) == 7, 1 << 31, 0),
        "half": np.full(n, 0.5),
        "short": np.ones(n - 1),
        "wide": np.zeros((spec.K, n + 1), np.int8),
        "int16": np.zeros((spec.K, n), np.int16),
        "tiny": np.full(n, 1e-40),
    }
    for key, v in change.items():
        values[key] = edits[v] if isinstance(v, str) else v
    with pytest.raises(SpecError) as exc:
        spec.pack_params(**values)
    assert message in _one_line(exc)


def test_pack_params_refuses_unknown_and_missing_values() -> None:
    spec = _spec(SMALL)
    values = _values(spec, 0)
    with pytest.raises(SpecError) as exc:
        spec.pack_params(**values, scale=1.0)
    assert _one_line(exc).startswith("pack_params: unknown value 'scale'; matmul takes b, ")
    del values["c_scale"]
    with pytest.raises(SpecError, match="pack_params: missing value 'c_scale'"):
        spec.pack_params(**values)


def test_a_record_pack_params_cannot_make_is_refused_by_the_golden_model() -> None:
    spec = _spec(SMALL)
    a, b = spec.random_inputs(0)
    b = b.copy()
    b[spec.K + 8, 4] = 0  # column 4's shift
    with pytest.raises(SpecError, match=re.escape("B's record of column 4 (rows 32..40) has "
                                                  "multiplier")):
        spec.golden([a, b])


def test_compiled_variant_has_no_pack_params_and_runtime_has_no_static_tables() -> None:
    with pytest.raises(SpecError, match="pack_params builds the B input of runtime_params=1"):
        _spec({}).pack_params(b=np.zeros((64, 64), np.int8), b_scales=np.ones(64), a_scale=1.0,
                              c_scale=1.0)
    spec = _spec(SMALL)
    assert spec.core_data() == [] and spec.buffers()[1].shape == (48, 32)
    header = render(spec).files["matmul_params.h"]
    assert "mm_mult" not in header and "#define MM_RUNTIME_PARAMS 1" in header

"""runtime_params=1 for GELU and layernorm: one build, its per-layer values a second input.

One emulated build per kernel runs on several value sets and equals the golden model on each;
the golden model of a packed params input equals the compiled variant's golden for the same
values; the host core equals the golden model on many seeds; bad values are refused in a line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codegen.checks import check_design
from codegen.hostcore import HostCore
from codegen.kernels import spec_from_params
from codegen.kernels.gelu import GeluSpec
from codegen.kernels.layernorm import LayerNormSpec
from codegen.pipeline import BuildResult, build
from codegen.render import render
from codegen.spec import SpecError
from codegen.stream import StreamSpec
from codegen.testhw import verify
from runtime.kernel import NpuKernel

SHAPES: dict[str, dict[str, str]] = {
    "gelu": {"length": "1024", "max_tile": "256"},  # 4 tiles share one table
    "layernorm": {"rows": "8", "d": "64", "tile_rows": "2"},  # 4 tiles share one params element
}
SEEDS = 24


def runtime_spec(kernel: str) -> StreamSpec:
    spec = spec_from_params(kernel, {**SHAPES[kernel], "runtime_params": "1"})
    assert isinstance(spec, StreamSpec)
    return spec


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    root = tmp_path_factory.mktemp("rt-build")
    return {k: build(runtime_spec(k), root, target="emu") for k in SHAPES}


def _ln_values(spec: LayerNormSpec, seed: int) -> dict[str, Any]:
    """Values away from random_values' ranges: wider gamma, a shifted beta, eps 0."""
    rng = np.random.default_rng(seed)
    return {"in_scale": 0.02, "out_scale": 0.05, "gamma": rng.normal(0.5, 1.0, spec.d),
            "beta": rng.normal(0.3, 0.5, spec.d), "eps": 0.0}


def _value_sets(spec: StreamSpec) -> list[list[np.ndarray]]:
    """Inputs of three different value sets (two from seeds, one explicit), then the first
    again: each invocation must take its own params element, not keep the last one."""
    cases = [spec.random_inputs(0), spec.random_inputs(1)]
    x = cases[0][0]
    if isinstance(spec, LayerNormSpec):
        cases.append([x, spec.pack_params(**_ln_values(spec, 3))])
    else:
        cases.append([x, spec.pack_params(in_scale=0.02, out_scale=0.05)])
    return [*cases, cases[0]]


@pytest.mark.parametrize("kernel", sorted(SHAPES))
def test_one_emulated_build_serves_every_value_set(kernel: str,
                                                   builds: dict[str, BuildResult]) -> None:
    spec = runtime_spec(kernel)
    cases = _value_sets(spec) + [inputs for _, inputs in spec.edge_inputs()]
    outputs = []
    with NpuKernel.load(builds[kernel].artifact_dir, backend="emu") as npu:
        for k, inputs in enumerate(cases):
            (got,) = npu(*inputs)
            (want,) = spec.golden(inputs)
            bad = np.flatnonzero(got.ravel() != want.ravel())
            assert bad.size == 0, f"{kernel} case {k}: {bad.size} bytes differ, first at {bad[0]}"
            outputs.append(got)
    # Same x, other values: another output (the params input is really read).
    assert not np.array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize("kernel", sorted(SHAPES))
def test_design_passes_the_static_checks(kernel: str) -> None:
    spec = runtime_spec(kernel)
    passed = check_design(spec, render(spec).files["aie.mlir"])
    assert "3 sequence arguments match the host buffers in order" in passed
    assert [b.name for b in spec.buffers()] == ["x", spec.params_name, "y"]
    assert [b.arg_index for b in spec.buffers()] == [3, 4, 5]
    items = {i.name: i for i in spec.memory_plan()[0].items}
    assert items["paramq buffer"].total == spec.params_bytes
    assert not [i for i in items.values() if i.kind == "static"]  # the tables left the core


def _compiled(kernel: str, values: dict[str, Any], tmp: Path) -> StreamSpec:
    """The runtime_params=0 variant of the same shape with `values` compiled in."""
    params: dict[str, Any] = dict(SHAPES[kernel])
    for name, value in values.items():
        if isinstance(value, np.ndarray):
            path = tmp / f"{name}.npy"
            np.save(path, value)
            value = str(path)
        params[name] = value
    spec = spec_from_params(kernel, params)
    assert isinstance(spec, StreamSpec)
    return spec


@pytest.mark.parametrize("seed", range(6))
def test_layernorm_golden_of_packed_values_equals_compiled(seed: int, tmp_path: Path) -> None:
    spec = runtime_spec("layernorm")
    assert isinstance(spec, LayerNormSpec)
    values = spec.random_values(seed) if seed % 2 else _ln_values(spec, seed)
    compiled = _compiled("layernorm", values, tmp_path)
    for family in range(3):
        x = compiled.random_inputs(100 * seed + family)[0]
        if family == 2:
            x = np.repeat(x[:: spec.d], spec.d)  # constant rows: eps alone keeps s > 0
        runtime_out = spec.golden([x, spec.pack_params(**values)])[0]
        assert np.array_equal(runtime_out, compiled.golden([x])[0])


@pytest.mark.parametrize("seed", range(6))
def test_gelu_golden_of_packed_values_equals_compiled(seed: int, tmp_path: Path) -> None:
    spec = runtime_spec("gelu")
    assert isinstance(spec, GeluSpec)
    in_scale, out_scale = spec.random_scales(seed)
    compiled = _compiled("gelu", {"in_scale": in_scale, "out_scale": out_scale}, tmp_path)
    x = np.random.default_rng(seed).integers(-128, 128, spec.length, dtype=np.int8)
    table = spec.pack_params(in_scale=in_scale, out_scale=out_scale)
    assert np.array_equal(spec.golden([x, table])[0], compiled.golden([x])[0])
    assert np.array_equal(spec.reference([x, table])[0], compiled.reference([x])[0])


@pytest.mark.parametrize("kernel", sorted(SHAPES))
def test_seeded_values_meet_the_accuracy_targets(kernel: str) -> None:
    spec = runtime_spec(kernel)
    tables = {spec.random_inputs(s)[1].tobytes() for s in range(6)}
    assert len(tables) == 6  # the seeds cover different values
    for seed in range(6):
        assert spec.accuracy_problems(spec.random_inputs(seed)) == []


def _run_core(spec: StreamSpec, core: HostCore, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The core loop of one invocation: every tile with the same params element."""
    out = np.full((spec.n_tiles, spec.out_tile_bytes), 99, dtype=np.int8)
    tiles = np.asarray(x).reshape(spec.n_tiles, spec.in_tile_bytes)
    params = np.ascontiguousarray(p)
    for t in range(spec.n_tiles):
        core.call(spec.CORE_SYMBOLS[0], np.ascontiguousarray(tiles[t]), out[t], params)
    return out.reshape(-1)


def _families(spec: StreamSpec, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(2000 + seed)
    n = spec.buffers()[0].shape
    yield "realistic", spec.random_inputs(seed)[0]
    yield "uniform", rng.integers(-128, 128, n, dtype=np.int8)
    yield "small", rng.integers(-3, 4, n, dtype=np.int8)


@pytest.mark.parametrize("kernel", sorted(SHAPES))
def test_host_core_equals_golden_on_many_seeds(kernel: str,
                                               builds: dict[str, BuildResult]) -> None:
    spec = runtime_spec(kernel)
    result = builds[kernel]
    core = HostCore(result.artifact_dir / result.manifest.host_libraries[spec.object_name])
    for seed in range(SEEDS):
        p = spec.random_inputs(seed)[1]
        for family, x in _families(spec, seed):
            got = _run_core(spec, core, x, p)
            want = spec.golden([x, p])[0]
            bad = np.flatnonzero(got != want)
            assert bad.size == 0, (f"{kernel} seed {seed} {family}: {bad.size} bytes differ, "
                                   f"first at {bad[0]}: core {got[bad[0]]}, golden {want[bad[0]]}")


def _refused(call: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


LN_GOOD: dict[str, Any] = {"in_scale": 0.03, "out_scale": 0.03, "gamma": 1.0, "beta": 0.0,
                           "eps": 1e-5}


@pytest.mark.parametrize(("change", "match"), [
    ({"in_scale": 0.0}, "in_scale 0.0 must be positive"),
    ({"out_scale": float("nan")}, "out_scale=nan is not a finite number"),
    ({"out_scale": "wide"}, "out_scale 'wide' is not a number"),
    ({"gamma": np.ones(63)}, r"gamma has shape \(63,\), the build takes \(64,\)"),
    ({"beta": [0.0, np.inf] * 32}, "beta has a value that is not finite at index 1"),
    ({"gamma": 6e5 * 0.03}, "the int32 gamma multiplier overflows"),
    ({"beta": 2e6 * 0.03}, "the int64 beta term overflows"),
    ({"eps": 1.0, "in_scale": 1e-7}, "the variance term overflows 64 bits; raise in_scale"),
    ({"eps": 2.0}, "eps 2.0 is outside 0..1"),
    ({"eps": None}, "missing value 'eps'"),
    ({"gain": 1}, "unknown value 'gain'"),
])
def test_layernorm_pack_params_refusals(change: dict[str, Any], match: str) -> None:
    spec = runtime_spec("layernorm")
    values = {k: v for k, v in {**LN_GOOD, **change}.items() if v is not None}
    _refused(lambda: spec.pack_params(**values), match)


def test_layernorm_gamma_rounding_to_2_31_is_refused_packed_and_compiled() -> None:
    """|gamma|/out_scale just under 2^19 passes a check on the float but G = round(· 2^12)
    is 2^31, which int32 wraps to -2^31: the range is checked on the rounded G."""
    gamma = 2.0**19 - 2.0**-14  # G = round(2^31 - 0.25) = 2^31
    spec = runtime_spec("layernorm")
    values = {**LN_GOOD, "out_scale": 1.0, "gamma": gamma}
    _refused(lambda: spec.pack_params(**values), "the int32 gamma multiplier overflows")
    _refused(lambda: spec_from_params("layernorm", {**SHAPES["layernorm"], "out_scale": "1.0",
                                                    "gamma": repr(gamma)}),
             "the int32 gamma multiplier overflows")
    ok = spec.pack_params(**{**values, "gamma": 2.0**19 - 2.0**-12})  # G = 2^31 - 1
    assert int(ok[2]) == (1 << 31) - 1


@pytest.mark.parametrize(("values", "match"), [
    ({"in_scale": 0.0, "out_scale": 0.1}, "in_scale 0.0 must be a positive finite number"),
    ({"in_scale": 0.1, "out_scale": float("inf")}, "out_scale inf must be a positive finite"),
    ({"in_scale": 0.1}, "pack_params: missing value 'out_scale'; gelu takes in_scale, out_scale"),
])
def test_gelu_pack_params_refusals(values: dict[str, Any], match: str) -> None:
    _refused(lambda: runtime_spec("gelu").pack_params(**values), match)


def test_golden_refuses_a_params_input_pack_params_cannot_make() -> None:
    ln = runtime_spec("layernorm")
    x, p = ln.random_inputs(0)
    zero_eps = p.copy()
    zero_eps[:2] = 0
    _refused(lambda: ln.golden([x, zero_eps]), "eps term 0 is outside")
    _refused(lambda: ln.golden([x, p.astype(np.int64)]), "make it with spec.pack_params")
    huge_beta = p.copy()
    huge_beta[-1] = 1 << 20  # the high word of the last beta term: 2^52
    _refused(lambda: ln.golden([x, huge_beta]), r"a beta term reaches 2\^48")
    gelu = runtime_spec("gelu")
    _refused(lambda: gelu.golden([gelu.random_inputs(0)[0], np.zeros(255, np.int8)]),
             r"int8 x \(255,\) but the build takes int8 x \(256,\)")
    _refused(lambda: gelu.reference([gelu.random_inputs(0)[0], np.zeros(256, np.int8)]),
             "a table alone does not determine its scales")


def test_gelu_reference_takes_the_scales_a_table_does_not_determine() -> None:
    """The float reference of a runtime_params=1 build: explicit scales for a table packed
    anywhere (checked against it), the packing spec's own scales otherwise, never a guess."""
    gelu = runtime_spec("gelu")
    x = gelu.random_inputs(0)[0]
    other = runtime_spec("gelu").pack_params(in_scale=0.05, out_scale=0.04)
    compiled = spec_from_params("gelu", {**SHAPES["gelu"], "in_scale": "0.05",
                                         "out_scale": "0.04"})
    want = compiled.reference([x])[0]
    _refused(lambda: gelu.reference([x, other]), "pass in_scale= and out_scale=")
    np.testing.assert_array_equal(gelu.reference([x, other], in_scale=0.05, out_scale=0.04)[0],
                                  want)
    _refused(lambda: gelu.reference([x, other], in_scale=0.05, out_scale=0.05),
             "in_scale 0.05 and out_scale 0.05 do not make this table input")
    _refused(lambda: gelu.reference([x, other], in_scale=0.05), "pass both")
    _refused(lambda: compiled.reference([x], in_scale=0.05, out_scale=0.04),
             "compiled into this variant")
    # in_scale 1e-9 and 2e-9 both give the all-zero table: which pair is ambiguous
    tiny = gelu.pack_params(in_scale=1e-9, out_scale=1.0)
    assert np.array_equal(tiny, gelu.pack_params(in_scale=2e-9, out_scale=1.0))
    _refused(lambda: gelu.reference([x, tiny]), "two scale pairs packed here make this table")
    assert not gelu.reference([x, tiny], in_scale=2e-9, out_scale=1.0)[0].any()
    assert np.array_equal(gelu.reference([x, gelu.pack_params(in_scale=0.05, out_scale=0.04)])[0],
                          want)  # a table this spec packed: its own scales


def test_gelu_remembers_only_its_latest_packed_tables() -> None:
    from codegen.kernels.gelu import PACKED_KEPT

    gelu = runtime_spec("gelu")
    x = gelu.random_inputs(0)[0]
    tables = [gelu.pack_params(in_scale=0.03 + 0.001 * i, out_scale=0.05)
              for i in range(PACKED_KEPT + 1)]
    assert len({t.tobytes() for t in tables}) == PACKED_KEPT + 1
    _refused(lambda: gelu.reference([x, tables[0]]), "did not pack it lately")
    gelu.reference([x, tables[1]])  # the oldest kept
    gelu.reference([x, tables[-1]])


@pytest.mark.parametrize(("kernel", "name", "value", "buffer"), [
    ("layernorm", "gamma", "0.5", "p"),
    ("layernorm", "in_scale", "0.1", "p"),
    ("layernorm", "eps", "0.001", "p"),
    ("gelu", "out_scale", "0.2", "t"),
])
def test_a_value_parameter_with_runtime_params_is_refused(kernel: str, name: str, value: str,
                                                          buffer: str) -> None:
    params = {**SHAPES[kernel], "runtime_params": "1", name: value}
    _refused(lambda: spec_from_params(kernel, params),
             f"^{name} is a per-call value with runtime_params=1: pass it in the {buffer} "
             r"input \(see spec.pack_params\)$")


@pytest.mark.parametrize("kernel", sorted(SHAPES))
def test_runtime_params_zero_is_the_compiled_variant(kernel: str) -> None:
    """The default names no new variant and keeps two buffers; the manifest's full parameter
    set (defaults included) of a runtime build reloads."""
    assert spec_from_params(kernel, {"runtime_params": "0"}).variant == "default"
    assert len(spec_from_params(kernel, {}).buffers()) == 2
    spec = runtime_spec(kernel)
    assert spec_from_params(kernel, spec.params).variant == spec.variant
    assert "runtime_params1" in spec.variant


@pytest.mark.parametrize("kernel", sorted(SHAPES))
def test_test_hw_verifies_a_runtime_build(kernel: str, builds: dict[str, BuildResult]) -> None:
    """`invoke test-hw`'s check (seeded value sets, edge inputs, accuracy) works unchanged."""
    result = verify(builds[kernel].artifact_dir, "emu", seeds=2, iterations=0)
    assert result.passed, result.reason()
    assert not result.flags


def test_test_hw_checks_the_accuracy_of_a_runtime_gelu_past_the_kept_tables(
        builds: dict[str, BuildResult], monkeypatch: pytest.MonkeyPatch) -> None:
    """test-hw packs every seed's table with one spec, then asks the float reference of seed
    0's: it is still known with more seeds than the spec keeps tables (here 2)."""
    monkeypatch.setattr("codegen.kernels.gelu.PACKED_KEPT", 2)
    result = verify(builds["gelu"].artifact_dir, "emu", seeds=4, iterations=0)
    assert result.passed and not result.error and not result.flags, result

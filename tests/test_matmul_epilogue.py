"""matmul epilogue=gelu: GELU fused into the output step, C = T[requant(acc + bias) + 128], with
the layer's table in B's record tile. The fused result must equal matmul (epilogue none)
followed by the gelu kernel with that table, bit for bit: emulated, host core and golden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.checks import check_design
from codegen.kernels import spec_from_params
from codegen.kernels.gelu import GeluSpec
from codegen.kernels.matmul import TABLE_SIZE, MatmulSpec, gelu_table
from codegen.pipeline import build
from codegen.render import DESIGN_NAME, render
from codegen.spec import SpecError
from runtime.kernel import NpuKernel
from tests.test_matmul import run_tiled_host_core
from tests.test_matmul_runtime import _one_line

# 2 x 2 cores, 2 k-tiles of weights, then the record tile: (24 - 16) · 32 = 256 table bytes.
SMALL = {"M": "16", "K": "48", "N": "64", "tm": "8", "tk": "24", "tn": "32", "rows": "2",
         "columns": "2", "device": "npu1_2col", "runtime_params": "1", "epilogue": "gelu"}
SEEDS = 24


def _spec(params: dict[str, str]) -> MatmulSpec:
    spec = spec_from_params("matmul", params)
    assert isinstance(spec, MatmulSpec)
    return spec


def _plain(spec: MatmulSpec) -> MatmulSpec:
    return _spec({**{k: str(v) for k, v in spec.params.items()}, "epilogue": "none"})


def _values(spec: MatmulSpec, seed: int) -> dict[str, object]:
    """One layer: per-column scales over several binades, a bias, and a GELU table made for
    the layer's c_scale by the gelu kernel (or, every third seed, arbitrary int8 bytes, so a
    lookup at the wrong entry cannot hide behind GELU's flat negative side)."""
    rng = np.random.default_rng(seed)
    a_scale = 4.0 / 127 * 2.0 ** rng.uniform(-1, 1)
    c_scale = 2.0 / 127 * 2.0 ** rng.uniform(-1, 1) * np.sqrt(spec.K / 8)
    table = (rng.integers(-128, 128, TABLE_SIZE, dtype=np.int8) if seed % 3 == 2
             else gelu_table(c_scale, c_scale * rng.uniform(0.5, 2.0)))
    return {"b": rng.integers(-128, 128, (spec.K, spec.N), dtype=np.int8),
            "b_scales": rng.uniform(0.02, 0.3, spec.N) / 127, "a_scale": a_scale,
            "c_scale": c_scale, "bias": rng.integers(-20000, 20000, spec.N),
            "gelu_table": table}


def _layer(spec: MatmulSpec, seed: int) -> list[np.ndarray]:
    a = np.random.default_rng(100 + seed).integers(-128, 128, (spec.M, spec.K), dtype=np.int8)
    return [a, spec.pack_params(**_values(spec, seed))]


def _chain(spec: MatmulSpec, seed: int) -> np.ndarray:
    """The two-kernel chain's golden: matmul with epilogue none, then the gelu kernel's golden
    model with the same table."""
    values = _values(spec, seed)
    table = values.pop("gelu_table")
    plain = _plain(spec)
    a = _layer(spec, seed)[0]
    pre = plain.golden([a, plain.pack_params(**values)])[0]
    gelu = GeluSpec({"length": pre.size, "runtime_params": 1})
    return gelu.golden([pre.ravel(), table])[0].reshape(pre.shape)


@pytest.mark.parametrize("path", ["scalar", "vector"])
def test_one_build_equals_golden_and_the_two_kernel_chain(path: str, tmp_path: Path) -> None:
    spec = _spec({**SMALL, "path": path})
    seeds = [0, 1, 2]
    layers = [_layer(spec, s) for s in seeds]
    assert len({spec.decode_table(b).tobytes() for _, b in layers}) == 3
    result = build(spec, tmp_path, target="emu")
    assert result.manifest.core_build["path"] == path
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        for seed, inputs in zip(seeds, layers, strict=True):
            want = spec.golden(inputs)[0]
            np.testing.assert_array_equal(want, _chain(spec, seed), err_msg=f"seed {seed}")
            np.testing.assert_array_equal(kernel(*inputs)[0], want,
                                          err_msg=f"{path} layer {seed}")
            assert len(np.unique(want)) > 8  # neither constant nor saturated


def test_golden_equals_the_chain_on_many_seeds_and_tiles() -> None:
    for params in (SMALL, {**SMALL, "tk": "48", "tn": "16", "N": "32", "K": "96"},
                   {**SMALL, "tm": "16", "M": "32", "device": "npu2_2col"}):
        spec = _spec(params)
        for seed in range(12):
            np.testing.assert_array_equal(spec.golden(_layer(spec, seed))[0],
                                          _chain(spec, seed), err_msg=f"{params} seed {seed}")


@pytest.mark.parametrize("path", ["scalar", "vector"])
def test_host_core_equals_golden_on_many_seeds(path: str, tmp_path: Path) -> None:
    spec = _spec({**SMALL, "path": path})
    result = build(spec, tmp_path, target="emu")
    lib = result.artifact_dir / result.manifest.host_libraries[spec.object_name]
    cases = [(f"random seed {s}", spec.random_inputs(s)) for s in range(SEEDS)]
    cases += [(f"layer seed {s}", _layer(spec, s)) for s in range(SEEDS)]
    cases += spec.edge_inputs()
    for name, (a, b) in cases:
        got = run_tiled_host_core(spec, lib, a, b)
        bad = np.flatnonzero(got != spec.golden([a, b])[0])
        assert bad.size == 0, f"{path} {name}: {bad.size} bytes differ, first at {bad[0]}"


def test_random_layers_meet_the_accuracy_targets() -> None:
    spec = _spec({**SMALL, "K": "240"})
    for seed in range(6):
        inputs = spec.random_inputs(seed)
        assert spec.accuracy_problems(inputs) == []
        assert len(np.unique(spec.golden(inputs)[0])) > 8


@pytest.mark.parametrize("params", [SMALL, {**SMALL, "path": "vector", "fifo_depth": "1"},
                                    {"runtime_params": "1", "epilogue": "gelu"}])
def test_static_checks_memory_plan_and_cost(params: dict[str, str]) -> None:
    spec = _spec(params)
    plain = _plain(spec)
    text = render(spec).files[DESIGN_NAME]
    check_design(spec, text)  # raises on any failed check
    assert spec.memory_plan() == plain.memory_plan()
    assert spec.transfers() == plain.transfers()
    header = render(spec).files["matmul_params.h"]
    assert f"#define MM_REC_TABLE {2 * 8 * spec.tn}" in header
    assert "MM_EPILOGUE_GELU" not in render(plain).files["matmul_params.h"]
    w, wp = spec.workload(), plain.workload()
    assert w.shim_bytes == wp.shim_bytes and w.bds == wp.bds
    tile = spec.tm * spec.tn * spec.m_blocks * spec.n_blocks
    per = 2 if spec.core_path == "scalar" else 4
    assert all(w.scalar_cycles[k] == v + per * tile for k, v in wp.scalar_cycles.items())


def test_epilogue_none_renders_as_before() -> None:
    """The default and an explicit epilogue=none render the same files and name the same
    variant; nothing of the table reaches them."""
    for params in ({}, {"runtime_params": "1"}, {"path": "vector", "runtime_params": "1"}):
        base, explicit = _spec(params), _spec({**params, "epilogue": "none"})
        assert base.variant == explicit.variant
        files = render(base).files
        assert files == render(explicit).files
        assert "epilogue" not in files[DESIGN_NAME] and "TABLE" not in files["matmul_params.h"]


@pytest.mark.parametrize("change,message", [
    ({"runtime_params": "0"}, "epilogue gelu needs runtime_params=1 (its table rides in B's "
     "record tile); add -p runtime_params=1"),
    ({"tk": "16", "K": "48"}, "tk 16 x tn 32 cannot hold epilogue=gelu's 256-entry table after "
     "the records (rows 16.. of B's record tile); use tk 24 at tn 32 (it divides K 48)"),
    # 48 would hold the table at tn 8 but does not divide K 64
    ({"tk": "32", "tn": "8", "K": "64", "N": "32"}, "use tk 64 at tn 8 (it divides K 64)"),
    ({"tk": "16", "tn": "16", "K": "16", "N": "32"}, "no tk >= 32 dividing K 16 makes a valid "
     "variant: pad K to 32 and use tk 32 at tn 16"),
    ({"tk": "8", "K": "16"}, "record rows (B's last k-tile); no tk >= 24 dividing K 16 makes "
     "a valid variant: pad K to 24 and use tk 24"),
    ({"epilogue": "relu"}, "epilogue relu is not one of: none, gelu"),
])
def test_bad_variants_are_refused_in_one_line(change: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError) as exc:
        _spec({**SMALL, **change})
    assert message in _one_line(exc)


def test_least_named_tile_fits() -> None:
    for tn in (8, 16, 32, 64):
        with pytest.raises(SpecError) as exc:
            _spec({**SMALL, "tk": "16", "K": "48", "tn": str(tn), "N": str(2 * tn)})
        named = _one_line(exc).split("use tk ")[1].split()[0]
        assert 48 % int(named) == 0
        _spec({**SMALL, "tk": named, "K": "48", "tn": str(tn), "N": str(2 * tn)})


@pytest.mark.parametrize("edit,message", [
    ("missing", "pack_params: missing value 'gelu_table'; matmul takes b, b_scales, a_scale, "
     "c_scale, bias, gelu_table"),
    ("int16", "pack_params gelu_table must be int8 [256] (the gelu kernel's spec.pack_params "
     "makes it), not int16 [256]"),
    ("short", "pack_params gelu_table must be int8 [256] (the gelu kernel's spec.pack_params "
     "makes it), not int8 [255]"),
    ("list", "pack_params gelu_table must be int8 [256]"),
])
def test_pack_params_refuses_a_missing_or_bad_table(edit: str, message: str) -> None:
    spec = _spec(SMALL)
    values = _values(spec, 0)
    table = values.pop("gelu_table")
    assert isinstance(table, np.ndarray)
    if edit != "missing":
        values["gelu_table"] = {"int16": table.astype(np.int16), "short": table[:255],
                                "list": [0.5] * 256}[edit]
    with pytest.raises(SpecError) as exc:
        spec.pack_params(**values)
    assert message in _one_line(exc)


def test_a_table_without_the_epilogue_and_differing_copies_are_refused() -> None:
    spec = _spec(SMALL)
    values = _values(spec, 0)
    with pytest.raises(SpecError) as exc:
        _plain(spec).pack_params(**values)
    assert _one_line(exc) == ("pack_params: gelu_table is a value of epilogue=gelu; this "
                              "variant has epilogue none (build it with -p epilogue=gelu)")
    a, b = _layer(spec, 0)
    b = b.copy()
    b[spec.K + 16, spec.tn + 3] ^= 1  # one table byte of column block 1
    with pytest.raises(SpecError) as exc:
        spec.golden([a, b])
    assert _one_line(exc).startswith("B's GELU table in column block 1 (columns 32..63) "
                                     "differs from block 0's")


def test_the_table_sits_after_the_records_in_the_blocked_tile() -> None:
    """Independent of decode_table: T[e] is byte 2·s·tn + e of the record tile as the mem tile
    blocks it, [tk/s][tn/t][s][t]; the records' rows 0-8 are untouched."""
    spec = _spec(SMALL)
    values = _values(spec, 1)
    b = spec.pack_params(**values)
    plain = _plain(spec)
    rest = {k: v for k, v in values.items() if k != "gelu_table"}
    np.testing.assert_array_equal(b[:spec.K + 16], plain.pack_params(**rest)[:spec.K + 16])
    tile = b[spec.K:, spec.tn:2 * spec.tn]
    for e in (0, 1, 7, 8, 63, 64, 255):
        row, col = 16 + (e % 64) // 8, (e // 64) * 8 + e % 8  # s = t = 8, tn 32: 4 blocks
        assert tile[row, col] == values["gelu_table"][e]

"""mha with packed_qkv=1: one qkv input [seq, 3·heads·head_dim] read by the DMA strides, the
same results as three inputs q, k, v."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.checks import check_design, read_design
from codegen.kernels import spec_from_params
from codegen.kernels.mha import MhaSpec, activations, dominant_key, layer_scales
from codegen.pipeline import BuildResult, build
from codegen.render import render
from codegen.spec import SpecError
from runtime.kernel import NpuKernel
from tests.test_cost import emulate_once, emulated_shim_bytes
from tests.test_mha import run_host_core

TINY = {"seq_q": "32", "seq_k": "32", "heads": "2", "head_dim": "16", "device": "npu1_1col"}
#: two columns, padded K tiles (36 keys in tiles of 8), reversed blocks
TWO = {"seq_q": "36", "seq_k": "36", "heads": "2", "head_dim": "16", "tq": "4", "tk": "8",
       "rows": "2", "columns": "2", "device": "npu1_2col"}
SHAPES = {"tiny": TINY, "causal": {**TWO, "causal": "1"}, "runtime": {**TWO, "runtime_params": "1"}}


def mha(params: dict[str, str], packed: bool = True) -> MhaSpec:
    spec = spec_from_params("mha", {**params, "packed_qkv": "1" if packed else "0"})
    assert isinstance(spec, MhaSpec)
    return spec


def join(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """qkv as a fused projection writes it: q's columns, then k's, then v's."""
    return np.concatenate([q, k, v], axis=1).astype(np.int8)


def unpacked(spec: MhaSpec, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The packed variant's inputs as the unpacked variant takes them (numpy slices)."""
    w = spec.width
    qkv = inputs[0]
    return [qkv[:, :w].copy(), qkv[:, w : 2 * w].copy(), qkv[:, 2 * w :].copy(), *inputs[1:]]


def cases(spec: MhaSpec) -> list[tuple[str, list[np.ndarray]]]:
    """Seeds, the int8 edges and the realistic families, in the packed layout."""
    p = [spec.random_inputs(0)[1]] if spec.runtime_params else []
    out = [(f"seed{s}", spec.random_inputs(s)) for s in range(4)] + spec.edge_inputs()
    for family in ("heavy", "outlier", "peaky", "flat"):
        out.append((family, [join(*activations(spec, family, 5)), *p]))
    out.append(("dominant", [join(*dominant_key(spec, 3)), *p]))
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], BuildResult]:
    root = tmp_path_factory.mktemp("mha-packed")
    return {(name, packed): build(mha(p, packed), root, target="emu")
            for name, p in SHAPES.items() for packed in (True, False)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_emulated_packed_build_equals_golden_and_the_unpacked_build(
        builds: dict[tuple[str, bool], BuildResult], name: str) -> None:
    """Bit for bit: the packed build's output is its golden model's, and the unpacked build's
    on the same q, k, v (and P); with runtime_params=1, on two value sets."""
    spec = mha(SHAPES[name])
    runs = [spec.random_inputs(s) for s in (0, 1)] + [spec.edge_inputs()[3][1]]
    with NpuKernel.load(builds[(name, True)].artifact_dir, backend="emu") as packed, \
            NpuKernel.load(builds[(name, False)].artifact_dir, backend="emu") as three:
        outputs = []
        for i, inputs in enumerate(runs):
            (got,) = packed(*inputs)
            want = spec.golden(inputs)[0]
            bad = np.argwhere(got.reshape(want.shape) != want)
            assert bad.size == 0, f"{name} run {i}: {len(bad)} bytes differ, first at {bad[0]}"
            (other,) = three(*unpacked(spec, inputs))
            np.testing.assert_array_equal(got.reshape(want.shape), other.reshape(want.shape))
            outputs.append(want)
    assert not np.array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_golden_equals_the_unpacked_golden(name: str) -> None:
    """golden(qkv) = the unpacked variant's golden on qkv's column thirds, bit for bit; the
    float reference likewise, and random_inputs(seed) is the unpacked one's, joined."""
    spec, three = mha(SHAPES[name]), mha(SHAPES[name], packed=False)
    for case, inputs in cases(spec):
        split = unpacked(spec, inputs)
        np.testing.assert_array_equal(spec.golden(inputs)[0], three.golden(split)[0], case)
        np.testing.assert_array_equal(spec.reference(inputs)[0], three.reference(split)[0])
    for seed in range(3):
        x = three.random_inputs(seed)
        assert [a.tobytes() for a in spec.random_inputs(seed)] == \
            [join(*x[:3]).tobytes(), *(a.tobytes() for a in x[3:])]
    # q, k and v are distinct thirds: swapping k and v changes the result
    q, k, v = unpacked(spec, spec.random_inputs(0))[:3]
    rest = spec.random_inputs(0)[1:]
    assert not np.array_equal(spec.golden([join(q, k, v), *rest])[0],
                              spec.golden([join(q, v, k), *rest])[0])


def test_runtime_params_golden_is_the_compiled_packed_variants() -> None:
    runtime = mha(SHAPES["runtime"])
    for seed in range(3):
        scales = layer_scales(seed)
        compiled = mha({**TWO, **{n: str(s) for n, s in scales.items()}})
        x = compiled.random_inputs(seed)
        np.testing.assert_array_equal(runtime.golden([*x, runtime.pack_params(**scales)])[0],
                                      compiled.golden(x)[0])


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_host_core_equals_golden(builds: dict[tuple[str, bool], BuildResult],
                                 name: str) -> None:
    """The core (compiled for the host) on the tiles the packed transfers deliver = golden."""
    spec = mha(SHAPES[name])
    for case, inputs in cases(spec):
        got = run_host_core(spec, builds[(name, True)], unpacked(spec, inputs))
        want = spec.golden(inputs)[0]
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{name} {case}: {len(bad)} bytes differ, first at {bad[0]}"


@pytest.mark.parametrize(("params", "message"), [
    ({**TINY, "seq_k": "40"}, "packed_qkv=1 needs seq_q == seq_k (got 32 and 40): one qkv buffer "
     "holds q, k and v rows of one sequence; use packed_qkv=0 for cross-attention"),
    ({"seq_q": "2001", "seq_k": "2001", "heads": "16", "head_dim": "128", "tk": "16"},
     "the K transfer of pass 0 breaks a shim DMA limit: stride 6100992 of d3 exceeds 1048576 "
     "words (packed_qkv=0 reads with a third of the stride)"),
])
def test_refusals_are_one_line(params: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError) as e:
        mha(params)
    assert str(e.value) == message
    if "DMA" in message:  # three buffers: a third of the stride, within the limit
        mha(params, packed=False)


def test_packed_qkv_takes_only_0_or_1() -> None:
    with pytest.raises(SpecError, match="packed_qkv 2 is not one of: 0, 1"):
        spec_from_params("mha", {**TINY, "packed_qkv": "2"})


def assert_transfers_rendered(spec: MhaSpec, text: str) -> None:
    """The spec's transfers (what validate() checks) are exactly the rendered design's."""
    got = sorted((t.arg, t.offsets, t.sizes, t.strides) for t in read_design(text).sequence
                 if hasattr(t, "strides"))
    args = [b.name for b in spec.buffers()]
    want = sorted((args.index(t.get("arg", "P")), tuple(t["offsets"]), tuple(t["sizes"]),
                   tuple(t["strides"])) for t in spec.transfers())
    assert got == want
    assert len(want) == spec.n_transfers


@pytest.mark.parametrize("params", [*SHAPES.values(), {"seq_q": "24", "seq_k": "40"}])
def test_unpacked_transfers_checked_at_validate_are_the_rendered_ones(
        params: dict[str, str]) -> None:
    spec = mha(params, packed=False)
    assert_transfers_rendered(spec, render(spec).files["aie.mlir"])


@pytest.mark.parametrize("params", [
    *SHAPES.values(), {}, {"runtime_params": "1", "causal": "1"},
    {"seq_q": "256", "seq_k": "256", "heads": "8", "tq": "16", "columns": "8", "rows": "4",
     "device": "npu2", "fifo_depth": "1"},
])
def test_rendered_packed_designs_pass_the_static_checks(params: dict[str, str]) -> None:
    """Sequence args = host buffers (qkv[, P], o), every qkv byte read, every transfer within
    the shim limits; the transfers are the spec's (row stride 3·width, offsets 0, n, 2n)."""
    spec = mha(params)
    text = render(spec).files["aie.mlir"]
    passed = check_design(spec, text)
    n = 3 if spec.runtime_params else 2
    assert f"{n} sequence arguments match the host buffers in order" in passed
    assert [b.name for b in spec.buffers()] == ["qkv", *["P"] * spec.runtime_params, "o"]
    assert_transfers_rendered(spec, text)
    w = spec.width
    reads = [t for t in spec.transfers() if t.get("arg") == "qkv"]
    assert {t["strides"][2] for t in reads} == {3 * w}
    assert {t["offsets"][3] % (3 * w) // w for t in reads} == {0, 1, 2}


@pytest.mark.parametrize("name", ["causal", "runtime"])
def test_workload_moves_the_unpacked_bytes_as_the_emulator_does(
        builds: dict[tuple[str, bool], BuildResult], name: str) -> None:
    spec = mha(SHAPES[name])
    work, three = spec.workload(), mha(SHAPES[name], packed=False).workload()
    for field in ("macs", "shim_bytes", "mem_tile_bytes", "core_bytes", "scalar_cycles", "bds"):
        assert getattr(work, field) == getattr(three, field), field
    assert any("row stride" in note for note in work.notes)
    design, buffers, stats = emulate_once(spec, builds[(name, True)])
    assert work.shim_bytes == emulated_shim_bytes(design)
    assert stats["transfers"] == work.bds
    np.testing.assert_array_equal(buffers[-1], spec.golden(buffers[:-1])[0])


def test_packed_qkv_0_is_the_unpacked_variant() -> None:
    """The default changes nothing: same variant name, buffers and rendered design."""
    for params in SHAPES.values():
        plain = spec_from_params("mha", params)
        zero = mha(params, packed=False)
        assert zero.variant == plain.variant and "packed" not in plain.variant
        assert zero.buffers() == plain.buffers()
        assert render(zero).files == render(plain).files
        assert "qkv" not in render(plain).files["aie.mlir"]

"""Multi-head attention: the core code against the golden model, accuracy, padding, the split."""

from __future__ import annotations

import math
import time
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.hostcore import HostCore
from codegen.kernels import spec_from_params
from codegen.kernels.mha import (
    EXP2_FRAC_BITS,
    FAMILIES,
    MAX_SHIFT,
    RESCALE_BITS,
    MhaSpec,
    activations,
    dominant_key,
)
from codegen.pipeline import BuildResult, build
from codegen.spec import SpecError, accuracy_figures, mean_error
from runtime.kernel import NpuKernel
from tests.test_cost import emulate_once, emulated_shim_bytes

#: one core, 8x8 tiles, 51 keys (the last tile overlaps), so every rescale path fits in 7 tiles
RESCALE = {"seq_q": "8", "seq_k": "51", "heads": "1", "tq": "8", "tk": "8", "columns": "1",
           "rows": "1", "device": "npu1_1col"}
SMALL = {"seq_q": "128", "seq_k": "200", "heads": "2", "tk": "64", "columns": "1", "rows": "2",
         "device": "npu1_1col"}
CAUSAL_SMALL = {"seq_q": "40", "seq_k": "90", "heads": "3", "tq": "8", "tk": "16",
                "columns": "2", "rows": "2", "causal": "1", "device": "npu1_2col"}
HOST_CASES = {"rescale": RESCALE, "small": SMALL, "causal": CAUSAL_SMALL,
              "rescale-causal": {**RESCALE, "causal": "1"}}


def mha(params: dict[str, str]) -> MhaSpec:
    spec = spec_from_params("mha", params)
    assert isinstance(spec, MhaSpec)
    return spec


@pytest.fixture(scope="module")
def host_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    root = tmp_path_factory.mktemp("mha")
    return {name: build(mha(p), root, target="emu") for name, p in HOST_CASES.items()}


def run_host_core(spec: MhaSpec, result: BuildResult, inputs: list[np.ndarray],
                  garbage: np.random.Generator | None = None) -> np.ndarray:
    """Every block of every pass through the host-compiled core, as each core calls it.

    With `garbage`, the rows of the last K/V tile that repeat earlier keys are overwritten by
    random bytes before each call: they must not matter.
    """
    core = HostCore(result.artifact_dir / result.manifest.host_libraries[spec.object_name])
    q, k, v = (np.asarray(x, dtype=np.int8) for x in inputs[:3])
    d, width = spec.head_dim, spec.width
    out = np.zeros((spec.seq_q, width), dtype=np.int8)
    for g in range(spec.n_passes):
        head, start = spec.pass_head_start(g)
        cols = slice(head * d, head * d + d)
        chunk = np.ascontiguousarray(q[start : start + spec.pass_rows, cols]).reshape(-1)
        elems = chunk.reshape(spec.q_elements, spec.kv_tile_bytes)
        for r in range(spec.rows):
            qb = np.zeros(spec.q_bytes, dtype=np.int8)
            for e in range(spec.q_elements):
                core.call("mha_load_q", np.ascontiguousarray(elems[e]), qb, e, g, r)
            state = np.zeros(spec.state_len, dtype=np.int64)
            if spec.runtime_params:  # once per invocation, before the passes
                core.call("mha_params", np.ascontiguousarray(inputs[3], dtype=np.int8), state)
            acc = np.zeros(spec.tq * d, dtype=np.int64)
            core.call("mha_begin", state, acc, g, r)
            for t in range(spec.k_tiles):
                ks = spec.key_tile_start(t)
                kt = k[ks : ks + spec.tk, cols].copy()
                vt = v[ks : ks + spec.tk, cols].copy()
                dup = max(0, min(spec.tk, spec.key_tile_fresh(t) - ks))
                if garbage is not None and dup:
                    kt[:dup] = garbage.integers(-128, 128, kt[:dup].shape)
                    vt[:dup] = garbage.integers(-128, 128, vt[:dup].shape)
                core.call("mha_tile", qb, kt, vt, state, acc, t)
            ob = np.zeros(spec.q_bytes, dtype=np.int8)
            core.call("mha_end", state, acc, ob)
            row = spec.block_start(g, r)
            out[row : row + spec.tq, cols] = ob.reshape(spec.tq, d)
    return out


def rescale_inputs(spec: MhaSpec, seed: int) -> list[np.ndarray]:
    """Keys constant over channels whose level jumps tile by tile, queries of varied strength,
    so the running maximum grows a little, a lot, beyond all precision, not at all, or ties."""
    rng = np.random.default_rng(seed)
    d, tk = spec.head_dim, spec.tk
    levels = [0, 1, 4, 45, 10, 45, 3, 2]
    c = np.concatenate([levels[t] + rng.integers(-2, 3, tk) for t in range(spec.k_tiles)])
    c = c[: spec.seq_k]
    k = np.repeat(c[:, None], d * spec.heads, axis=1).astype(np.int8)
    a = np.array([1, 5, 20, 50, 127, -30, 0, 90])[: spec.seq_q]
    q = np.repeat(a[:, None], d * spec.heads, axis=1).astype(np.int8)
    v = rng.integers(-128, 128, (spec.seq_k, spec.width)).astype(np.int8)
    return [q, k, v]


def host_cases(spec: MhaSpec) -> list[tuple[str, list[np.ndarray]]]:
    cases = [(f"seed{s}", spec.random_inputs(s)) for s in range(3)] + spec.edge_inputs()
    cases += [(f"{f}", activations(spec, f, 9)) for f in FAMILIES[1:]]
    cases += [("dominant", dominant_key(spec, 4))]
    if spec.seq_q == 8:
        cases += [(f"rescale{s}", rescale_inputs(spec, s)) for s in range(3)]
    return cases


@pytest.mark.parametrize("name", sorted(HOST_CASES))
def test_host_core_matches_golden_bit_for_bit(host_builds: dict[str, BuildResult],
                                              name: str) -> None:
    spec = mha(HOST_CASES[name])
    for case, inputs in host_cases(spec):
        got = run_host_core(spec, host_builds[name], inputs)
        want = spec.golden(inputs)[0]
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{name} {case}: {len(bad)} bytes differ, first at {bad[0]}"


@pytest.mark.parametrize("name", ["rescale", "rescale-causal"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_host_core_matches_golden_on_arbitrary_bytes(host_builds: dict[str, BuildResult],
                                                     name: str, data: st.DataObject) -> None:
    spec = mha(HOST_CASES[name])
    inputs = [data.draw(hnp.arrays(np.int8, b.shape, elements=st.integers(-128, 127)))
              for b in spec.inputs()]
    np.testing.assert_array_equal(run_host_core(spec, host_builds[name], inputs),
                                  spec.golden(inputs)[0])


def test_rescale_inputs_exercise_every_path() -> None:
    """The deterministic case reaches each branch of step 2: a first maximum, a growth within
    one doubling, a growth by doublings, one beyond every bit (state zeroed), a smaller and an
    equal tile maximum; and weights that shift out entirely (t >> 8 >= 32)."""
    spec = mha(RESCALE)
    mult, shift = spec.logit_multiplier()
    q, k, _ = rescale_inputs(spec, 0)
    s = q[:, :64].astype(np.int64) @ k[:, :64].astype(np.int64).T
    x = (s * mult + (1 << (shift - 1))) >> shift
    seen: set[str] = set()
    for i in range(spec.seq_q):
        m = None
        for t in range(spec.k_tiles):
            ks = spec.key_tile_start(t)
            tile = x[i, max(ks, spec.key_tile_fresh(t)) : ks + spec.tk]
            if not tile.size:
                continue
            mt = int(tile.max())
            if m is None:
                seen.add("first")
                m = mt
            elif mt > m:
                u = mt - m
                sh = RESCALE_BITS + (u >> EXP2_FRAC_BITS)
                seen.add("small" if u < 1 << EXP2_FRAC_BITS else
                         "zeroed" if sh > MAX_SHIFT else "doublings")
                m = mt
            else:
                seen.add("equal" if mt == m else "smaller")
            if ((m - tile) >> EXP2_FRAC_BITS).max() >= 32:
                seen.add("shifted out")
    assert seen == {"first", "small", "doublings", "zeroed", "equal", "smaller", "shifted out"}


def test_padding_bytes_do_not_change_the_output(host_builds: dict[str, BuildResult]) -> None:
    """The last K/V tile's first rows repeat keys already counted; whatever they hold, the
    output is the golden model's."""
    for name in ("small", "causal", "rescale"):
        spec = mha(HOST_CASES[name])
        assert spec.k_padded
        inputs = spec.random_inputs(3)
        got = run_host_core(spec, host_builds[name], inputs, garbage=np.random.default_rng(1))
        np.testing.assert_array_equal(got, spec.golden(inputs)[0])


def test_causal_first_query_sees_its_keys_only() -> None:
    """With seq_k - seq_q = 50, query 0 sees keys 0..50: changing key 51 leaves row 0 alone."""
    spec = mha(CAUSAL_SMALL)
    q, k, v = spec.random_inputs(2)
    base = spec.golden([q, k, v])[0]
    k2, v2 = k.copy(), v.copy()
    k2[51:], v2[51:] = -k[51:], 127
    moved = spec.golden([q, k2, v2])[0]
    np.testing.assert_array_equal(base[0], moved[0])
    assert not np.array_equal(base[-1], moved[-1])


def test_golden_is_not_the_reference() -> None:
    spec = mha(SMALL)
    diffs = sum(int(np.count_nonzero(spec.golden(x)[0] != spec.reference(x)[0]))
                for x in (spec.random_inputs(s) for s in range(3)))
    assert diffs > 0


# -- accuracy -------------------------------------------------------------------------------

ACCURACY_SHAPES = {
    "encoder": {"seq_q": "64", "seq_k": "1500", "heads": "2", "columns": "1", "rows": "2",
                "device": "npu1_1col"},
    "decoder": {"seq_q": "448", "seq_k": "448", "heads": "2", "causal": "1"},
}


@pytest.mark.parametrize("shape", sorted(ACCURACY_SHAPES))
def test_accuracy_against_float64_on_every_family(shape: str) -> None:
    spec = mha(ACCURACY_SHAPES[shape])
    for family in FAMILIES:
        for seed in range(2):
            inputs = activations(spec, family, seed)
            golden, reference = spec.golden(inputs)[0], spec.reference(inputs)[0]
            p, within1, worst = accuracy_figures(golden, reference)
            bias = mean_error(golden, reference)
            print(f"mha {shape} {family} seed {seed}: within 1 LSB {within1:.4%}, "
                  f"max diff {worst} LSB, mean error {bias:+.4f} LSB, pearson {p:.6f}")
            assert within1 >= 0.999 and worst <= 1 and abs(bias) <= 0.05, (family, seed)
            assert spec.accuracy_problems(inputs) == []


def test_accuracy_with_poorly_calibrated_scales() -> None:
    """Scales 4x too wide (outputs use a quarter of the range) or 2x too narrow (some saturate)."""
    for o_scale in (4 / 127, 0.5 / 127):
        spec = mha({**ACCURACY_SHAPES["encoder"], "o_scale": str(o_scale),
                    "q_scale": str(8 / 127), "k_scale": str(2 / 127)})
        inputs = activations(spec, "whisper", 5)
        _, within1, worst = accuracy_figures(spec.golden(inputs)[0], spec.reference(inputs)[0])
        print(f"mha o_scale {o_scale:.4f}: within 1 LSB {within1:.4%}, max diff {worst} LSB")
        assert within1 >= 0.999 and worst <= 1


def test_adversarial_one_dominant_key_among_1500() -> None:
    """Rounding every small weight the same way would bias the output by several LSB here."""
    spec = mha({"seq_q": "8", "seq_k": "1500", "heads": "4", "tq": "8", "tk": "8",
                "columns": "1", "rows": "1", "device": "npu1_1col"})
    for gap in (4.0, 6.0, 7.3, 8.5, 10.0, 14.0):
        inputs = dominant_key(spec, 1, gap)
        _, within1, worst = accuracy_figures(spec.golden(inputs)[0], spec.reference(inputs)[0])
        print(f"mha dominant key, logit gap {gap}: within 1 LSB {within1:.4%}, "
              f"max diff {worst} LSB")
        assert worst <= 2


# -- the split and its limits -----------------------------------------------------------------

@pytest.mark.parametrize(("params", "message"), [
    ({"columns": "5"}, "columns 5 is more than device npu1 has (4)"),
    ({"tq": "40", "tk": "64"}, "rows·tq must be a multiple of tk 64"),
    ({"tq": "64", "tk": "64"}, "tile buffers need"),
    ({"tq": "256", "rows": "4", "tk": "128"}, "exceeds the 1023-row d1 wrap"),
    ({"seq_k": "32", "tk": "64"}, "tk 64 is more than seq_k 32"),
    ({"seq_q": "100", "rows": "4", "tq": "32"}, "128 query rows per pass is more than seq_q 100"),
    ({"heads": "1", "seq_q": "256", "columns": "4"}, "more than the 2 pass(es) of work"),
    ({"causal": "1", "seq_q": "1500", "seq_k": "448"}, "causal needs seq_q <= seq_k"),
    ({"o_scale": "1e5"}, "the output multiplier"),
    ({"q_scale": "1e-30"}, "logit shift"),
    ({"head_dim": "128", "tq": "256", "tk": "256", "rows": "3", "fifo_depth": "4"},
     "a mem tile has 524,288"),
])
def test_a_split_that_breaks_a_limit_names_it(params: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=None) as err:
        mha(params)
    assert message in str(err.value)


@pytest.mark.parametrize(("params", "split"), [
    ({}, (32, 64, 4, 4)),
    ({"seq_q": "64", "seq_k": "64", "heads": "2"}, (16, 64, 4, 2)),
    ({"seq_q": "10", "seq_k": "6", "heads": "1", "device": "npu1_1col"}, (2, 4, 4, 1)),
    ({"seq_q": "448", "seq_k": "1500", "device": "npu2"}, (32, 64, 4, 8)),
    ({"seq_q": "1500", "seq_k": "1500", "tq": "16"}, (16, 64, 4, 4)),
])
def test_split_left_at_zero_is_chosen_to_fit(params: dict[str, str],
                                             split: tuple[int, int, int, int]) -> None:
    """The encoder passes only the shape: any shape gets a split that validates."""
    spec = mha(params)
    assert (spec.tq, spec.tk, spec.rows, spec.columns) == split
    assert spec.params["tq"] == int(params.get("tq", 0))


def test_passes_cover_every_query_row_of_every_head() -> None:
    spec = mha({"seq_q": "1500", "seq_k": "1500", "heads": "6"})
    covered = np.zeros((spec.heads, spec.seq_q), dtype=int)
    for c in range(spec.columns):
        for g in spec.passes_of(c):
            h, start = spec.pass_head_start(g)
            covered[h, start : start + spec.pass_rows] += 1
    assert covered.min() >= 1 and covered.max() <= 2


# -- emulated designs -----------------------------------------------------------------------

EMULATED = {
    "small": (SMALL, True),
    "odd-1500-keys": ({"seq_q": "96", "seq_k": "1500", "heads": "2", "tq": "16",
                       "columns": "2", "rows": "4", "device": "npu1_2col"}, True),
    "causal-448": ({"seq_q": "448", "seq_k": "448", "causal": "1"}, False),
    "cross-448x1500": ({"seq_q": "448", "seq_k": "1500"}, False),
    "npu2-32-cores": ({"seq_q": "256", "seq_k": "320", "heads": "8", "tq": "16",
                       "columns": "8", "rows": "4", "device": "npu2"}, False),
    "whisper-base": ({}, False),  # the one full-size emulated run: 1,500 x 1,500, 8 heads
}


@pytest.mark.parametrize("name", list(EMULATED))
def test_emulated_design_matches_golden(name: str, tmp_path: Path) -> None:
    params, edges = EMULATED[name]
    spec = mha(params)
    result = build(spec, tmp_path, target="emu")
    cases = [("seed0", spec.random_inputs(0))]
    if edges:
        cases += [("seed1", spec.random_inputs(1)), *spec.edge_inputs()]
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        for case, inputs in cases:
            start = time.perf_counter()
            (got,) = kernel(*inputs)
            seconds = time.perf_counter() - start
            want = spec.golden(inputs)[0]
            bad = np.argwhere(got.reshape(want.shape) != want)
            assert bad.size == 0, f"{name} {case}: {len(bad)} bytes differ, first at {bad[0]}"
        print(f"mha {name} ({spec.seq_q}x{spec.seq_k}, {spec.heads} heads, {spec.cores} cores):"
              f" emulated in {seconds:.2f} s")


def test_logit_scale_folds_the_softmax_scale() -> None:
    spec = mha({})
    mult, shift = spec.logit_multiplier()
    c = spec.q_scale * spec.k_scale / math.sqrt(spec.head_dim) * math.log2(math.e)
    assert mult / 2**shift == pytest.approx(c * 2**EXP2_FRAC_BITS, rel=1e-4)


@pytest.mark.parametrize("name", ["small", "causal"])
def test_workload_counts_what_the_emulator_moves(host_builds: dict[str, BuildResult],
                                                 name: str) -> None:
    """The cost model's bytes per shim channel and BDs are the emulated design's."""
    spec = mha(HOST_CASES[name])
    design, buffers, stats = emulate_once(spec, host_builds[name])
    work = spec.workload()
    assert work.shim_bytes == emulated_shim_bytes(design)
    assert stats["transfers"] == work.bds
    np.testing.assert_array_equal(buffers[3], spec.golden(buffers[:3])[0])

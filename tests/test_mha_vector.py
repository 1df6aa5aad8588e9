"""mha's vector path (path=vector: QKᵀ and PV on AIE API int8 mmul blocks, mlir/mha/mha_vector.h,
on the host through npukit's AIE API subset): the host core equals the golden model bit for bit,
emulated builds too, the rendered design streams Q/K and V blocked, and the cost model moves
only the vectorised MACs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.hostcore import HostCore
from codegen.kernels import spec_from_params
from codegen.kernels.mha import (
    DIGIT_LANES,
    DIGIT_VECTOR_CYCLES,
    DIGITS,
    FOLD_OPS_PER_ELEMENT,
    GATHER_OPS_PER_KEY,
    PV_KEYS,
    QK_GROUP,
    TRANSPOSE_OPS_PER_BYTE,
    WEIGHT_ORDER_OPS_PER_KEY,
    MhaSpec,
    activations,
    dominant_key,
)
from codegen.pipeline import BuildResult, build
from codegen.render import render
from codegen.spec import SpecError
from runtime.kernel import NpuKernel
from tests.test_mha import RESCALE, rescale_inputs

VECTOR = {"path": "vector"}
#: tiny shapes: padded keys (51 = 6 tiles of 8 + an overlapping one), causal, several cores,
#: runtime parameters, packed q|k|v, and npu2's 8-row blocks
CASES = {
    "rescale": RESCALE,  # the running maximum grows a little, a lot, past all precision, ties
    "padded": {"seq_q": "16", "seq_k": "51", "heads": "1", "tq": "8", "tk": "8",
               "columns": "1", "rows": "2", "device": "npu1_1col"},
    "causal": {"seq_q": "40", "seq_k": "90", "heads": "3", "tq": "8", "tk": "16",
               "columns": "2", "rows": "2", "causal": "1", "device": "npu1_2col"},
    "runtime-packed": {"seq_q": "48", "seq_k": "48", "heads": "2", "tq": "16", "tk": "16",
                       "columns": "1", "rows": "3", "runtime_params": "1", "packed_qkv": "1",
                       "device": "npu1_1col"},
    # head_dim 8: P's third word lies in the element's second row, another block
    "runtime-d8": {"seq_q": "16", "seq_k": "24", "heads": "2", "head_dim": "8", "tq": "8",
                   "tk": "8", "columns": "1", "rows": "2", "runtime_params": "1",
                   "device": "npu1_1col"},
    "npu2-causal": {"seq_q": "32", "seq_k": "72", "heads": "2", "tq": "8", "tk": "16",
                    "columns": "2", "rows": "2", "causal": "1", "device": "npu2"},
}


def mha(params: dict[str, str]) -> MhaSpec:
    spec = spec_from_params("mha", params)
    assert isinstance(spec, MhaSpec)
    return spec


def blocked_element(x: np.ndarray, r: int) -> np.ndarray:
    """A row-major [rows, d] element as the mem tile streams it: [rows/r][d/8][r][8]
    (independent of the design's dims, which test_qk_dims_block_every_element checks)."""
    rows, d = x.shape
    return np.ascontiguousarray(
        x.reshape(rows // r, r, d // 8, 8).transpose(0, 2, 1, 3)).reshape(-1)


@pytest.fixture(scope="module")
def host_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    root = tmp_path_factory.mktemp("mha-vector")
    return {name: build(mha({**p, **VECTOR}), root, target="emu") for name, p in CASES.items()}


def run_vector_core(spec: MhaSpec, result: BuildResult, inputs: list[np.ndarray]) -> np.ndarray:
    """Every block of every pass through the host-compiled vector core, each Q/K element (and
    P) and each V tile blocked as the mem tile delivers them."""
    assert result.manifest.core_build["path"] == "vector"
    core = HostCore(result.artifact_dir / result.manifest.host_libraries[spec.object_name])
    (q, k, v), prm = spec.split_inputs(inputs)
    q, k, v = (np.asarray(x, dtype=np.int8) for x in (q, k, v))
    d, tk, r_blk = spec.head_dim, spec.tk, spec.block_r
    out = np.zeros((spec.seq_q, spec.width), dtype=np.int8)
    for g in range(spec.n_passes):
        head, start = spec.pass_head_start(g)
        cols = slice(head * d, head * d + d)
        rows = q[start : start + spec.pass_rows, cols]
        elems = [blocked_element(rows[e * tk : (e + 1) * tk], r_blk)
                 for e in range(spec.q_elements)]
        for r in range(spec.rows):
            qb = np.zeros(spec.q_bytes, dtype=np.int8)
            for e, elem in enumerate(elems):
                core.call("mha_load_q", elem, qb, e, g, r)
            state = np.zeros(spec.state_len, dtype=np.int64)
            if spec.runtime_params:
                p = np.asarray(prm, dtype=np.int8).reshape(tk, d)
                core.call("mha_params", blocked_element(p, r_blk), state)
            acc = np.zeros(spec.acc_len, dtype=np.int64)
            core.call("mha_begin", state, acc, g, r)
            for t in range(spec.k_tiles):
                ks = spec.key_tile_start(t)
                kt = blocked_element(k[ks : ks + tk, cols], r_blk)
                vt = blocked_element(v[ks : ks + tk, cols], PV_KEYS)
                core.call("mha_tile", qb, kt, vt, state, acc, t)
            ob = np.zeros(spec.q_bytes, dtype=np.int8)
            core.call("mha_end", state, acc, ob)
            row = spec.block_start(g, r)
            out[row : row + spec.tq, cols] = ob.reshape(spec.tq, d)
    return out


def cases(spec: MhaSpec) -> list[tuple[str, list[np.ndarray]]]:
    out = [(f"seed{s}", spec.random_inputs(s)) for s in range(6)] + spec.edge_inputs()
    if not spec.packed_qkv and not spec.runtime_params:
        out += [(f, activations(spec, f, 5)) for f in ("peaky", "outlier", "heavy")]
        out += [("dominant", dominant_key(spec, 2))]
        rng = np.random.default_rng(11)
        out += [("uniform", [rng.integers(-128, 128, b.shape).astype(np.int8)
                             for b in spec.inputs()])]
    if spec.seq_q == 8:
        out += [(f"rescale{s}", rescale_inputs(spec, s)) for s in range(3)]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_vector_host_core_matches_golden_bit_for_bit(host_builds: dict[str, BuildResult],
                                                     name: str) -> None:
    spec = mha({**CASES[name], **VECTOR})
    for case, inputs in cases(spec):
        got = run_vector_core(spec, host_builds[name], inputs)
        want = spec.golden(inputs)[0]
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{name} {case}: {len(bad)} bytes differ, first at {bad[0]}"
        if case == "seed0":
            assert len(np.unique(want)) > 8  # neither constant nor saturated


def test_emulated_vector_build_matches_golden(tmp_path: Path) -> None:
    """The whole design (mem-tile blocking, runtime sequence, cores) on the emulator."""
    spec = mha({**CASES["causal"], **VECTOR})
    result = build(spec, tmp_path, target="emu")
    assert result.manifest.core_build["path"] == "vector"
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        for case, inputs in [("seed0", spec.random_inputs(0)), *spec.edge_inputs()[-1:]]:
            (got,) = kernel(*inputs)
            want = spec.golden(inputs)[0]
            assert np.array_equal(got.reshape(want.shape), want), f"emulated {case}"


def test_emulated_vector_build_with_runtime_params_and_packed_qkv(tmp_path: Path) -> None:
    """P crosses the mem tile's blocking too: mha_params reads its words through it."""
    spec = mha({**CASES["runtime-packed"], **VECTOR})
    result = build(spec, tmp_path, target="emu")
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        for seed in (0, 1):
            inputs = spec.random_inputs(seed)
            (got,) = kernel(*inputs)
            np.testing.assert_array_equal(got.reshape(spec.seq_q, spec.width),
                                          spec.golden(inputs)[0])


def apply_dims(element: np.ndarray, dims: list[tuple[int, int]]) -> np.ndarray:
    """The bytes a dimensionsToStream pattern (outermost first) sends out of an element."""
    idx = np.zeros(1, dtype=np.int64)
    for size, stride in dims:
        idx = (idx[:, None] + stride * np.arange(size)[None, :]).reshape(-1)
    return element[idx]


@pytest.mark.parametrize("name", ["padded", "npu2-causal"])
def test_dims_block_every_element(name: str) -> None:
    """The rendered design's Q/K and V patterns are the blockings the core expects, every byte
    once."""
    spec = mha({**CASES[name], **VECTOR})
    text = render(spec).files["aie.mlir"]
    x = np.random.default_rng(0).integers(-128, 128, (spec.tk, spec.head_dim), dtype=np.int8)
    for fifo, dims, r in (("qkb", spec.qk_dims(), spec.block_r), ("vb", spec.v_dims(), PV_KEYS)):
        pattern = ", ".join(f"<size = {n}, stride = {s}>" for n, s in dims)
        for c in range(spec.columns):
            assert f"@{fifo}{c}(%mem{c} dimensionsToStream [{pattern}]" in text
        np.testing.assert_array_equal(apply_dims(x.reshape(-1), dims), blocked_element(x, r))
    assert text.count("dimensionsToStream [") == 2 * spec.columns
    assert f"#define MHA_R {spec.block_r}" in render(spec).files["mha_params.h"]


def test_scalar_render_has_no_vector_parts() -> None:
    """path=scalar (the default) renders no blocking and no block define: its design and header
    are those of a spec without the parameter."""
    params = CASES["causal"]
    default, scalar = render(mha(params)), render(mha({**params, "path": "scalar"}))
    assert mha(params).variant == mha({**params, "path": "scalar"}).variant
    for f in ("aie.mlir", "mha_params.h"):
        assert default.files[f] == scalar.files[f]
        assert "dimensionsToStream [" not in default.files[f]
        assert "#define MHA_R " not in default.files[f]
    assert mha(params).workload().path == "scalar"


@pytest.mark.parametrize(("params", "message"), [
    ({"tq": "4"}, "tq a multiple of 8"),
    ({"tk": "12"}, "tk of 8"),
    ({"tk": "20", "device": "npu1_1col"}, "tk of 8"),  # PV's 8-key blocks on aie2 too
])
def test_vector_block_sizes_are_checked(params: dict[str, str], message: str) -> None:
    base = {"seq_q": "48", "seq_k": "48", "heads": "1", "columns": "1", "rows": "1",
            "device": "npu2_1col", **VECTOR}
    with pytest.raises(SpecError, match=message):
        mha({**base, **params})


def test_split_chosen_for_vector_fits_the_blocks() -> None:
    spec = mha({"seq_q": "20", "seq_k": "30", "heads": "1", "device": "npu1_1col", **VECTOR})
    assert spec.tq % QK_GROUP == 0 and spec.tk % PV_KEYS == 0
    whisper = mha(VECTOR)  # Whisper-base's shape: tq 16 (the digit sums), tk 64, 4 rows
    assert (whisper.tq, whisper.tk, whisper.rows, whisper.columns) == (16, 64, 4, 4)


@pytest.mark.parametrize("name", list(CASES))
def test_workload_moves_only_the_vectorised_macs(name: str) -> None:
    """Vector MACs are the mmuls' (QKᵀ and one PV per digit) over whole groups of 8 rows: at
    least the scalar path's MACs, at most whole tiles; the other cycles keep the softmax and add
    the score read-back, the blocked weight store, the vector digit split, the Q transpose and
    the final fold; every DMA byte and BD stays the same."""
    params = CASES[name]  # every case gives tq: the same on both paths
    scalar = mha(params).workload()
    spec = mha({**params, **VECTOR})
    vector = spec.workload()
    assert vector.path == "vector" and scalar.path == "scalar"
    assert vector.channels() == scalar.channels() and vector.bds == scalar.bds
    tile_macs = spec.tk * spec.head_dim
    for core, both in scalar.macs.items():
        pairs = both // 2 // tile_macs  # (row, tile) pairs of the scalar path
        passes = len(spec.passes_of(int(core.split("(")[1].split(",")[0])))
        mm = vector.macs[core]
        assert mm % ((1 + DIGITS) * QK_GROUP * tile_macs) == 0
        rows_done = mm // ((1 + DIGITS) * tile_macs)
        assert pairs <= rows_done <= passes * spec.tq * spec.k_tiles
        extra = (pairs * spec.tk * GATHER_OPS_PER_KEY
                 + rows_done * spec.tk * WEIGHT_ORDER_OPS_PER_KEY
                 + rows_done * spec.tk // DIGIT_LANES * DIGIT_VECTOR_CYCLES
                 + passes * spec.q_bytes * (TRANSPOSE_OPS_PER_BYTE + FOLD_OPS_PER_ELEMENT))
        assert vector.scalar_cycles[core] - scalar.scalar_cycles[core] == extra
    if not spec.causal:
        assert vector.macs == {c: (1 + DIGITS) * m // 2 for c, m in scalar.macs.items()}


def test_workload_counts_whole_groups_under_a_causal_mask() -> None:
    """A causal mask can end inside a group of 8 rows: the vector path computes
    that group's scores whole, the scalar path only its visible rows'."""
    params = {"seq_q": "20", "seq_k": "24", "heads": "1", "tq": "8", "tk": "8", "columns": "1",
              "rows": "1", "causal": "1", "device": "npu1_1col"}
    spec, scalar = mha({**params, **VECTOR}), mha(params)
    assert spec._tile_rows(0) == 8 + 4  # tile 0 for every row, tile 1 for rows 4..7
    assert spec._tile_groups(0) == 2
    qk = scalar.workload().macs["core(0, 2)"] // 2
    assert spec.workload().macs["core(0, 2)"] > (1 + DIGITS) * qk


def test_whisper_base_vector_emulated(tmp_path: Path) -> None:
    """The one full-size vector run: Whisper-base's encoder self-attention (1,500 x 1,500, 8
    heads of 64) as the encoder would build it with path=vector, on all 16 cores of npu1."""
    spec = mha(VECTOR)
    result = build(spec, tmp_path, target="emu")
    inputs = spec.random_inputs(3)
    with NpuKernel.load(result.artifact_dir, backend="emu") as kernel:
        (got,) = kernel(*inputs)
    np.testing.assert_array_equal(got.reshape(spec.seq_q, spec.width), spec.golden(inputs)[0])

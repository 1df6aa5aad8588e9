"""Static checks on rendered designs: what passes, and each broken copy with its message."""

from __future__ import annotations

import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from codegen.checks import (
    check_buffer_descriptors,
    check_design,
    check_routing,
    check_tokens,
    read_design,
)
from codegen.kernels import spec_from_params
from codegen.render import DESIGN_NAME, render
from codegen.spec import KernelSpec, SpecError
from runtime.emulator.model import TransferSpec, WaitSpec
from runtime.errors import DesignError

STREAM_SETS = [
    ("attention", {}),
    ("attention", {"tiles": "5", "causal": "1"}),
    ("attention", {"n_queries": "32", "n_keys": "128", "head_dim": "32", "fifo_depth": "1"}),
    ("gelu", {}),
    ("gelu", {"length": "1000"}),
    ("layernorm", {"rows": "6", "d": "384", "tile_rows": "3"}),
]


@pytest.mark.parametrize(("kernel", "params"), STREAM_SETS)
def test_rendered_designs_pass_and_are_deterministic(kernel: str, params: dict[str, str]) -> None:
    spec = spec_from_params(kernel, params)
    first = render(spec).files
    assert render(spec_from_params(kernel, params)).files == first
    passed = check_design(spec, first[DESIGN_NAME])
    assert any(p.startswith("tile memory within budget") for p in passed)


def broken(edit: str, pattern: str, repl: str) -> str:
    text, n = re.subn(pattern, repl, edit, count=1)
    assert n == 1, f"the template no longer contains {pattern!r}"
    return text


@pytest.fixture
def attention_text() -> str:
    return render(spec_from_params("attention", {"tiles": "2"})).files[DESIGN_NAME]


@pytest.mark.parametrize(("pattern", "repl", "message"), [
    (r"\[1, 1, 1, 8192\]", "[1, 1, 1, 4096]",
     "4,096 of 8,192 elements of out are never written by the runtime sequence"),
    (r"\[1, 1, 1, 24576\]\[0, 0, 0, 1\]", "[1, 1, 1, 24576][0, 0, 0, 2]",
     "dma_memcpy_nd on @inq"),
    (r"\(%qkv : memref<24576xi8>, %out : memref<8192xi8>\)",
     "(%out : memref<8192xi8>, %qkv : memref<24576xi8>)",
     "sequence argument 0 (kernel arg 3) is %out"),
    (r" \{stack_size = \d+ : i32\}", "", "has no stack_size; the 1 KiB default"),
    (r"@inq\(%shim, \{%core\}, 2 : i32\)", "@inq(%shim, {%core}, 5 : i32)",
     "tile(0, 2) needs 72,704 bytes of data memory, a core has 65,536"),
    (r"@outq\(%core, \{%shim\}, 2 : i32\)", "@outq(%core, {%shim}, 1 : i32)",
     "the spec's memory plan"),
    (r"aie.device\(npu1_1col\)", "aie.device(npu2_1col)", "device npu2_1col but the spec"),
    (r"link_with = \"attention.o\"", 'link_with = "other.o"', "links 'other.o'"),
    (r"aiex.npu.dma_wait \{symbol = @outq\}", "aiex.npu.dma_wait {symbol = @inq}",
     "the transfer from @outq to the host is never waited on"),
    (r"(metadata = @inq, id = 1 : i64\}.*\n.*\n)", r"\1      aiex.npu.dma_wait {symbol = @inq}\n",
     "dma_wait on @inq: waits for the host->device (MM2S) transfer at line"),
    (r"metadata = @inq, id = 1 : i64\}", "metadata = @inq, id = 1 : i64, issue_token = true}",
     "issues a task-completion token on @inq that no later"),
    (r"arith.constant 9223372036854775807 : index", "arith.constant 2 : index",
     "tile(0, 2)'s program ends; on the NPU it starts once per xclbin load"),
])
def test_broken_copies_fail_with_the_limit(attention_text: str, pattern: str, repl: str,
                                           message: str) -> None:
    spec = spec_from_params("attention", {"tiles": "2"})
    with pytest.raises(DesignError, match=re.escape(message)):
        check_design(spec, broken(attention_text, pattern, repl))


def test_unknown_op_is_named_with_its_line(attention_text: str) -> None:
    text = broken(attention_text, r"      aie.end", "      aie.mystery_op\n      aie.end")
    with pytest.raises(DesignError, match=r"aie\.mlir:\d+: .*aie\.mystery_op"):
        check_design(spec_from_params("attention", {"tiles": "2"}), text)


def _draw_params(kernel: str, draw: st.DrawFn) -> dict[str, str]:
    """Parameters within each kernel's declared limits (combinations may still be invalid)."""

    def pick(*choices: int) -> str:
        return str(draw(st.sampled_from(choices)))

    if kernel == "attention":
        return {"n_queries": pick(8, 16, 32, 64, 128), "n_keys": pick(8, 24, 64, 96),
                "head_dim": pick(8, 32, 64, 128), "tiles": pick(1, 2, 7),
                "causal": pick(0, 1), "fifo_depth": pick(1, 2, 3)}
    if kernel == "gelu":
        return {"length": str(4 * draw(st.integers(1, 20000))), "max_tile": pick(4, 64, 4096),
                "fifo_depth": pick(1, 2)}
    if kernel == "layernorm":
        rows = draw(st.integers(1, 24))
        return {"rows": str(rows), "d": pick(8, 384, 512, 1024),
                "tile_rows": str(draw(st.sampled_from([t for t in (1, 2, 3, 4) if rows % t == 0]))),
                "fifo_depth": pick(1, 2)}
    tiles = {k: pick(16, 32, 64) for k in ("tm", "tk", "tn")}
    rows, columns = draw(st.integers(0, 4)), draw(st.sampled_from([0, 1, 2, 3, 4, 8]))
    device = draw(st.sampled_from(["npu1", "npu1_2col", "npu2", "npu1_1col"]))
    return {**tiles, "M": str(int(tiles["tm"]) * draw(st.integers(1, 8))),
            "K": str(int(tiles["tk"]) * draw(st.integers(1, 4))),
            "N": str(int(tiles["tn"]) * draw(st.integers(1, 8))),
            "rows": str(rows), "columns": str(columns), "device": device,
            "fifo_depth": pick(1, 2, 4)}


@pytest.mark.parametrize("kernel", ["attention", "gelu", "layernorm", "matmul"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_accepted_parameter_set_renders_a_design_that_passes(kernel: str,
                                                                   data: st.DataObject) -> None:
    """The spec and its template agree: whatever validates also passes the design checks."""
    params = data.draw(st.composite(lambda draw: _draw_params(kernel, draw))())
    try:
        spec = spec_from_params(kernel, params)
    except SpecError as e:
        assert str(e) and "\n" not in str(e)
        return
    event("accepted")
    check_design(spec, render(spec).files[DESIGN_NAME])


def test_three_inputs_on_one_shim_exceed_its_channels() -> None:
    """A shim tile has two MM2S channels (NPU_FACTS 1): a third host input cannot stream."""
    spec = spec_from_params("matmul", {})
    text = render(spec).files[DESIGN_NAME]
    extra = ("    aie.objectfifo @d0(%shim0, {%core0_0}, 2 : i32) : "
             "!aie.objectfifo<memref<4096xi8>>\n")
    text = broken(text, r"(    %acc0_0 = aie.buffer)", extra + r"\1")
    with pytest.raises(DesignError, match=r"tile\(0, 0\) needs 3 MM2S \(outgoing\) DMA channels"):
        check_design(spec, text)


def _matmul_text(params: dict[str, str]) -> tuple[KernelSpec, str]:
    spec = spec_from_params("matmul", params)
    return spec, render(spec).files[DESIGN_NAME]


def test_seven_streams_into_a_mem_tile_exceed_its_channels() -> None:
    """A mem tile has six channels per direction: one column of four rows fills both.

    In: A, B and four C tiles; out: four A rows, B and C. A seventh stream through it cannot.
    """
    spec, text = _matmul_text({"M": "256", "device": "npu1_1col"})
    assert spec.grid == (4, 1)
    check_design(spec, text)  # exactly the mem tile's channels
    extra = ("    aie.objectfifo @d0(%core0_3, {%mem0}, 2 : i32) : "
             "!aie.objectfifo<memref<64xi8>>\n"
             "    aie.objectfifo @d1(%mem0, {%shim0}, 2 : i32) : !aie.objectfifo<memref<64xi8>>\n"
             "    aie.objectfifo.link [@d0] -> [@d1] ([] [])\n")
    text = broken(text, r"(    %acc0_0 = aie.buffer)", extra + r"\1")
    with pytest.raises(DesignError, match=r"tile\(0, 1\) needs 7 MM2S \(outgoing\) DMA "
                                          r"channels .*a mem tile has 6"):
        check_design(spec, text)


def test_core_buffer_descriptors_are_counted() -> None:
    """Depth-4 FIFOs: a core's A, B and C ends take 12 BDs; two more depth-4 ends would be 20."""

    _, text = _matmul_text({"fifo_depth": "4", "tm": "32", "tn": "32", "M": "32", "N": "32"})
    assert "within 16 per core" in check_buffer_descriptors(read_design(text))
    extra = ("    aie.objectfifo @d0(%core0_0, {%shim0}, 4 : i32) : "
             "!aie.objectfifo<memref<64xi8>>\n"
             "    aie.objectfifo @d1(%shim0, {%core0_0}, 4 : i32) : "
             "!aie.objectfifo<memref<64xi8>>\n")
    text = broken(text, r"(    %acc0_0 = aie.buffer)", extra + r"\1")
    with pytest.raises(DesignError, match=r"tile\(0, 2\) needs 20 buffer descriptors"):
        check_buffer_descriptors(read_design(text))


def test_five_streams_down_one_column_exceed_the_south_ports() -> None:
    """Four C tiles descend column 0 to its mem tile (4 south ports); a fifth cannot."""

    _, text = _matmul_text({"M": "256", "device": "npu1_1col"})
    assert "within" in check_routing(read_design(text))
    extra = ("    aie.objectfifo @d0(%core0_2, {%shim0}, 2 : i32) : "
             "!aie.objectfifo<memref<64xi8>>\n")
    text = broken(text, r"(    %acc0_0 = aie.buffer)", extra + r"\1")
    with pytest.raises(DesignError, match=r"5 streams .* run south from tile\(0, 2\) to "
                                          r"tile\(0, 1\); the stream switch has 4"):
        check_routing(read_design(text))


def test_one_wait_for_two_output_transfers_is_refused() -> None:
    """A dma_wait covers one transfer's token on the NPU: splitting the output needs two waits."""
    spec = spec_from_params("attention", {"tiles": "2"})
    text = render(spec).files[DESIGN_NAME]
    split = (
        "aiex.npu.dma_memcpy_nd(%out[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]) "
        "{metadata = @outq, id = 0 : i64} : memref<8192xi8>\n"
        "      aiex.npu.dma_memcpy_nd(%out[0, 0, 0, 4096][1, 1, 1, 4096][0, 0, 0, 1]) "
        "{metadata = @outq, id = 2 : i64} : memref<8192xi8>"
    )
    text = broken(text, r"aiex\.npu\.dma_memcpy_nd\(%out\[0, 0, 0, 0\]\[1, 1, 1, 8192\]"
                        r"\[0, 0, 0, 1\]\) \{metadata = @outq, id = 0 : i64\} : memref<8192xi8>",
                  split)
    with pytest.raises(DesignError, match=r"covers 2 device->host transfers on @outq"):
        check_design(spec, text)
    waited = broken(text, r"(\n      aiex\.npu\.dma_memcpy_nd\(%out\[0, 0, 0, 4096\])",
                    r"\n      aiex.npu.dma_wait {symbol = @outq}\1")
    check_design(spec, waited)


MHA_ONE = {"seq_q": "32", "seq_k": "32", "heads": "2", "head_dim": "16", "device": "npu1_1col"}
MHA_TWO = {"seq_q": "36", "seq_k": "36", "heads": "2", "head_dim": "16", "tq": "4", "tk": "8",
           "rows": "2", "columns": "2", "device": "npu1_2col"}
MATMUL_TWO = {"M": "16", "K": "48", "N": "64", "tm": "8", "tk": "24", "tn": "32", "rows": "2",
              "columns": "2", "device": "npu1_2col"}
#: every kernel's runtime sequence, with runtime_params 0 and 1, packed_qkv and epilogue gelu
TOKEN_SETS = [
    ("attention", {}),
    ("gelu", {}),
    ("gelu", {"runtime_params": "1"}),
    ("layernorm", {"rows": "6", "d": "384", "tile_rows": "3"}),
    ("layernorm", {"rows": "6", "d": "384", "tile_rows": "3", "runtime_params": "1"}),
    ("mel", {"frames": "24", "tile_frames": "4", "fifo_depth": "1"}),
    ("matmul", {}),
    ("matmul", {"M": "160", "K": "64", "N": "64", "tm": "16", "tk": "32", "tn": "32"}),
    ("matmul", {**MATMUL_TWO, "runtime_params": "1"}),
    ("matmul", {**MATMUL_TWO, "runtime_params": "1", "epilogue": "gelu"}),
    ("mha", MHA_ONE),
    ("mha", {**MHA_ONE, "runtime_params": "1"}),
    ("mha", {**MHA_TWO, "causal": "1"}),
    ("mha", {**MHA_TWO, "runtime_params": "1"}),
    ("mha", {**MHA_TWO, "packed_qkv": "1"}),
    ("mha", {**MHA_TWO, "packed_qkv": "1", "runtime_params": "1", "causal": "1"}),
]


@pytest.mark.parametrize(("kernel", "params"), TOKEN_SETS,
                         ids=[f"{k}-{'-'.join(f'{a}{b}' for a, b in p.items())}"
                              for k, p in TOKEN_SETS])
def test_rendered_runtime_sequences_follow_the_token_rule(kernel: str,
                                                          params: dict[str, str]) -> None:
    """Only transfers a later wait takes the token of issue one; each wait takes exactly one."""
    spec = spec_from_params(kernel, params)
    text = render(spec).files[DESIGN_NAME]
    check_design(spec, text)
    design = read_design(text)
    waited = {step.fifo for step in design.sequence if isinstance(step, WaitSpec)}
    for step in design.sequence:
        if isinstance(step, TransferSpec) and step.issue_token:
            assert step.fifo in waited, f"line {step.line}: @{step.fifo} issues a token"
    assert "waits" in check_tokens(design)


def _mha_text(params: dict[str, str]) -> str:
    return render(spec_from_params("mha", params)).files[DESIGN_NAME]


def test_a_stale_token_that_would_end_a_wait_early_is_refused() -> None:
    """mha with runtime_params=1 waits on @qk for P: a token left by a Q transfer before it (as
    the previous invocation's Q/K transfers left theirs) would end that wait before P is sent."""
    params = {**MHA_ONE, "runtime_params": "1"}
    spec = spec_from_params("mha", params)
    text = _mha_text(params)
    check_design(spec, text)
    # Q of the first pass issues a token again: nobody takes it, the next invocation's P wait would.
    q_line = re.search(r"aiex\.npu\.dma_memcpy_nd\(%q\[.*id = 0 : i64\}", text)
    assert q_line is not None
    stale = text.replace(q_line.group(0), q_line.group(0)[:-1] + ", issue_token = true}", 1)
    with pytest.raises(DesignError, match=r"dma_memcpy_nd issues a task-completion token on "
                                          r"@qk0 that no later"):
        check_design(spec, stale)
    # Moved in front of P's wait, the same token is the one that wait takes first.
    p_wait = "      aiex.npu.dma_wait {symbol = @qk0}\n"
    early = stale.replace(q_line.group(0) + ", issue_token = true}", "", 1)
    early = early.replace(p_wait, "      " + q_line.group(0)[:-1] + ", issue_token = true}"
                          + text[q_line.end():].split("\n", 1)[0] + "\n" + p_wait, 1)
    with pytest.raises(DesignError, match=r"dma_wait on @qk0: covers 2 token-issuing transfers "
                                          r"on @qk0 .* returns on the first to arrive"):
        check_design(spec, early)


def test_a_wait_with_no_token_pending_is_refused() -> None:
    params = {**MHA_ONE, "runtime_params": "1"}
    spec = spec_from_params("mha", params)
    p_wait = "      aiex.npu.dma_wait {symbol = @qk0}\n"
    text = _mha_text(params).replace(p_wait, p_wait * 2, 1)
    with pytest.raises(DesignError, match=r"dma_wait on @qk0: no transfer was issued on @qk0 "
                                          r"since the last wait"):
        check_design(spec, text)

"""Designs outside the supported subset are refused at load, naming the op and its line."""

from pathlib import Path

import pytest

from runtime.emulator import DesignSyntaxError, UnsupportedOpError, load_design
from runtime.errors import DesignError
from tests.emulator import designs

GOOD = designs.one_core()


def broken(old: str, new: str, text: str = GOOD) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, snippet: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if snippet in line)


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        (
            "      aie.end\n",
            "      %l = aie.lock(%core, 0)\n      aie.end\n",
            "aie.lock",
            "`aie.lock` is not supported",
        ),
        (
            "%k = arith.constant 1 : i32\n",
            "%k = arith.constant 1 : i32\n      %q = arith.divsi %n, %k : i32\n",
            "arith.divsi",
            "`arith.divsi` is not supported",
        ),
        (
            "aie.device(npu1_1col)",
            "aie.device(npu1_4col)",
            "aie.device",
            "names no known device",
        ),
        (
            "%core = aie.tile(0, 2)",
            "%core = aie.tile(1, 2)",
            "aie.tile(1, 2)",
            "outside the device's 1 column",
        ),
        (
            "aie.runtime_sequence(",
            "aiex.runtime_sequence(",
            "aiex.runtime_sequence",
            "`aiex.runtime_sequence` is not supported",
        ),
        (
            "{metadata = @outq, id = 0",
            "{metadata = @nowhere, id = 0",
            "@nowhere",
            "@nowhere, which is not an object FIFO",
        ),
        (
            "%b = aie.objectfifo.acquire @outq(Produce, 1)",
            "%b = aie.objectfifo.acquire @outq(Consume, 1)",
            "acquire @outq",
            "not among its consumers",
        ),
        (
            "[0, 0, 0, 1]) {metadata = @inq",
            "[0, 1]) {metadata = @inq",
            "metadata = @inq",
            "4 offsets, 4 sizes and 4 strides",
        ),
        (
            "func.call @add_i32(%x, %y, %n, %k) : (memref<64xi32>, memref<64xi32>, i32, i32)",
            "func.call @add_i32(%x, %y, %n, %c1) : (memref<64xi32>, memref<64xi32>, i32, index)",
            "func.call",
            "declared at line",
        ),
    ],
)
def test_unsupported_forms_name_op_and_line(old: str, new: str, marker: str, message: str) -> None:
    text = broken(old, new)
    with pytest.raises(UnsupportedOpError) as err:
        load_design(text)
    assert message in str(err.value)
    assert f"aie.mlir:{line_of(text, marker)}:" in str(err.value)


def test_bad_syntax_names_the_line() -> None:
    text = broken("@inq(Consume, 1) :", "@inq(Consum, 1) :")
    with pytest.raises(DesignSyntaxError, match=f"aie.mlir:{line_of(text, 'Consum,')}:"):
        load_design(text)


def test_a_link_whose_parts_do_not_fit_is_refused() -> None:
    text = broken("([] [0, 64])", "([] [0, 96])", designs.split_join())
    with pytest.raises(UnsupportedOpError, match="@in1 at offset 96") as err:
        load_design(text)
    assert f"aie.mlir:{line_of(text, 'objectfifo.link [@in]')}:" in str(err.value)


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ("[0, 32]", "@in1 at offset 32 overlaps @in0"),
        ("[0, 0]", "overlaps"),
        ("[32, 64]", "leaves elements 0..31 of @in to no FIFO"),
    ],
)
def test_split_offsets_must_tile_the_element(offsets: str, message: str) -> None:
    text = broken("([] [0, 64])", f"([] {offsets})", designs.split_join())
    with pytest.raises(UnsupportedOpError, match=message) as err:
        load_design(text)
    assert f"aie.mlir:{line_of(text, 'objectfifo.link [@in]')}:" in str(err.value)


def test_join_offsets_must_tile_the_element() -> None:
    # A 32-element second part leaves the last 32 of the 128 elements of @out unwritten.
    text = broken(
        "aie.objectfifo @out1(%c3, {%mem}, 2 : i32) : !aie.objectfifo<memref<64xi32>>",
        "aie.objectfifo @out1(%c3, {%mem}, 2 : i32) : !aie.objectfifo<memref<32xi32>>",
        designs.split_join(),
    )
    with pytest.raises(UnsupportedOpError, match=r"leaves elements 96\.\.127 of @out's 128") as err:
        load_design(text)
    assert f"aie.mlir:{line_of(text, 'objectfifo.link [@out0')}:" in str(err.value)


def test_a_missing_host_library_is_named(tmp_path: Path) -> None:
    with pytest.raises(DesignError, match=r"links with 'kernels\.o', but no host library"):
        load_design(GOOD, libraries={"other.o": tmp_path / "libother.so"})


def test_a_missing_symbol_is_named(core_lib: Path) -> None:
    text = GOOD.replace("@add_i32", "@add_i64")
    with pytest.raises(DesignError, match=r"symbol 'add_i64' not found"):
        load_design(text, libraries={"kernels.o": core_lib})


def test_design_errors_are_design_errors() -> None:
    assert issubclass(UnsupportedOpError, DesignError)
    assert issubclass(DesignSyntaxError, DesignError)


def test_a_missing_design_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DesignError, match="cannot read the design"):
        load_design(str(tmp_path / "nope.mlir"))


def test_a_buffer_of_another_tile_is_refused() -> None:
    text = broken(
        "    aie.core(%core) {",
        "    %far = aie.tile(0, 3)\n    %buf = aie.buffer(%far) : memref<64xi32>\n"
        "    aie.core(%core) {",
    )
    text = broken("func.call @add_i32(%x, %y,", "func.call @add_i32(%x, %buf,", text)
    with pytest.raises(UnsupportedOpError, match="only a core's own buffers") as err:
        load_design(text)
    assert f"aie.mlir:{line_of(text, 'func.call')}:" in str(err.value)


def _moved_through_mem_tile(elem: str, n: int, dims: str) -> str:
    """Host -> mem tile -> host, the mem tile streaming each element out through `dims`."""
    return designs.DATA_MOVEMENT_ONLY.replace("4x16xi32", f"{n}x{elem}").replace(
        "[<size = 16, stride = 1>, <size = 4, stride = 16>]", dims
    ).replace("192xi32", f"{3 * n}x{elem}").replace("1, 192]", f"1, {3 * n}]")


@pytest.mark.parametrize(
    ("elem", "dims", "message"),
    [
        # A stride is a whole number of words even where its size is 1 (verifyStridesWraps).
        ("i8", "[<size = 1, stride = 3>, <size = 64, stride = 1>]", "stride 3 x 1 bytes"),
        ("i16", "[<size = 1, stride = 5>, <size = 64, stride = 1>]", "stride 5 x 2 bytes"),
        ("i16", "[<size = 2, stride = 32>, <size = 32, stride = 2>]", "innermost stride 2"),
        ("i8", "[<size = 32, stride = 2>, <size = 2, stride = 1>]", "innermost size 2 x 1"),
        ("i32", "[<size = 2, stride = 0>, <size = 32, stride = 1>]", "zero stride"),
    ],
)
def test_dimensions_to_stream_follow_the_bd_word_rules(elem: str, dims: str, message: str) -> None:
    text = _moved_through_mem_tile(elem, 64, dims)
    assert dims in text
    with pytest.raises(UnsupportedOpError, match=message) as err:
        load_design(text)
    assert f"aie.mlir:{line_of(text, 'dimensionsToStream')}:" in str(err.value)


def test_word_aligned_dimensions_to_stream_on_narrow_elements_load() -> None:
    # 64 int8 as 16 rows of 4 bytes, read column-word by column-word: strides of 4 bytes.
    dims = "[<size = 2, stride = 32>, <size = 32, stride = 1>]"
    load_design(_moved_through_mem_tile("i8", 64, dims))

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

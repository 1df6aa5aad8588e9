"""The aie/aiex operations npukit designs use, defined for xDSL's parser.

Only parsing matters here: each op reads its mlir-aie custom assembly into plain operands,
results, regions and attributes, which `reader.py` then turns into the emulator's model.
The ops are declared with a custom `parse` rather than xDSL's declarative assembly format,
because several of them use punctuation that format cannot express (bare device names,
`{%a, %b}` consumer lists, `[...] -> [...] ([...] [...])` links, `%a[..][..][..]` accesses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from xdsl.dialects.builtin import (
    ArrayAttr,
    IndexType,
    IntAttr,
    MemRefType,
    StringAttr,
    SymbolRefAttr,
    TensorType,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, Region, TypeAttribute
from xdsl.irdl import IRDLOperation, irdl_attr_definition, irdl_op_definition, traits_def
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import IsTerminator

_INDEX = IndexType()


def _ints(values: Sequence[int]) -> ArrayAttr[IntAttr]:
    return ArrayAttr(IntAttr(v) for v in values)


def _parse_int_list(parser: Parser) -> list[int]:
    """`[1, 2, 3]` -> [1, 2, 3]; only literal integers (no SSA values) are understood."""
    return parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)


def _parse_dims(parser: Parser) -> list[tuple[int, int]]:
    """`[<size = N, stride = M>, ...]`: a DMA access pattern, outermost first."""

    def one() -> tuple[int, int]:
        parser.parse_punctuation("<")
        parser.parse_keyword("size")
        parser.parse_punctuation("=")
        size = parser.parse_integer()
        parser.parse_punctuation(",")
        parser.parse_keyword("stride")
        parser.parse_punctuation("=")
        stride = parser.parse_integer()
        parser.parse_punctuation(">")
        return size, stride

    return parser.parse_comma_separated_list(parser.Delimiter.SQUARE, one)


def _dims_attr(dims: list[tuple[int, int]]) -> ArrayAttr[ArrayAttr[IntAttr]]:
    return ArrayAttr(_ints(d) for d in dims)


def _parse_element_memref(parser: AttrParser) -> MemRefType:
    with parser.in_angle_brackets():
        elem = parser.parse_type()
    if not isinstance(elem, MemRefType):
        parser.raise_error("expected a memref element type")
    return elem


class _ElementTyped:
    """Parsing and printing of a type whose one parameter is a memref: `!name<memref<...>>`."""

    element: MemRefType

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[MemRefType]:
        return (_parse_element_memref(parser),)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_attribute(self.element)


@irdl_attr_definition
class ObjectFifoType(_ElementTyped, ParametrizedAttribute, TypeAttribute):
    """`!aie.objectfifo<memref<...>>`: the type of an object FIFO, by its element."""

    name = "aie.objectfifo"
    element: MemRefType


@irdl_attr_definition
class ObjectFifoSubviewType(_ElementTyped, ParametrizedAttribute, TypeAttribute):
    """`!aie.objectfifosubview<memref<...>>`: what an acquire returns."""

    name = "aie.objectfifosubview"
    element: MemRefType


class _AieOp(IRDLOperation):
    """Base of the ops below: operands, results, regions and attributes are free-form."""

    @classmethod
    def _make(
        cls,
        parser: Parser,
        *,
        operands: Sequence = (),
        result_types: Sequence[Attribute] = (),
        attributes: dict[str, Attribute] | None = None,
        regions: Sequence[Region] = (),
    ) -> Self:
        attrs = dict(attributes or {})
        extra = parser.parse_optional_attr_dict()
        attrs.update(extra)
        return cls.create(
            operands=operands, result_types=result_types, attributes=attrs, regions=regions
        )


@irdl_op_definition
class DeviceOp(_AieOp):
    """`aie.device(npu1_1col) { ... }`."""

    name = "aie.device"

    @classmethod
    def parse(cls, parser: Parser) -> DeviceOp:
        parser.parse_punctuation("(")
        device = parser.parse_identifier()
        parser.parse_punctuation(")")
        attrs: dict[str, Attribute] = {"device": StringAttr(device)}
        if (sym := parser.parse_optional_symbol_name()) is not None:
            attrs["sym_name"] = sym
        region = parser.parse_region()
        return cls._make(parser, attributes=attrs, regions=[region])


@irdl_op_definition
class TileOp(_AieOp):
    """`%t = aie.tile(col, row)`."""

    name = "aie.tile"

    @classmethod
    def parse(cls, parser: Parser) -> TileOp:
        parser.parse_punctuation("(")
        col = parser.parse_integer()
        parser.parse_punctuation(",")
        row = parser.parse_integer()
        parser.parse_punctuation(")")
        attrs: dict[str, Attribute] = {"col": IntAttr(col), "row": IntAttr(row)}
        return cls._make(parser, result_types=[_INDEX], attributes=attrs)


@irdl_op_definition
class ObjectFifoOp(_AieOp):
    """`aie.objectfifo @n(%p [dimensionsToStream [..]], {%c, ..}, depth) : !aie.objectfifo<..>`.

    Operand 0 is the producer tile, the rest the consumer tiles. The depth is kept as given
    (one number, or one per endpoint).
    """

    name = "aie.objectfifo"

    @classmethod
    def parse(cls, parser: Parser) -> ObjectFifoOp:
        sym = parser.parse_symbol_name()
        parser.parse_punctuation("(")
        producer = parser.parse_operand(_INDEX)
        attrs: dict[str, Attribute] = {"sym_name": sym}
        if parser.parse_optional_keyword("dimensionsToStream"):
            attrs["dims_to_stream"] = _dims_attr(_parse_dims(parser))
        parser.parse_punctuation(",")
        consumers = []
        from_stream = []

        def consumer() -> None:
            consumers.append(parser.parse_operand(_INDEX))
            if parser.parse_optional_keyword("dimensionsFromStream"):
                from_stream.append(_dims_attr(_parse_dims(parser)))

        parser.parse_comma_separated_list(parser.Delimiter.BRACES, consumer)
        if from_stream:
            attrs["dims_from_stream"] = ArrayAttr(from_stream)
        parser.parse_punctuation(",")
        if parser.parse_optional_punctuation("["):
            depths = [parser.parse_integer()]
            parser.parse_punctuation(":")
            parser.parse_type()
            while parser.parse_optional_punctuation(","):
                depths.append(parser.parse_integer())
                parser.parse_punctuation(":")
                parser.parse_type()
            parser.parse_punctuation("]")
        else:
            depths = [parser.parse_integer()]
            parser.parse_punctuation(":")
            parser.parse_type()
        attrs["depth"] = _ints(depths)
        parser.parse_punctuation(")")
        extra = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        fifo_type = parser.parse_type()
        if not isinstance(fifo_type, ObjectFifoType):
            parser.raise_error("expected !aie.objectfifo<memref<...>>")
        attrs.update(extra)
        attrs["element"] = fifo_type
        return cls.create(operands=[producer, *consumers], attributes=attrs)


@irdl_op_definition
class ObjectFifoLinkOp(_AieOp):
    """`aie.objectfifo.link [@a, ..] -> [@b, ..] ([src offsets] [dst offsets])`."""

    name = "aie.objectfifo.link"

    @classmethod
    def parse(cls, parser: Parser) -> ObjectFifoLinkOp:
        srcs = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_symbol_name)
        parser.parse_punctuation("->")
        dsts = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_symbol_name)
        parser.parse_punctuation("(")
        src_offsets = _parse_int_list(parser)
        dst_offsets = _parse_int_list(parser)
        parser.parse_punctuation(")")
        attrs: dict[str, Attribute] = {
            "srcs": ArrayAttr(srcs),
            "dsts": ArrayAttr(dsts),
            "src_offsets": _ints(src_offsets),
            "dst_offsets": _ints(dst_offsets),
        }
        return cls._make(parser, attributes=attrs)


@irdl_op_definition
class BufferOp(_AieOp):
    """`%b = aie.buffer(%tile) {sym_name = "b"} : memref<..> [= dense<..>]`: tile-local memory."""

    name = "aie.buffer"

    @classmethod
    def parse(cls, parser: Parser) -> BufferOp:
        parser.parse_punctuation("(")
        tile = parser.parse_operand(_INDEX)
        parser.parse_punctuation(")")
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        buf_type = parser.parse_type()
        if parser.parse_optional_punctuation("="):
            # mlir-aie prints the initial value without a type: it is the buffer's.
            parser.parse_keyword("dense")
            if not isinstance(buf_type, MemRefType):
                parser.raise_error("expected a memref buffer type")
            literal_type = TensorType(buf_type.element_type, buf_type.get_shape())
            attrs["initial_value"] = parser.parse_dense_int_or_fp_elements_attr(literal_type)
        return cls.create(operands=[tile], result_types=[buf_type], attributes=attrs)


@irdl_op_definition
class CoreOp(_AieOp):
    """`aie.core(%t) { ... aie.end } {stack_size = N : i32}`."""

    name = "aie.core"

    @classmethod
    def parse(cls, parser: Parser) -> CoreOp:
        parser.parse_punctuation("(")
        tile = parser.parse_operand(_INDEX)
        parser.parse_punctuation(")")
        region = parser.parse_region()
        return cls._make(parser, operands=[tile], regions=[region])


@irdl_op_definition
class EndOp(_AieOp):
    """`aie.end`: the terminator of a core body."""

    name = "aie.end"
    traits = traits_def(IsTerminator())

    @classmethod
    def parse(cls, parser: Parser) -> EndOp:
        return cls._make(parser)


def _parse_port(parser: Parser) -> dict[str, Attribute]:
    """`@fifo(Consume|Produce, N)` of an acquire or release."""
    sym = parser.parse_symbol_name()
    parser.parse_punctuation("(")
    port = parser.parse_identifier()
    if port not in ("Consume", "Produce"):
        parser.raise_error(f"expected Consume or Produce, got {port}")
    parser.parse_punctuation(",")
    count = parser.parse_integer()
    parser.parse_punctuation(")")
    return {"fifo": SymbolRefAttr(sym), "port": StringAttr(port), "count": IntAttr(count)}


@irdl_op_definition
class AcquireOp(_AieOp):
    """`%s = aie.objectfifo.acquire @f(Consume, 1) : !aie.objectfifosubview<memref<..>>`."""

    name = "aie.objectfifo.acquire"

    @classmethod
    def parse(cls, parser: Parser) -> AcquireOp:
        attrs = _parse_port(parser)
        attrs.update(parser.parse_optional_attr_dict())
        parser.parse_punctuation(":")
        view = parser.parse_type()
        if not isinstance(view, ObjectFifoSubviewType):
            parser.raise_error("expected !aie.objectfifosubview<memref<...>>")
        return cls.create(result_types=[view], attributes=attrs)


@irdl_op_definition
class ReleaseOp(_AieOp):
    """`aie.objectfifo.release @f(Produce, 1)`."""

    name = "aie.objectfifo.release"

    @classmethod
    def parse(cls, parser: Parser) -> ReleaseOp:
        return cls._make(parser, attributes=_parse_port(parser))


@irdl_op_definition
class SubviewAccessOp(_AieOp):
    """`%x = aie.objectfifo.subview.access %s[i] : !aie.objectfifosubview<T> -> T`."""

    name = "aie.objectfifo.subview.access"

    @classmethod
    def parse(cls, parser: Parser) -> SubviewAccessOp:
        view = parser.parse_unresolved_operand()
        parser.parse_punctuation("[")
        index = parser.parse_integer()
        parser.parse_punctuation("]")
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        view_type = parser.parse_type()
        parser.parse_punctuation("->")
        result = parser.parse_type()
        attrs["index"] = IntAttr(index)
        return cls.create(
            operands=[parser.resolve_operand(view, view_type)],
            result_types=[result],
            attributes=attrs,
        )


@irdl_op_definition
class RuntimeSequenceOp(_AieOp):
    """`aie.runtime_sequence [@name] (%a : memref<..>, ...) { ... }`: the host program."""

    name = "aie.runtime_sequence"

    @classmethod
    def parse(cls, parser: Parser) -> RuntimeSequenceOp:
        attrs: dict[str, Attribute] = {}
        if (sym := parser.parse_optional_symbol_name()) is not None:
            attrs["sym_name"] = sym
        args = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_argument)
        region = parser.parse_region(args)
        return cls._make(parser, attributes=attrs, regions=[region])


@irdl_op_definition
class DmaMemcpyNdOp(_AieOp):
    """`aiex.npu.dma_memcpy_nd(%a[offsets][sizes][strides]) {metadata = @f, ..} : memref<..>`."""

    name = "aiex.npu.dma_memcpy_nd"

    @classmethod
    def parse(cls, parser: Parser) -> DmaMemcpyNdOp:
        parser.parse_punctuation("(")
        buf = parser.parse_unresolved_operand()
        offsets = _parse_int_list(parser)
        sizes = _parse_int_list(parser)
        strides = _parse_int_list(parser)
        parser.parse_punctuation(")")
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        buf_type = parser.parse_type()
        attrs.update({"offsets": _ints(offsets), "sizes": _ints(sizes), "strides": _ints(strides)})
        return cls.create(operands=[parser.resolve_operand(buf, buf_type)], attributes=attrs)


@irdl_op_definition
class DmaWaitOp(_AieOp):
    """`aiex.npu.dma_wait {symbol = @f}`."""

    name = "aiex.npu.dma_wait"

    @classmethod
    def parse(cls, parser: Parser) -> DmaWaitOp:
        return cls._make(parser)


AIE = Dialect(
    "aie",
    [
        DeviceOp,
        TileOp,
        BufferOp,
        ObjectFifoOp,
        ObjectFifoLinkOp,
        CoreOp,
        EndOp,
        AcquireOp,
        ReleaseOp,
        SubviewAccessOp,
        RuntimeSequenceOp,
    ],
    [ObjectFifoType, ObjectFifoSubviewType],
)
AIEX = Dialect("aiex", [DmaMemcpyNdOp, DmaWaitOp], [])

"""Reading xDSL attributes and types into plain Python values, and the error for an op."""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    Float16Type,
    Float32Type,
    IntAttr,
    IntegerType,
    MemRefType,
    NoneAttr,
    Signedness,
    StringAttr,
    SymbolRefAttr,
)
from xdsl.ir import Attribute, Operation

from runtime.emulator.faults import UnsupportedOpError
from runtime.emulator.reader import line_of


class Fail:
    """Builds the DesignError for an op: `aie.mlir:LINE: `op.name` <why>`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, op: Operation, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.source}:{line_of(op)}: `{op.name}` {why}")


def dtype_of(elem: Attribute) -> np.dtype:
    """The numpy dtype of a memref element type (bf16 travels as its raw 16 bits: uint16)."""
    if isinstance(elem, IntegerType):
        width = elem.width.data
        unsigned = elem.signedness.data == Signedness.UNSIGNED
        if width in (8, 16, 32, 64):
            return np.dtype(f"{'u' if unsigned else ''}int{width}")
    if isinstance(elem, Float32Type):
        return np.dtype(np.float32)
    if isinstance(elem, Float16Type):
        return np.dtype(np.float16)
    if isinstance(elem, BFloat16Type):
        return np.dtype(np.uint16)
    raise TypeError(f"element type {elem} is not supported")


def memref_of(fail: Fail, op: Operation, t: Attribute) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a static memref type; anything else is a DesignError on `op`."""
    if not isinstance(t, MemRefType):
        raise fail(op, f"expects a memref, got {t}")
    shape = tuple(t.get_shape())
    if any(d < 0 for d in shape):
        raise fail(op, f"uses a dynamic shape {t}; only static memrefs are supported")
    if not isinstance(t.layout, NoneAttr):
        raise fail(op, f"uses a memref layout ({t}); not supported")
    try:
        return shape, dtype_of(t.element_type)
    except TypeError as exc:
        raise fail(op, str(exc)) from None


def ints(attr: Attribute) -> tuple[int, ...]:
    """The integers of an ArrayAttr of IntAttr (as dialect.py stores lists)."""
    assert isinstance(attr, ArrayAttr)
    return tuple(a.data for a in attr.data if isinstance(a, IntAttr))


def sym(attr: Attribute | None) -> str | None:
    """The name in `@name` (or a plain string attribute), else None."""
    if isinstance(attr, SymbolRefAttr):
        return attr.root_reference.data
    if isinstance(attr, StringAttr):
        return attr.data
    return None

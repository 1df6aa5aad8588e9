"""Compile an `aie.core` body (xDSL ops) into the emulator's instruction list (program.py).

Values become numbered slots; every op outside the supported subset is a DesignError that
names it and its line.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Protocol

from xdsl.dialects import arith, func, scf
from xdsl.dialects.builtin import IntAttr, IntegerAttr, StringAttr
from xdsl.ir import Block, Operation, SSAValue

from runtime.emulator import dialect as aie
from runtime.emulator.attrs import Fail, memref_of, sym
from runtime.emulator.faults import UnsupportedOpError
from runtime.emulator.model import BufferSpec, FifoSpec, FuncSpec, Tile
from runtime.emulator.program import (
    Access,
    Acquire,
    Arith,
    Call,
    Cast,
    Const,
    For,
    Release,
)
from runtime.emulator.reader import line_of

_ARITH: dict[str, Callable[[int, int], int]] = {
    "arith.addi": operator.add,
    "arith.subi": operator.sub,
    "arith.muli": operator.mul,
}


class CoreScope(Protocol):
    """What a core body may refer to: the device's FIFOs, functions and buffers."""

    @property
    def fail(self) -> Fail: ...
    @property
    def source(self) -> str: ...
    @property
    def fifos(self) -> Mapping[str, FifoSpec]: ...
    @property
    def funcs(self) -> Mapping[str, FuncSpec]: ...
    @property
    def buffers(self) -> Mapping[str, BufferSpec]: ...
    @property
    def buffer_values(self) -> Mapping[SSAValue, str]: ...


class CoreCompiler:
    """Compiles one core body: SSA values to slots, ops to program instructions."""

    def __init__(self, device: CoreScope, tile: Tile) -> None:
        self.device = device
        self.fail = device.fail
        self.tile = tile
        self.slots: dict[SSAValue, int] = {}
        self.views: dict[SSAValue, Acquire] = {}
        self.kinds: dict[SSAValue, str] = {}
        self.buffer_slots: dict[str, int] = {}
        # Slots holding the address of a FIFO element (the result of a subview access).
        self.element_slots: set[int] = set()

    def _new(self, value: SSAValue, kind: str) -> int:
        self.slots[value] = len(self.slots)
        self.kinds[value] = kind
        return self.slots[value]

    def _use(self, op: Operation, value: SSAValue, kind: str) -> int:
        if value not in self.slots and value in self.device.buffer_values:
            name = self.device.buffer_values[value]
            buffer = self.device.buffers[name]
            if buffer.tile != self.tile:
                raise self.fail(
                    op,
                    f"uses buffer {name} of {buffer.tile} from the core on {self.tile}; "
                    "only a core's own buffers are supported",
                )
            self.buffer_slots[name] = self._new(value, "ptr")
        if value not in self.slots:
            raise self.fail(op, "uses a value defined outside the core body; not supported")
        if self.kinds[value] != kind:
            raise self.fail(op, f"expects a {kind} operand, got a {self.kinds[value]}")
        return self.slots[value]

    def block(self, block: Block, terminator: str) -> tuple:
        out: list = []
        ops = list(block.ops)
        if not ops or ops[-1].name != terminator:
            raise UnsupportedOpError(
                f"{self.device.source}:{line_of(block.parent_op() or ops[-1])}: body must end "
                f"with {terminator}"
            )
        for op in ops[:-1]:
            out.append(self._op(op))
        last = ops[-1]
        if last.operands:
            raise self.fail(last, "with operands is not supported (no loop-carried values)")
        return tuple(out)

    def _op(self, op: Operation):
        fail = self.fail
        if isinstance(op, arith.ConstantOp):
            value = op.value
            if not isinstance(value, IntegerAttr):
                raise fail(op, "of a non-integer value is not supported")
            return Const(self._new(op.results[0], "int"), value.value.data)
        if op.name in _ARITH:
            a = self._use(op, op.operands[0], "int")
            b = self._use(op, op.operands[1], "int")
            return Arith(self._new(op.results[0], "int"), _ARITH[op.name], a, b)
        if isinstance(op, arith.IndexCastOp):
            src = self._use(op, op.operands[0], "int")
            return Cast(self._new(op.results[0], "int"), src)
        if isinstance(op, scf.ForOp):
            if op.iter_args or op.res:
                raise fail(op, "with iter_args is not supported")
            lb = self._use(op, op.lb, "int")
            ub = self._use(op, op.ub, "int")
            step = self._use(op, op.step, "int")
            body_block = op.body.blocks[0]
            iv = self._new(body_block.args[0], "int")
            body = self.block(body_block, terminator="scf.yield")
            return For(iv, lb, ub, step, body, line_of(op))
        if isinstance(op, aie.AcquireOp):
            name, produce, count = self._port(op)
            acq = Acquire(self._new(op.results[0], "view"), name, produce, count, line_of(op))
            self.views[op.results[0]] = acq
            return acq
        if isinstance(op, aie.SubviewAccessOp):
            view = op.operands[0]
            slot = self._use(op, view, "view")
            acq = self.views[view]
            index = op.attributes["index"]
            assert isinstance(index, IntAttr)
            if not 0 <= index.data < acq.n:
                raise fail(op, f"reads element {index.data} of an acquire of {acq.n}")
            fifo = self.device.fifos[acq.fifo]
            shape, dtype = memref_of(fail, op, op.results[0].type)
            if (shape, dtype) != (fifo.shape, fifo.dtype):
                raise fail(
                    op,
                    f"returns {op.results[0].type}, but @{acq.fifo} holds "
                    f"{fifo.shape} of {fifo.dtype}",
                )
            dst = self._new(op.results[0], "ptr")
            self.element_slots.add(dst)
            return Access(dst, slot, acq.fifo, index.data, line_of(op), acq.produce, acq.line)
        if isinstance(op, aie.ReleaseOp):
            name, produce, count = self._port(op)
            return Release(name, produce, count, line_of(op))
        if isinstance(op, func.CallOp):
            return self._call(op)
        raise fail(op, "is not supported in a core body by the emulator")

    def _port(self, op: Operation) -> tuple[str, bool, int]:
        name = sym(op.attributes["fifo"])
        port = op.attributes["port"]
        count_attr = op.attributes["count"]
        assert name is not None and isinstance(port, StringAttr)
        assert isinstance(count_attr, IntAttr)
        count = count_attr.data
        if name not in self.device.fifos:
            raise self.fail(op, f"uses @{name}, which is not an object FIFO")
        fifo = self.device.fifos[name]
        produce = port.data == "Produce"
        if produce and fifo.producer != self.tile:
            raise self.fail(
                op, f"produces into @{name} from {self.tile}, but its producer is {fifo.producer}"
            )
        if not produce and self.tile not in fifo.consumers:
            raise self.fail(
                op, f"consumes @{name} on {self.tile}, which is not among its consumers"
            )
        if count < 1:
            raise self.fail(op, f"count {count} must be at least 1")
        return name, produce, count

    def _call(self, op: func.CallOp) -> Call:
        callee = op.callee.root_reference.data
        spec = self.device.funcs.get(callee)
        if spec is None:
            raise self.fail(
                op, f"calls @{callee}, which has no func.func declaration before the core"
            )
        if op.res:
            raise self.fail(op, "returns values; not supported")
        if len(op.arguments) != len(spec.arg_kinds):
            raise self.fail(
                op,
                f"passes {len(op.arguments)} arguments to @{callee}, declared "
                f"with {len(spec.arg_kinds)}",
            )
        passed = tuple(str(v.type) for v in op.arguments)
        if passed != spec.arg_types:
            raise self.fail(
                op,
                f"passes ({', '.join(passed)}) to @{callee}, declared at line {spec.line} "
                f"as ({', '.join(spec.arg_types)})",
            )
        slots = []
        for value, kind in zip(op.arguments, spec.arg_kinds, strict=True):
            slots.append(self._use(op, value, "ptr" if kind == "ptr" else "int"))
        fifo_args = tuple((i, s) for i, s in enumerate(slots) if s in self.element_slots)
        return Call(callee, tuple(slots), line_of(op), fifo_args)

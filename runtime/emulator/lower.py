"""Turn the parsed xDSL module into the emulator's model, rejecting whatever it cannot model.

Every rejection is a DesignError subclass that names the op and its line: an op outside the
subset is never skipped, because a skipped op would make the emulator disagree with the NPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseIntOrFPElementsAttr,
    Float32Type,
    IndexType,
    IntAttr,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    StringAttr,
)
from xdsl.ir import Block, BlockArgument, Operation, SSAValue

from runtime.emulator import dialect as aie
from runtime.emulator.attrs import Fail, ints, memref_of, sym
from runtime.emulator.corebody import CoreCompiler
from runtime.emulator.dma import WORD_BYTES, check_bd_id, check_dma, dma_element_indices
from runtime.emulator.faults import UnsupportedOpError
from runtime.emulator.model import (
    MEM_TILE_ROW,
    SHIM_ROW,
    BufferSpec,
    CoreSpec,
    Design,
    FifoSpec,
    FuncSpec,
    LinkSpec,
    Tile,
    TransferSpec,
    WaitSpec,
)
from runtime.emulator.program import For, runs_forever
from runtime.emulator.reader import line_of

# Device names and their column counts (mlir-aie AIEAttrs.td; NPU_FACTS section 2).
DEVICE_COLUMNS = {
    "npu1": 4,
    **{f"npu1_{n}col": n for n in range(1, 4)},
    "npu2": 8,
    **{f"npu2_{n}col": n for n in range(1, 8)},
}
# Rows 2..5 are compute tiles on both Phoenix and Strix.
MAX_ROW = 5


def lower(module: ModuleOp, source: str) -> Design:
    """The Design of a parsed module."""
    fail = Fail(source)
    devices = []
    for op in module.ops:
        if not isinstance(op, aie.DeviceOp):
            raise fail(op, "outside aie.device is not supported")
        devices.append(op)
    if len(devices) != 1:
        raise UnsupportedOpError(f"{source}: expected exactly one aie.device, found {len(devices)}")
    return _DeviceLowering(devices[0], fail, source).run()


class _DeviceLowering:
    """One pass over an `aie.device` body, in source order."""

    def __init__(self, device: aie.DeviceOp, fail: Fail, source: str) -> None:
        self.device = device
        self.fail = fail
        self.source = source
        self.tiles: dict[SSAValue, Tile] = {}
        self.fifos: dict[str, FifoSpec] = {}
        self.fifo_ops: dict[str, Operation] = {}
        self.links: list[LinkSpec] = []
        self.funcs: dict[str, FuncSpec] = {}
        self.cores: list[CoreSpec] = []
        self.buffers: dict[str, BufferSpec] = {}
        self.buffer_values: dict[SSAValue, str] = {}
        self.sequence_op: aie.RuntimeSequenceOp | None = None
        self.columns = 0

    def run(self) -> Design:
        name = self.device.attributes["device"]
        assert isinstance(name, StringAttr)
        if name.data not in DEVICE_COLUMNS:
            raise self.fail(
                self.device,
                f"({name.data}) names no known device; expected one of "
                f"{', '.join(DEVICE_COLUMNS)} (npu1_4col was removed in 2025)",
            )
        self.columns = DEVICE_COLUMNS[name.data]
        ops = list(self.device.regions[0].ops) if self.device.regions else []
        for op in ops:
            self._top(op)
        self._check_links()
        core_ops = [op for op in ops if isinstance(op, aie.CoreOp)]
        for op in core_ops:
            self.cores.append(self._core(op))
        if self.sequence_op is None:
            raise UnsupportedOpError(f"{self.source}: the design has no aie.runtime_sequence")
        args, sequence = self._sequence(self.sequence_op)
        device = self.device.attributes["device"]
        assert isinstance(device, StringAttr)
        return Design(
            name=self.source,
            device=device.data,
            tiles={str(t): t for t in self.tiles.values()},
            fifos=self.fifos,
            links=self.links,
            funcs=self.funcs,
            cores=self.cores,
            buffers=self.buffers,
            args=args,
            sequence=sequence,
        )

    # -- device-level ops -------------------------------------------------------------------

    def _top(self, op: Operation) -> None:
        if isinstance(op, aie.TileOp):
            col = op.attributes["col"]
            row = op.attributes["row"]
            assert isinstance(col, IntAttr) and isinstance(row, IntAttr)
            tile = Tile(col.data, row.data)
            if not (0 <= tile.col < self.columns and 0 <= tile.row <= MAX_ROW):
                raise self.fail(
                    op,
                    f"{tile} is outside the device's {self.columns} column(s) x {MAX_ROW + 1} rows",
                )
            if tile in self.tiles.values():
                raise self.fail(op, f"declares {tile} twice")
            self.tiles[op.results[0]] = tile
        elif isinstance(op, aie.BufferOp):
            self._buffer(op)
        elif isinstance(op, aie.ObjectFifoOp):
            self._fifo(op)
        elif isinstance(op, aie.ObjectFifoLinkOp):
            self._link(op)
        elif isinstance(op, func.FuncOp):
            self._func(op)
        elif isinstance(op, aie.CoreOp):
            pass  # lowered after all FIFOs and links are known
        elif isinstance(op, aie.RuntimeSequenceOp):
            if self.sequence_op is not None:
                raise self.fail(op, "appears twice; one runtime sequence is supported")
            self.sequence_op = op
        elif isinstance(op, aie.EndOp):
            pass
        else:
            raise self.fail(op, "is not supported inside aie.device by the emulator")

    def _tile(self, op: Operation, value: SSAValue) -> Tile:
        if value not in self.tiles:
            raise self.fail(op, "refers to a tile not declared by aie.tile")
        return self.tiles[value]

    def _buffer(self, op: aie.BufferOp) -> None:
        tile = self._tile(op, op.operands[0])
        name = sym(op.attributes.get("sym_name")) or f"buffer_line{line_of(op)}"
        if name in self.buffers:
            raise self.fail(op, f"declares buffer {name} twice")
        if tile.row < 2:
            raise self.fail(op, f"on {tile}: only compute-tile buffers are supported")
        shape, dtype = memref_of(self.fail, op, op.results[0].type)
        initial = None
        init = op.attributes.get("initial_value")
        if init is not None:
            if not isinstance(init, DenseIntOrFPElementsAttr):
                raise self.fail(op, f"initial value {init} is not supported (use dense<...>)")
            values = np.asarray(init.get_values())
            if values.size == 1:
                values = np.full(shape, values.reshape(-1)[0])
            if values.size != int(np.prod(shape)):
                raise self.fail(op, f"initial value has {values.size} values for {shape}")
            initial = values.astype(dtype).reshape(shape)
        self.buffers[name] = BufferSpec(name, line_of(op), tile, shape, dtype, initial)
        self.buffer_values[op.results[0]] = name

    def _fifo(self, op: aie.ObjectFifoOp) -> None:
        name = sym(op.attributes["sym_name"])
        assert name is not None
        if name in self.fifos:
            raise self.fail(op, f"declares @{name} twice")
        if "dims_from_stream" in op.attributes:
            raise self.fail(op, f"@{name}: dimensionsFromStream is not supported")
        depths = set(ints(op.attributes["depth"]))
        if len(depths) != 1:
            raise self.fail(op, f"@{name}: per-endpoint depths {sorted(depths)} are not supported")
        depth = depths.pop()
        if depth < 1:
            raise self.fail(op, f"@{name}: depth {depth} must be at least 1")
        fifo_type = op.attributes["element"]
        assert isinstance(fifo_type, aie.ObjectFifoType)
        shape, dtype = memref_of(self.fail, op, fifo_type.element)
        producer = self._tile(op, op.operands[0])
        consumers = tuple(self._tile(op, v) for v in op.operands[1:])
        if len(set(consumers)) != len(consumers) or producer in consumers:
            raise self.fail(op, f"@{name}: a tile appears twice among its endpoints")
        if sum(t.row == SHIM_ROW for t in (producer, *consumers)) > 1:
            raise self.fail(op, f"@{name}: more than one shim endpoint is not supported")
        order = None
        if "dims_to_stream" in op.attributes:
            if producer.row == SHIM_ROW:
                raise self.fail(
                    op,
                    f"@{name}: dimensionsToStream on a shim producer is not supported "
                    "(give the pattern in the runtime sequence's dma_memcpy_nd)",
                )
            dims_attr = op.attributes["dims_to_stream"]
            assert isinstance(dims_attr, ArrayAttr)
            dims = [ints(d) for d in dims_attr.data]
            order = _stream_order(
                self.fail, op, name, dims, int(np.prod(shape)), dtype.itemsize, producer
            )
        self.fifos[name] = FifoSpec(
            name, line_of(op), producer, consumers, depth, shape, dtype, order
        )
        self.fifo_ops[name] = op

    def _link(self, op: aie.ObjectFifoLinkOp) -> None:
        srcs = tuple(sym(a) or "" for a in op.attributes["srcs"].data)  # type: ignore[attr-defined]
        dsts = tuple(sym(a) or "" for a in op.attributes["dsts"].data)  # type: ignore[attr-defined]
        src_off = ints(op.attributes["src_offsets"])
        dst_off = ints(op.attributes["dst_offsets"])
        for name in (*srcs, *dsts):
            if name not in self.fifos:
                raise self.fail(op, f"links @{name}, which is not declared before it")
        if len(srcs) == 1:
            parts, whole, offsets, other = dsts, srcs[0], dst_off, src_off
        elif len(dsts) == 1:
            parts, whole, offsets, other = srcs, dsts[0], src_off, dst_off
        else:
            raise self.fail(op, "must link one FIFO to many (split) or many to one (join)")
        if other:
            raise self.fail(op, f"offsets on @{whole}'s side are not supported")
        if not offsets and len(parts) == 1:
            offsets = (0,)
        if len(offsets) != len(parts):
            raise self.fail(op, f"gives {len(offsets)} offsets for {len(parts)} FIFOs")
        split = len(srcs) == 1
        whole_fifo = self.fifos[whole]
        mem = whole_fifo.consumers[0] if split and whole_fifo.consumers else whole_fifo.producer
        for name, off in zip(parts, offsets, strict=True):
            part = self.fifos[name]
            if part.dtype != whole_fifo.dtype:
                raise self.fail(op, f"@{name} and @{whole} have different element types")
            if off < 0 or off + part.size > whole_fifo.size:
                raise self.fail(
                    op,
                    f"@{name} at offset {off} ({part.size} elements) does not fit in "
                    f"@{whole}'s {whole_fifo.size}-element buffer",
                )
            if len(parts) == 1 and part.size != whole_fifo.size:
                raise self.fail(
                    op,
                    f"@{name} ({part.size} elements) and @{whole} ({whole_fifo.size}) "
                    "differ in size; a 1:1 link must move whole elements",
                )
        gap = _tiling_problem(
            [(off, self.fifos[name].size, name) for name, off in zip(parts, offsets, strict=True)],
            whole,
            whole_fifo.size,
        )
        if gap:
            raise self.fail(op, gap)
        mems = {self.fifos[s].consumers for s in srcs} | {(self.fifos[d].producer,) for d in dsts}
        if mems != {(mem,)} or mem.row != MEM_TILE_ROW:
            raise self.fail(
                op,
                "must pass through one mem tile: the sources' only consumer and the "
                "destinations' producer",
            )
        self.links.append(LinkSpec(line_of(op), srcs, dsts, tuple(offsets)))

    def _check_links(self) -> None:
        linked_in = {s for link in self.links for s in link.srcs}
        linked_out = {d for link in self.links for d in link.dsts}
        for name, spec in self.fifos.items():
            op = self.fifo_ops[name]
            if any(t.row == MEM_TILE_ROW for t in spec.consumers) and name not in linked_in:
                raise self.fail(op, f"@{name} ends at a mem tile but no objectfifo.link reads it")
            if spec.producer.row == MEM_TILE_ROW and name not in linked_out:
                raise self.fail(op, f"@{name} starts at a mem tile but no objectfifo.link feeds it")
        uses = Counter(n for link in self.links for n in (*link.srcs, *link.dsts))
        for link in self.links:
            shared = [n for n in (*link.srcs, *link.dsts) if uses[n] > 1]
            if shared:
                raise UnsupportedOpError(
                    f"{self.source}:{link.line}: `aie.objectfifo.link` uses @{shared[0]} in "
                    "more than one place; each FIFO may appear in one link once"
                )

    def _func(self, op: func.FuncOp) -> None:
        name = op.sym_name.data
        if op.body.blocks:
            raise self.fail(
                op, f"@{name} has a body; only private declarations of core code are supported"
            )
        if op.function_type.outputs.data:
            raise self.fail(op, f"@{name} returns values; core functions must return nothing")
        kinds = []
        for t in op.function_type.inputs.data:
            if isinstance(t, MemRefType):
                memref_of(self.fail, op, t)
                kinds.append("ptr")
            elif isinstance(t, IndexType):
                kinds.append("index")
            elif isinstance(t, IntegerType) and t.width.data in (8, 16, 32, 64):
                kinds.append(f"i{t.width.data}")
            elif isinstance(t, Float32Type):
                kinds.append("f32")
            else:
                raise self.fail(op, f"@{name}: argument type {t} is not supported")
        link = op.attributes.get("link_with")
        self.funcs[name] = FuncSpec(
            name,
            line_of(op),
            link.data if isinstance(link, StringAttr) else None,
            tuple(kinds),
            tuple(str(t) for t in op.function_type.inputs.data),
        )

    # -- cores -------------------------------------------------------------------------------

    def _core(self, op: aie.CoreOp) -> CoreSpec:
        tile = self._tile(op, op.operands[0])
        if tile.row < 2:
            raise self.fail(op, f"on {tile}: cores run on compute tiles (row 2 and up)")
        if any(c.tile == tile for c in self.cores):
            raise self.fail(op, f"declares a second core on {tile}")
        if "link_with" in op.attributes:
            raise self.fail(
                op,
                "carries link_with; since 2026 it belongs on the func.func "
                "declaration (NPU_FACTS section 2)",
            )
        stack = op.attributes.get("stack_size")
        stack_size = stack.value.data if isinstance(stack, IntegerAttr) else None
        compiler = CoreCompiler(self, tile)
        body = compiler.block(op.regions[0].blocks[0], terminator="aie.end")
        loops = [ins for ins in body if isinstance(ins, For)]
        return CoreSpec(
            tile,
            line_of(op),
            body,
            stack_size,
            compiler.buffer_slots,
            runs_forever=runs_forever(body),
            end_line=loops[-1].line if loops else line_of(op),
        )

    # -- runtime sequence --------------------------------------------------------------------

    def _sequence(
        self, op: aie.RuntimeSequenceOp
    ) -> tuple[list[tuple[str, np.dtype, tuple[int, ...]]], list[TransferSpec | WaitSpec]]:
        block = op.regions[0].blocks[0]
        args: list[tuple[str, np.dtype, tuple[int, ...]]] = []
        for arg in block.args:
            shape, dtype = memref_of(self.fail, op, arg.type)
            args.append((arg.name_hint or f"arg{arg.index}", dtype, shape))
        steps: list[TransferSpec | WaitSpec] = []
        # FIFOs with a transfer issued on them so far.
        issued: set[str] = set()
        for inner in block.ops:
            if isinstance(inner, aie.DmaMemcpyNdOp):
                transfer = self._transfer(inner, block, args)
                issued.add(transfer.fifo)
                steps.append(transfer)
            elif isinstance(inner, aie.DmaWaitOp):
                name = sym(inner.attributes.get("symbol"))
                if name is None or name not in self.fifos:
                    raise self.fail(inner, f"waits on @{name}, which is not an object FIFO")
                if name not in issued:
                    raise self.fail(inner, f"waits on @{name} before any transfer on it")
                # Whether it takes the right token is the token rule's (runtime.emulator.tokens),
                # checked by the emulator as it runs and by codegen.checks before any build.
                steps.append(WaitSpec(line_of(inner), name))
            else:
                raise self.fail(inner, "is not supported in the runtime sequence")
        return args, steps

    def _transfer(
        self,
        op: aie.DmaMemcpyNdOp,
        block: Block,
        args: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
    ) -> TransferSpec:
        buf = op.operands[0]
        if not isinstance(buf, BlockArgument) or buf.block is not block:
            raise self.fail(op, "must move a runtime-sequence argument")
        name = sym(op.attributes.get("metadata"))
        if name is None or name not in self.fifos:
            raise self.fail(op, f"names metadata @{name}, which is not an object FIFO")
        fifo = self.fifos[name]
        if fifo.producer.row == SHIM_ROW:
            to_fifo, shim = True, fifo.producer
        elif any(t.row == SHIM_ROW for t in fifo.consumers):
            to_fifo = False
            shim = next(t for t in fifo.consumers if t.row == SHIM_ROW)
        else:
            raise self.fail(op, f"names @{name}, which has no shim endpoint")
        bd_attr = op.attributes.get("id")
        if not isinstance(bd_attr, IntegerAttr):
            raise self.fail(op, "needs its buffer descriptor as `id = N : i64`")
        bd = bd_attr.value.data
        token_attr = op.attributes.get("issue_token")
        issue_token = isinstance(token_attr, IntegerAttr) and bool(token_attr.value.data)
        offsets = ints(op.attributes["offsets"])
        sizes = ints(op.attributes["sizes"])
        strides = ints(op.attributes["strides"])
        if not len(offsets) == len(sizes) == len(strides) == 4:
            raise self.fail(op, "needs 4 offsets, 4 sizes and 4 strides (outermost first)")
        arg_name, dtype, shape = args[buf.index]
        if dtype != fifo.dtype:
            raise self.fail(
                op, f"moves {dtype} elements of %{arg_name} into @{name} of {fifo.dtype}"
            )
        buffer_elems = int(np.prod(shape))
        problems = tuple(check_dma(offsets, sizes, strides, dtype.itemsize, buffer_elems))
        indices: np.ndarray | None = None
        start = 0
        length = int(np.prod(sizes)) if all(s >= 1 for s in sizes) else 0
        if not problems:
            idx = dma_element_indices(offsets, sizes, strides, dtype.itemsize)
            start = int(idx[0])
            contiguous = bool(np.array_equal(idx, np.arange(start, start + length)))
            indices = None if contiguous else idx.astype(np.intp)
        return TransferSpec(
            line_of(op),
            buf.index,
            name,
            to_fifo,
            offsets,
            sizes,
            strides,
            length,
            indices,
            start,
            problems + tuple(check_bd_id(bd)),
            id=bd,
            issue_token=issue_token,
            column=shim.col,
        )


def _tiling_problem(parts: list[tuple[int, int, str]], whole: str, size: int) -> str | None:
    """Why the parts (offset, size, name) of a split/join do not tile @whole exactly, or None.

    Each part is a DMA channel of the mem tile reading (split) or writing (join) its slice of
    the whole element: an overlap would send or write the same values twice, a gap would leave
    values of every element unsent (split) or never written (join).
    """
    end, last = 0, None
    for off, n, name in sorted(parts):
        if off < end:
            assert last is not None
            return (
                f"@{name} at offset {off} overlaps @{last}, which covers elements up to "
                f"{end - 1} of @{whole}; the parts must tile the element exactly"
            )
        if off > end:
            return (
                f"leaves elements {end}..{off - 1} of @{whole} to no FIFO (@{name} starts at "
                f"{off}); the parts must tile the element exactly"
            )
        end, last = off + n, name
    if end != size:
        return (
            f"leaves elements {end}..{size - 1} of @{whole}'s {size} to no FIFO; the parts must "
            "tile the element exactly"
        )
    return None


# The BD limits `verifyStridesWraps` (mlir-aie AIEXDialect.cpp) applies to a tile DMA, by tile
# kind: the d0/d1 wrap field width and the step (stride) field width, both in 32-bit words;
# and how many dimensions a BD of that tile takes (`DMABDOp::verify`, AIEDialect.cpp).
_TILE_BD_LIMITS = {"mem": (10, 17, 4), "core": (8, 13, 3)}


def _stream_order(
    fail: Fail,
    op: Operation,
    name: str,
    dims: list[tuple[int, ...]],
    size: int,
    elem_bytes: int,
    tile: Tile,
) -> np.ndarray:
    """Element indices a `dimensionsToStream [<size, stride>...]` pattern reads, in order.

    The pattern becomes the producer tile's DMA buffer descriptor, so it must meet the same
    word rules as a shim transfer: every stride but an innermost stride of 1 a whole number of
    32-bit words (for narrower elements the innermost stride must be 1), the innermost size a
    whole number of words, and the wraps and steps within the tile's BD fields.
    """
    if any(len(d) != 2 or d[0] < 1 or d[1] < 0 for d in dims):
        raise fail(op, f"@{name}: bad dimensionsToStream {dims}")
    wrap_bits, step_bits, max_dims = _TILE_BD_LIMITS[tile.kind]
    problems = _stream_problems(dims, elem_bytes, wrap_bits, step_bits, max_dims)
    if problems:
        raise fail(op, f"@{name}: dimensionsToStream {_dims_text(dims)} on {tile}: "
                   + "; ".join(problems))
    index = np.zeros((1,) * len(dims), dtype=np.intp)
    for axis, (n, stride) in enumerate(dims):
        shape = [1] * len(dims)
        shape[axis] = n
        index = index + (np.arange(n, dtype=np.intp) * stride).reshape(shape)
    order = index.reshape(-1)
    if order.size != size or int(order.max()) >= size:
        raise fail(
            op,
            f"@{name}: dimensionsToStream moves {order.size} elements up to index "
            f"{int(order.max())}, but an element has {size}",
        )
    return order


def _stream_problems(
    dims: list[tuple[int, ...]], elem_bytes: int, wrap_bits: int, step_bits: int, max_dims: int
) -> list[str]:
    """The BD rules a dimensionsToStream pattern breaks (innermost dimension last)."""
    problems: list[str] = []
    if elem_bytes > WORD_BYTES:
        problems.append(f"element width {8 * elem_bytes} bits exceeds the DMA's 32 bits")
    if len(dims) > max_dims:
        problems.append(f"{len(dims)} dimensions, more than the {max_dims} a BD here takes")
    inner_size, inner_stride = dims[-1][0], dims[-1][1]
    if (inner_size * elem_bytes) % WORD_BYTES:
        problems.append(
            f"innermost size {inner_size} x {elem_bytes} bytes is not a multiple of 32 bits"
        )
    if elem_bytes < WORD_BYTES and inner_stride != 1:
        problems.append(
            f"innermost stride {inner_stride} must be 1 for {8 * elem_bytes}-bit elements "
            "(the DMA moves 32-bit words)"
        )
    max_wrap, max_step = (1 << wrap_bits) - 1, 1 << step_bits
    for i, (n, stride) in enumerate(dims):
        where = f"<size = {n}, stride = {stride}>"
        inner = i == len(dims) - 1
        if n > 1 and stride < 1:
            problems.append(f"{where} has a zero stride")
        if not (inner and stride == 1) and (stride * elem_bytes) % WORD_BYTES:
            problems.append(
                f"{where}: stride {stride} x {elem_bytes} bytes is not a multiple of 32 bits "
                "(every stride but an innermost 1 must be, even for a size of 1)"
            )
        wrap = n * elem_bytes // WORD_BYTES if inner else n
        if i >= len(dims) - 2 and wrap > max_wrap:
            problems.append(f"{where}: size exceeds the {max_wrap} a BD wrap here holds")
        if n > 1 and stride * elem_bytes // WORD_BYTES > max_step:
            problems.append(f"{where}: stride exceeds the {max_step} words a BD step here holds")
    return problems


def _dims_text(dims: list[tuple[int, ...]]) -> str:
    return "[" + ", ".join(f"<size = {d[0]}, stride = {d[1]}>" for d in dims) + "]"

"""Static checks of a rendered design before any compiler runs; each failure names the limit.

The design is read with the emulator's reader (the same model the emulator executes), so the
checks see what the template actually rendered, not what the spec intended:
- the device, and the runtime-sequence arguments against the host buffers (order, dtype, size);
- every DMA transfer within the shim limits and inside its host buffer;
- task-completion tokens: each dma_wait takes the token of the last transfer on its FIFO and
  no token is left over (the rule and the lowering it follows: `runtime.emulator.tokens`);
- every output element written, every input element read;
- the functions called are the kernel's, linked from its object;
- every core runs forever (its program starts once per xclbin load);
- at most 2 DMA channels per direction on each shim and core tile, 6 on a mem tile;
- buffer descriptors per core (16) and mem tile (48), stream routes per switch port count;
- each core's data memory (FIFO buffers, tile buffers, tables, stack) within 64 KiB, each mem
  tile's within 512 KiB, the stack set explicitly, and the spec's memory plan equal to it;
  the buffers placed as aiecc's allocator places them, four 16 KiB banks to a core, and the
  core object's static data within what is left above the highest buffer (`codegen.banks`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from codegen.spec import (
    CORE_MEMORY,
    MEM_TILE_MEMORY,
    KernelSpec,
    MemoryItem,
    TilePlan,
    alloc_scheme,
    static_data_problem,
)
from runtime.emulator.lower import lower
from runtime.emulator.model import Design, Tile, TransferSpec, WaitSpec
from runtime.emulator.reader import parse_design
from runtime.emulator.tokens import issues_token, leftover_problem, wait_problem
from runtime.errors import DesignError

DESIGN_FILE = "aie.mlir"


def read_design(text: str) -> Design:
    """The emulator's model of a rendered design (a DesignError names any unknown op)."""
    return lower(parse_design(text, DESIGN_FILE), DESIGN_FILE)


def check_design(spec: KernelSpec, design_text: str) -> list[str]:
    """Run every check on `spec` and its rendered design; return what passed, raise on failure."""
    return check_model(spec, read_design(design_text))


def check_model(spec: KernelSpec, design: Design) -> list[str]:
    """`check_design` on a design already read."""
    return [
        check_device(spec, design),
        check_arguments(spec, design),
        check_transfers(design),
        check_tokens(design),
        check_coverage(spec, design),
        check_functions(spec, design),
        check_cores_run_forever(design),
        check_dma_channels(design),
        check_buffer_descriptors(design),
        check_routing(design),
        check_memory(spec, design),
    ]


def _fail(message: str) -> DesignError:
    return DesignError(f"{DESIGN_FILE}: {message}")


def check_device(spec: KernelSpec, design: Design) -> str:
    if design.device != spec.params["device"]:
        raise _fail(f"device {design.device} but the spec targets {spec.params['device']}")
    return f"device {design.device}"


def check_arguments(spec: KernelSpec, design: Design) -> str:
    """Sequence argument i is host buffer i: same name, dtype and element count (XRT arg 3+i)."""
    buffers = spec.buffers()
    if len(design.args) != len(buffers):
        raise _fail(f"the runtime sequence takes {len(design.args)} arguments, the host binds "
                    f"{len(buffers)} buffers ({', '.join(b.name for b in buffers)})")
    for (name, dtype, shape), buf in zip(design.args, buffers, strict=True):
        n_design, n_host = int(np.prod(shape)), int(np.prod(buf.shape))
        if name != buf.name or np.dtype(dtype) != np.dtype(buf.dtype) or n_design != n_host:
            raise _fail(
                f"sequence argument {buf.seq_index} (kernel arg {buf.arg_index}) is %{name} "
                f"{np.dtype(dtype)} x {n_design:,} but host buffer {buf.seq_index} is "
                f"{buf.name} {buf.dtype} x {n_host:,}"
            )
    return f"{len(buffers)} sequence arguments match the host buffers in order"


def _transfers(design: Design) -> list[TransferSpec]:
    return [t for t in design.sequence if isinstance(t, TransferSpec)]


def check_transfers(design: Design) -> str:
    """Shim DMA limits (alignment, 32-bit granularity, d0 wrap, bounds) per transfer."""
    transfers = _transfers(design)
    for t in transfers:
        if t.problems:
            raise _fail(f"line {t.line}: dma_memcpy_nd on @{t.fifo}: {'; '.join(t.problems)}")
    unwaited: dict[str, TransferSpec] = {}
    for step in design.sequence:
        if isinstance(step, WaitSpec):
            unwaited.pop(step.fifo, None)
        elif not step.to_fifo:
            unwaited[step.fifo] = step
    for t in unwaited.values():
        raise _fail(f"line {t.line}: the transfer from @{t.fifo} to the host is never waited on: "
                    "the host could read its output before it arrives")
    return f"{len(transfers)} DMA transfers within the shim limits, every output waited on"


def check_tokens(design: Design) -> str:
    """The token rule, statically: between two waits on a FIFO exactly one transfer on it issues
    a token, the last one, and none is issued after the last wait (the emulator also checks
    it as it runs, with the shim task-queue depth, which depends on completion order)."""
    since_wait: dict[str, list[TransferSpec]] = defaultdict(list)
    waits = 0
    for step in design.sequence:
        if isinstance(step, WaitSpec):
            problem = wait_problem(step.fifo, list(since_wait.pop(step.fifo, [])))
            if problem is not None:
                raise _fail(f"line {step.line}: dma_wait on @{step.fifo}: {problem}")
            waits += 1
        else:
            since_wait[step.fifo].append(step)
    for fifo, left in since_wait.items():
        for t in left:
            if t.to_fifo and issues_token(t):
                raise _fail(f"line {t.line}: dma_memcpy_nd {leftover_problem(fifo, t)}")
    return f"{waits} dma_wait(s), each taking the one token it waits for, none left over"


def _indices(t: TransferSpec) -> np.ndarray:
    if t.indices is not None:
        return t.indices
    return np.arange(t.start, t.start + t.length, dtype=np.int64)


def check_coverage(spec: KernelSpec, design: Design) -> str:
    """Every output element is written and every input element read by some transfer."""
    seen: dict[int, np.ndarray] = {}
    for i, (_, _, shape) in enumerate(design.args):
        seen[i] = np.zeros(int(np.prod(shape)), dtype=bool)
    for t in _transfers(design):
        seen[t.arg][_indices(t)] = True
    for buf in spec.buffers():
        missed = np.flatnonzero(~seen[buf.seq_index])
        if missed.size:
            verb = "written" if buf.direction == "out" else "read"
            raise _fail(f"{missed.size:,} of {seen[buf.seq_index].size:,} elements of "
                        f"{buf.name} are never {verb} by the runtime sequence "
                        f"(first: element {missed[0]}): its transfer sizes are short")
    return "every host element is moved"


def check_functions(spec: KernelSpec, design: Design) -> str:
    for name, fn in design.funcs.items():
        if name not in spec.CORE_SYMBOLS:
            raise _fail(f"line {fn.line}: @{name} is not a core function of {spec.name} "
                        f"({', '.join(spec.CORE_SYMBOLS)})")
        if fn.link_with != spec.object_name:
            raise _fail(f"line {fn.line}: @{name} links {fn.link_with!r}, the core object is "
                        f"{spec.object_name!r}")
    return f"core functions {', '.join(sorted(design.funcs))} from {spec.object_name}"


# DMA channels per direction: NPU_FACTS 1 (shim: 2 MM2S + 2 S2MM, compute tiles the same);
# a mem tile has 6 MM2S and 6 S2MM (AMD UG1603 "AIE-ML / AIE-ML v2 Memory Tile").
DMA_CHANNELS = {"shim": 2, "core": 2, "mem": 6}
# Buffer descriptors per tile DMA (mlir-aie AIETargetModel `getNumBDs`): shim 16 (the runtime
# sequence's ids, checked per transfer), compute tile 16, mem tile 48.
TILE_BDS = {"core": 16, "mem": 48}
# Stream-switch ports between vertically adjacent tiles (mlir-aie AIE2TargetModel
# `getNumDestSwitchboxConnections`): 6 north-going masters out of a shim, mem or compute tile,
# 4 south-going ones out of a mem or compute tile.
NORTH_PORTS = 6
SOUTH_PORTS = 4


def _link_parts(design: Design) -> set[str]:
    """FIFOs whose mem-tile end is a part of a link: the link's whole FIFO holds the buffers."""
    parts: set[str] = set()
    for link in design.links:
        parts.update(link.dsts if len(link.srcs) == 1 else link.srcs)
    return parts


def _channel_ends(design: Design) -> tuple[dict[Tile, list[str]], dict[Tile, list[str]]]:
    """Per tile, the FIFOs its MM2S (it sends) and S2MM (it receives) channels serve.

    A FIFO end on a tile takes one channel of that direction: a broadcast is one MM2S channel
    for all its consumers, each part of a split (join) one MM2S (S2MM) channel of the mem tile.
    """
    out_channels: dict[Tile, list[str]] = defaultdict(list)
    in_channels: dict[Tile, list[str]] = defaultdict(list)
    for fifo in design.fifos.values():
        out_channels[fifo.producer].append(fifo.name)
        for consumer in fifo.consumers:
            in_channels[consumer].append(fifo.name)
    return out_channels, in_channels


def check_dma_channels(design: Design) -> str:
    """DMA channels per direction on every tile, within the tile kind's count."""
    out_channels, in_channels = _channel_ends(design)
    for what, table in (("MM2S (outgoing)", out_channels), ("S2MM (incoming)", in_channels)):
        for tile, names in sorted(table.items()):
            limit = DMA_CHANNELS[tile.kind]
            if len(names) > limit:
                raise _fail(f"{tile} needs {len(names)} {what} DMA channels for "
                            f"{', '.join('@' + n for n in names)}; a {tile.kind} tile has "
                            f"{limit}")
    return "DMA channels within 2 per direction per shim and core tile, 6 per mem tile"


def check_buffer_descriptors(design: Design) -> str:
    """Each buffer of a FIFO end on a tile takes one BD of that tile's DMA (its chain)."""
    used: dict[Tile, list[str]] = defaultdict(list)
    out_channels, in_channels = _channel_ends(design)
    for table in (out_channels, in_channels):
        for tile, names in table.items():
            if tile.kind in TILE_BDS:
                used[tile] += [f"@{n} x {design.fifos[n].depth}" for n in names]
    for tile, ends in sorted(used.items()):
        count = sum(int(e.rsplit(" x ", 1)[1]) for e in ends)
        if count > TILE_BDS[tile.kind]:
            raise _fail(f"{tile} needs {count} buffer descriptors ({', '.join(ends)}: one per "
                        f"FIFO buffer per channel); a {tile.kind} tile has "
                        f"{TILE_BDS[tile.kind]}")
    return "buffer descriptors within 16 per core tile and 48 per mem tile"


def check_routing(design: Design) -> str:
    """Streams crossing each row boundary of a column, under column-first routing.

    A stream climbs (or descends) in its producer's column to the rows of its consumers, then
    runs along those rows; a broadcast shares its trunk. The router may route otherwise, so this
    counts what the design's natural routes need, not every possible routing.
    """
    north: dict[tuple[int, int], list[str]] = defaultdict(list)  # (col, row below) -> FIFOs
    south: dict[tuple[int, int], list[str]] = defaultdict(list)  # (col, row above) -> FIFOs
    for fifo in design.fifos.values():
        p = fifo.producer
        top = max(c.row for c in fifo.consumers)
        bottom = min(c.row for c in fifo.consumers)
        for row in range(p.row, top):
            north[(p.col, row)].append(fifo.name)
        for row in range(p.row, bottom, -1):
            south[(p.col, row)].append(fifo.name)
    for what, table, limit in (("north", north, NORTH_PORTS), ("south", south, SOUTH_PORTS)):
        for (col, row), names in sorted(table.items()):
            if len(names) > limit:
                other = row + 1 if what == "north" else row - 1
                raise _fail(f"{len(names)} streams ({', '.join('@' + n for n in names)}) run "
                            f"{what} from {Tile(col, row)} to {Tile(col, other)}; the stream "
                            f"switch has {limit} {what}-going ports there")
    return "stream routes within the switches' north and south ports"


def check_cores_run_forever(design: Design) -> str:
    """A core program starts once per xclbin load and must serve every invocation."""
    for core in design.cores:
        if not core.runs_forever:
            raise _fail(f"line {core.line}: {core.tile}'s program ends; on the NPU it starts once "
                        "per xclbin load, so the next invocation would hang on its FIFOs "
                        "(mlir-aie #2878): wrap the body in scf.for to 9223372036854775807")
    return f"{len(design.cores)} core(s) run forever"


def design_plans(spec: KernelSpec, design: Design) -> dict[Tile, TilePlan]:
    """Each non-shim tile's data memory as the design declares it: one buffer per FIFO element
    (on every non-shim end), each `aie.buffer`, the core's stack, and the core object's static
    data (the spec's tables, which the design cannot show)."""
    plans: dict[Tile, TilePlan] = {}
    parts = _link_parts(design)

    def plan(tile: Tile) -> TilePlan:
        capacity = MEM_TILE_MEMORY if tile.kind == "mem" else CORE_MEMORY
        return plans.setdefault(tile, TilePlan((tile.col, tile.row), capacity))

    for fifo in design.fifos.values():
        nbytes = fifo.size * fifo.dtype.itemsize
        for tile in sorted({fifo.producer, *fifo.consumers}):
            if tile.kind == "mem" and fifo.name in parts:
                continue  # a link through a mem tile keeps one set of buffers: its whole FIFO's
            if tile.kind != "shim":
                plan(tile).items.append(MemoryItem(f"@{fifo.name}", nbytes, fifo.depth))
    for buf in getattr(design, "buffers", {}).values():
        plan(buf.tile).items.append(MemoryItem(f"@{buf.name}", buf.nbytes))
    for core in design.cores:
        if core.stack_size is None:
            raise _fail(f"line {core.line}: {core.tile} has no stack_size; the 1 KiB default "
                        "silently corrupts buffers under a larger frame (set it from the plan)")
        plan(core.tile).items += [MemoryItem("stack", core.stack_size, kind="stack"),
                                  *(i for i in spec.core_data() if i.kind == "static")]
    return plans


def design_memory(spec: KernelSpec, design: Design) -> dict[Tile, int]:
    """Bytes of data memory each non-shim tile needs, counted from the design."""
    return {tile: plan.used for tile, plan in design_plans(spec, design).items()}


def _layout(plan: TilePlan) -> tuple[list[int], int, int]:
    return sorted(size for _, size in plan.buffers()), plan.of_kind("stack"), plan.of_kind("static")


def check_memory(spec: KernelSpec, design: Design) -> str:
    """Each tile's data within its memory, placed as aiecc places it (`codegen.banks`): the
    buffers under the design's allocation scheme, the static data above the highest buffer."""
    plans = design_plans(spec, design)
    for tile, plan in sorted(plans.items()):
        if plan.used > plan.capacity:
            raise _fail(f"{tile} needs {plan.used:,} bytes of data memory, a "
                        f"{'mem tile' if tile.kind == 'mem' else 'core'} has {plan.capacity:,}")
    planned = {Tile(*p.tile): p for p in spec.memory_plan()}
    if {t: _layout(p) for t, p in planned.items()} != {t: _layout(p) for t, p in plans.items()}:
        raise _fail(f"the spec's memory plan {_fmt({t: p.used for t, p in planned.items()})} "
                    f"disagrees with the rendered design {_fmt(design_memory(spec, design))} "
                    f"(buffers, stack or static data): update {spec.name}'s memory_plan or its "
                    "template")
    scheme = alloc_scheme(list(plans.values()))
    for plan in plans.values():
        problem = static_data_problem(plan, scheme)
        if problem:
            raise _fail(problem)
    parts = ", ".join(f"{t} {p.used:,} B" for t, p in sorted(plans.items()))
    return f"tile memory within budget: {parts}; {scheme} allocation, static data above it"


def _fmt(m: dict[Tile, int]) -> str:
    return "{" + ", ".join(f"{t}: {n:,}" for t, n in sorted(m.items())) + "}"

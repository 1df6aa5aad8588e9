"""Small hand-written designs with known answers, in the syntax the templates render."""

# MLIR lines stay whole, as aiecc and the templates write them.
# ruff: noqa: E501

import re

# IRON's "forever" bound for a core's outer loop.
FOREVER = 9223372036854775807


def forever(text: str) -> str:
    """`text` with each core's tile loop (`%ct` tiles) made a run-forever loop.

    For the designs below whose core body is one loop of `%ct` turns, one tile a turn: the core
    then serves any number of runs, as the templates' cores do on the NPU.
    """
    out, n = re.subn(r"%ct = arith\.constant \d+ : index", f"%ct = arith.constant {FOREVER} : index", text)
    assert n, "no %ct tile loop to make endless"
    return out

ATTENTION = """\
module {
  aie.device(npu1_1col) {
    %shim = aie.tile(0, 0)
    %core = aie.tile(0, 2)
    aie.objectfifo @inq(%shim, {%core}, 2 : i32) : !aie.objectfifo<memref<12288xi8>>
    aie.objectfifo @outq(%core, {%shim}, 2 : i32) : !aie.objectfifo<memref<4096xi8>>
    func.func private @attn(memref<12288xi8>, memref<4096xi8>) attributes {link_with = "kernels.o"}
    aie.core(%core) {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c4 = arith.constant 4 : index
      scf.for %i = %c0 to %c4 step %c1 {
        %a = aie.objectfifo.acquire @inq(Consume, 1) : !aie.objectfifosubview<memref<12288xi8>>
        %x = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<12288xi8>> -> memref<12288xi8>
        %b = aie.objectfifo.acquire @outq(Produce, 1) : !aie.objectfifosubview<memref<4096xi8>>
        %y = aie.objectfifo.subview.access %b[0] : !aie.objectfifosubview<memref<4096xi8>> -> memref<4096xi8>
        func.call @attn(%x, %y) : (memref<12288xi8>, memref<4096xi8>) -> ()
        aie.objectfifo.release @inq(Consume, 1)
        aie.objectfifo.release @outq(Produce, 1)
      }
      aie.end
    } {stack_size = 4096 : i32}
    aie.runtime_sequence(%in : memref<49152xi8>, %out : memref<16384xi8>) {
      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, 49152][0, 0, 0, 1]) {metadata = @inq, id = 1 : i64} : memref<49152xi8>
      aiex.npu.dma_memcpy_nd(%out[0, 0, 0, 0][1, 1, 1, 16384][0, 0, 0, 1]) {metadata = @outq, id = 0 : i64} : memref<16384xi8>
      aiex.npu.dma_wait {symbol = @outq}
    }
  }
}
"""


def one_core(
    *,
    n: int = 64,
    tiles: int = 4,
    host_in: int | None = None,
    host_out: int | None = None,
    in_pattern: str | None = None,
    out_pattern: str | None = None,
    call: str = "func.call @add_i32(%x, %y, %n, %k) : (memref<{n}xi32>, memref<{n}xi32>, i32, i32) -> ()",
    decl: str = 'func.func private @add_i32(memref<{n}xi32>, memref<{n}xi32>, i32, i32) attributes {{link_with = "kernels.o"}}',
    k: int = 1,
) -> str:
    """One core: `tiles` times, take an n-element i32 tile from @inq, call, put one in @outq.

    `in_pattern` / `out_pattern` are the `[offsets][sizes][strides]` of the two transfers
    (default: the whole host buffer, linearly).
    """
    host_in = host_in if host_in is not None else n * tiles
    host_out = host_out if host_out is not None else n * tiles
    in_pattern = in_pattern or f"[0, 0, 0, 0][1, 1, 1, {host_in}][0, 0, 0, 1]"
    out_pattern = out_pattern or f"[0, 0, 0, 0][1, 1, 1, {host_out}][0, 0, 0, 1]"
    return f"""\
module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %core = aie.tile(0, 2)
    aie.objectfifo @inq(%shim, {{%core}}, 2 : i32) : !aie.objectfifo<memref<{n}xi32>>
    aie.objectfifo @outq(%core, {{%shim}}, 2 : i32) : !aie.objectfifo<memref<{n}xi32>>
    {decl.format(n=n)}
    aie.core(%core) {{
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %ct = arith.constant {tiles} : index
      %n = arith.constant {n} : i32
      %k = arith.constant {k} : i32
      scf.for %i = %c0 to %ct step %c1 {{
        %a = aie.objectfifo.acquire @inq(Consume, 1) : !aie.objectfifosubview<memref<{n}xi32>>
        %x = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<{n}xi32>> -> memref<{n}xi32>
        %b = aie.objectfifo.acquire @outq(Produce, 1) : !aie.objectfifosubview<memref<{n}xi32>>
        %y = aie.objectfifo.subview.access %b[0] : !aie.objectfifosubview<memref<{n}xi32>> -> memref<{n}xi32>
        {call.format(n=n)}
        aie.objectfifo.release @inq(Consume, 1)
        aie.objectfifo.release @outq(Produce, 1)
      }}
      aie.end
    }} {{stack_size = 1024 : i32}}
    aie.runtime_sequence(%in : memref<{host_in}xi32>, %out : memref<{host_out}xi32>) {{
      aiex.npu.dma_memcpy_nd(%in{in_pattern}) {{metadata = @inq, id = 1 : i64}} : memref<{host_in}xi32>
      aiex.npu.dma_memcpy_nd(%out{out_pattern}) {{metadata = @outq, id = 0 : i64}} : memref<{host_out}xi32>
      aiex.npu.dma_wait {{symbol = @outq}}
    }}
  }}
}}
"""


def _core(tile: str, src: str, dst: str, n: int, fn: str, k: int, tiles: int) -> str:
    return f"""\
    aie.core({tile}) {{
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %ct = arith.constant {tiles} : index
      %n = arith.constant {n} : i32
      %k = arith.constant {k} : i32
      scf.for %i = %c0 to %ct step %c1 {{
        %a = aie.objectfifo.acquire @{src}(Consume, 1) : !aie.objectfifosubview<memref<{n}xi32>>
        %x = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<{n}xi32>> -> memref<{n}xi32>
        %b = aie.objectfifo.acquire @{dst}(Produce, 1) : !aie.objectfifosubview<memref<{n}xi32>>
        %y = aie.objectfifo.subview.access %b[0] : !aie.objectfifosubview<memref<{n}xi32>> -> memref<{n}xi32>
        func.call @{fn}(%x, %y, %n, %k) : (memref<{n}xi32>, memref<{n}xi32>, i32, i32) -> ()
        aie.objectfifo.release @{src}(Consume, 1)
        aie.objectfifo.release @{dst}(Produce, 1)
      }}
      aie.end
    }}
"""


def split_join(tiles: int = 4) -> str:
    """Host -> mem tile, split in two halves to two cores (+1, +2), joined back -> host."""
    decls = "\n".join(
        f"    func.func private @{f}(memref<64xi32>, memref<64xi32>, i32, i32) "
        f'attributes {{link_with = "kernels.o"}}'
        for f in ("add_i32",)
    )
    total = 128 * tiles
    return f"""\
module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %mem = aie.tile(0, 1)
    %c2 = aie.tile(0, 2)
    %c3 = aie.tile(0, 3)
    aie.objectfifo @in(%shim, {{%mem}}, 2 : i32) : !aie.objectfifo<memref<128xi32>>
    aie.objectfifo @in0(%mem, {{%c2}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @in1(%mem, {{%c3}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo.link [@in] -> [@in0, @in1] ([] [0, 64])
    aie.objectfifo @out0(%c2, {{%mem}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @out1(%c3, {{%mem}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @out(%mem, {{%shim}}, 2 : i32) : !aie.objectfifo<memref<128xi32>>
    aie.objectfifo.link [@out0, @out1] -> [@out] ([0, 64] [])
{decls}
{_core("%c2", "in0", "out0", 64, "add_i32", 1, tiles)}
{_core("%c3", "in1", "out1", 64, "add_i32", 2, tiles)}
    aie.runtime_sequence(%a : memref<{total}xi32>, %b : memref<{total}xi32>) {{
      aiex.npu.dma_memcpy_nd(%a[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @in, id = 1 : i64}} : memref<{total}xi32>
      aiex.npu.dma_memcpy_nd(%b[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @out, id = 0 : i64}} : memref<{total}xi32>
      aiex.npu.dma_wait {{symbol = @out}}
    }}
  }}
}}
"""


def pipeline(tiles: int = 4) -> str:
    """Two cores in a row: core (0,2) adds 3, hands over core-to-core, core (0,3) doubles."""
    total = 64 * tiles
    return f"""\
module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %c2 = aie.tile(0, 2)
    %c3 = aie.tile(0, 3)
    aie.objectfifo @in(%shim, {{%c2}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @mid(%c2, {{%c3}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @out(%c3, {{%shim}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    func.func private @add_i32(memref<64xi32>, memref<64xi32>, i32, i32) attributes {{link_with = "kernels.o"}}
    func.func private @scale_i32(memref<64xi32>, memref<64xi32>, i32, i32) attributes {{link_with = "kernels.o"}}
{_core("%c2", "in", "mid", 64, "add_i32", 3, tiles)}
{_core("%c3", "mid", "out", 64, "scale_i32", 2, tiles)}
    aie.runtime_sequence(%a : memref<{total}xi32>, %b : memref<{total}xi32>) {{
      aiex.npu.dma_memcpy_nd(%a[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @in, id = 1 : i64}} : memref<{total}xi32>
      aiex.npu.dma_memcpy_nd(%b[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @out, id = 0 : i64}} : memref<{total}xi32>
      aiex.npu.dma_wait {{symbol = @out}}
    }}
  }}
}}
"""


def mem_tile_transpose() -> str:
    """Host -> mem tile -> core through `dimensionsToStream`, which transposes each 8x8 tile."""
    return """\
module {
  aie.device(npu1_1col) {
    %shim = aie.tile(0, 0)
    %mem = aie.tile(0, 1)
    %core = aie.tile(0, 2)
    aie.objectfifo @in(%shim, {%mem}, 2 : i32) : !aie.objectfifo<memref<8x8xi32>>
    aie.objectfifo @in_t(%mem dimensionsToStream [<size = 8, stride = 1>, <size = 8, stride = 8>], {%core}, 2 : i32) : !aie.objectfifo<memref<8x8xi32>>
    aie.objectfifo.link [@in] -> [@in_t]([] [])
    aie.objectfifo @out(%core, {%shim}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    func.func private @add_i32(memref<8x8xi32>, memref<64xi32>, i32, i32) attributes {link_with = "kernels.o"}
    aie.core(%core) {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c2 = arith.constant 2 : index
      %n = arith.constant 64 : i32
      %k = arith.constant 0 : i32
      scf.for %i = %c0 to %c2 step %c1 {
        %a = aie.objectfifo.acquire @in_t(Consume, 1) : !aie.objectfifosubview<memref<8x8xi32>>
        %x = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<8x8xi32>> -> memref<8x8xi32>
        %b = aie.objectfifo.acquire @out(Produce, 1) : !aie.objectfifosubview<memref<64xi32>>
        %y = aie.objectfifo.subview.access %b[0] : !aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>
        func.call @add_i32(%x, %y, %n, %k) : (memref<8x8xi32>, memref<64xi32>, i32, i32) -> ()
        aie.objectfifo.release @in_t(Consume, 1)
        aie.objectfifo.release @out(Produce, 1)
      }
      aie.end
    }
    aie.runtime_sequence(%a : memref<128xi32>, %b : memref<128xi32>) {
      aiex.npu.dma_memcpy_nd(%a[0, 0, 0, 0][1, 1, 1, 128][0, 0, 0, 1]) {metadata = @in, id = 1 : i64} : memref<128xi32>
      aiex.npu.dma_memcpy_nd(%b[0, 0, 0, 0][1, 1, 1, 128][0, 0, 0, 1]) {metadata = @out, id = 0 : i64} : memref<128xi32>
      aiex.npu.dma_wait {symbol = @out}
    }
  }
}
"""


def sliding_window(tiles: int = 5) -> str:
    """A core that keeps one element: out[i] = in[i] + in[i + 1], via cumulative acquires."""
    return f"""\
module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %core = aie.tile(0, 2)
    aie.objectfifo @inq(%shim, {{%core}}, 3 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @outq(%core, {{%shim}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    func.func private @pair_sum_i32(memref<64xi32>, memref<64xi32>, memref<64xi32>) attributes {{link_with = "kernels.o"}}
    aie.core(%core) {{
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %ct = arith.constant {tiles - 1} : index
      scf.for %i = %c0 to %ct step %c1 {{
        %a = aie.objectfifo.acquire @inq(Consume, 2) : !aie.objectfifosubview<memref<64xi32>>
        %x0 = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>
        %x1 = aie.objectfifo.subview.access %a[1] : !aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>
        %b = aie.objectfifo.acquire @outq(Produce, 1) : !aie.objectfifosubview<memref<64xi32>>
        %y = aie.objectfifo.subview.access %b[0] : !aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>
        func.call @pair_sum_i32(%x0, %x1, %y) : (memref<64xi32>, memref<64xi32>, memref<64xi32>) -> ()
        aie.objectfifo.release @inq(Consume, 1)
        aie.objectfifo.release @outq(Produce, 1)
      }}
      aie.objectfifo.release @inq(Consume, 1)
      aie.end
    }}
    aie.runtime_sequence(%in : memref<{64 * tiles}xi32>, %out : memref<{64 * (tiles - 1)}xi32>) {{
      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, {64 * tiles}][0, 0, 0, 1]) {{metadata = @inq, id = 1 : i64}} : memref<{64 * tiles}xi32>
      aiex.npu.dma_memcpy_nd(%out[0, 0, 0, 0][1, 1, 1, {64 * (tiles - 1)}][0, 0, 0, 1]) {{metadata = @outq, id = 0 : i64}} : memref<{64 * (tiles - 1)}xi32>
      aiex.npu.dma_wait {{symbol = @outq}}
    }}
  }}
}}
"""


def broadcast(tiles: int = 3) -> str:
    """One input FIFO read by two cores (+1 and +2), each with its own output FIFO."""
    total = 64 * tiles
    return f"""\
module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %c2 = aie.tile(0, 2)
    %c3 = aie.tile(0, 3)
    aie.objectfifo @in(%shim, {{%c2, %c3}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @out2(%c2, {{%shim}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @out3(%c3, {{%shim}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    func.func private @add_i32(memref<64xi32>, memref<64xi32>, i32, i32) attributes {{link_with = "kernels.o"}}
{_core("%c2", "in", "out2", 64, "add_i32", 1, tiles)}
{_core("%c3", "in", "out3", 64, "add_i32", 2, tiles)}
    aie.runtime_sequence(%a : memref<{total}xi32>, %b : memref<{total}xi32>, %c : memref<{total}xi32>) {{
      aiex.npu.dma_memcpy_nd(%a[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @in, id = 2 : i64}} : memref<{total}xi32>
      aiex.npu.dma_memcpy_nd(%b[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @out2, id = 1 : i64}} : memref<{total}xi32>
      aiex.npu.dma_memcpy_nd(%c[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{metadata = @out3, id = 0 : i64}} : memref<{total}xi32>
      aiex.npu.dma_wait {{symbol = @out2}}
      aiex.npu.dma_wait {{symbol = @out3}}
    }}
  }}
}}
"""


DATA_MOVEMENT_ONLY = """\
module {
  aie.device(npu1_1col) {
    %shim = aie.tile(0, 0)
    %mem = aie.tile(0, 1)
    aie.objectfifo @in(%shim, {%mem}, 2 : i32) : !aie.objectfifo<memref<4x16xi32>>
    aie.objectfifo @back(%mem dimensionsToStream [<size = 16, stride = 1>, <size = 4, stride = 16>], {%shim}, 2 : i32) : !aie.objectfifo<memref<4x16xi32>>
    aie.objectfifo.link [@in] -> [@back]([] [])
    aie.runtime_sequence(%a : memref<192xi32>, %b : memref<192xi32>) {
      aiex.npu.dma_memcpy_nd(%a[0, 0, 0, 0][1, 1, 1, 192][0, 0, 0, 1]) {metadata = @in, id = 1 : i64} : memref<192xi32>
      aiex.npu.dma_memcpy_nd(%b[0, 0, 0, 0][1, 1, 1, 192][0, 0, 0, 1]) {metadata = @back, id = 0 : i64} : memref<192xi32>
      aiex.npu.dma_wait {symbol = @back}
    }
  }
}
"""


def accumulate(tiles: int = 3, endless: bool = False) -> str:
    """A core sums `tiles` input tiles in an `aie.buffer`, then writes the sum once.

    `endless` wraps the body in a run-forever loop, so the core serves one sum per run.
    """
    text = _accumulate(tiles)
    if not endless:
        return text
    head, rest = text.split("      scf.for %i", 1)
    body, tail = rest.split("      aie.end\n", 1)
    inner = "\n".join("  " + line if line else line for line in ("      scf.for %i" + body).splitlines())
    return (
        head
        + f"      %forever = arith.constant {FOREVER} : index\n"
        + "      scf.for %run = %c0 to %forever step %c1 {\n"
        + inner
        + "\n      }\n      aie.end\n"
        + tail
    )


def _accumulate(tiles: int) -> str:
    return f"""\
module {{
  aie.device(npu1_1col) {{
    %shim = aie.tile(0, 0)
    %core = aie.tile(0, 2)
    aie.objectfifo @inq(%shim, {{%core}}, 2 : i32) : !aie.objectfifo<memref<64xi32>>
    aie.objectfifo @outq(%core, {{%shim}}, 1 : i32) : !aie.objectfifo<memref<64xi32>>
    %acc = aie.buffer(%core) {{sym_name = "acc"}} : memref<64xi32> = dense<7>
    func.func private @acc_i32(memref<64xi32>, memref<64xi32>, i32) attributes {{link_with = "kernels.o"}}
    func.func private @store_i32(memref<64xi32>, memref<64xi32>) attributes {{link_with = "kernels.o"}}
    aie.core(%core) {{
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %ct = arith.constant {tiles} : index
      scf.for %i = %c0 to %ct step %c1 {{
        %a = aie.objectfifo.acquire @inq(Consume, 1) : !aie.objectfifosubview<memref<64xi32>>
        %x = aie.objectfifo.subview.access %a[0] : !aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>
        %k = arith.index_cast %i : index to i32
        func.call @acc_i32(%x, %acc, %k) : (memref<64xi32>, memref<64xi32>, i32) -> ()
        aie.objectfifo.release @inq(Consume, 1)
      }}
      %b = aie.objectfifo.acquire @outq(Produce, 1) : !aie.objectfifosubview<memref<64xi32>>
      %y = aie.objectfifo.subview.access %b[0] : !aie.objectfifosubview<memref<64xi32>> -> memref<64xi32>
      func.call @store_i32(%acc, %y) : (memref<64xi32>, memref<64xi32>) -> ()
      aie.objectfifo.release @outq(Produce, 1)
      aie.end
    }}
    aie.runtime_sequence(%in : memref<{64 * tiles}xi32>, %out : memref<64xi32>) {{
      aiex.npu.dma_memcpy_nd(%in[0, 0, 0, 0][1, 1, 1, {64 * tiles}][0, 0, 0, 1]) {{metadata = @inq, id = 1 : i64}} : memref<{64 * tiles}xi32>
      aiex.npu.dma_memcpy_nd(%out[0, 0, 0, 0][1, 1, 1, 64][0, 0, 0, 1]) {{metadata = @outq, id = 0 : i64}} : memref<64xi32>
      aiex.npu.dma_wait {{symbol = @outq}}
    }}
  }}
}}
"""

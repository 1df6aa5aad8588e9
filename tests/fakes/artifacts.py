"""Writers of faithful test artifacts: an insts.bin and an aiecc-style xclbin.

Used by the tests and the fake aiecc. They are written from the formats themselves (XRT's
`xclbin.h` structs, mlir-aie's transaction format), independently of `runtime.insts` and
`runtime.xclbin`, so a reader bug cannot hide behind a writer that shares its code.
"""

from __future__ import annotations

import re
import struct
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence

FIRST_DATA_ARG = 3  # kernel argument of runtime-sequence argument 0

# ---------------------------------------------------------------- insts.bin ----

_DEVICE = re.compile(r"^(npu1|npu2)(?:_(\d)col)?$")


def device_info(device: str) -> tuple[int, int]:
    """(header device generation, columns) of an mlir-aie device name."""
    m = _DEVICE.match(device)
    if m is None:
        raise ValueError(f"unknown device {device!r}")
    gen = 3 if m.group(1) == "npu1" else 4
    full = 4 if m.group(1) == "npu1" else 8
    return gen, int(m.group(2)) if m.group(2) else full


def _words(*ws: int) -> bytes:
    return struct.pack(f"<{len(ws)}I", *(w & 0xFFFFFFFF for w in ws))


def op_write32(address: int, value: int) -> bytes:
    """write32: opcode 0, reserved, address, address high bits, value, op size 24."""
    return _words(0x00, 0, address, 0, value, 24)


def op_blockwrite(address: int, data: Sequence[int]) -> bytes:
    """blockwrite: opcode 1, col/row, address, op size in bytes (4 + N words), N words."""
    return _words(0x01, 0, address, (4 + len(data)) * 4, *data)


def op_maskwrite(address: int, value: int, mask: int) -> bytes:
    """maskwrite: opcode 3, reserved, address, high bits, value, mask, op size 28."""
    return _words(0x03, 0, address, 0, value, mask, 28)


def op_sync(column: int, row: int, direction: int, channel: int) -> bytes:
    """sync (TCT wait): opcode 0x80, op size 16, dir|row|col, rows|cols|channel."""
    return _words(0x80, 16, direction | row << 8 | column << 16, 1 << 8 | 1 << 16 | channel << 24)


def op_address_patch(address: int, seq_index: int, arg_plus: int = 0) -> bytes:
    """DDR address patch: opcode 0x81, op size 48, action at 5, register address at 6-7,
    argument index (the runtime-sequence index) at 8-9, offset to add at 10-11."""
    w = [0] * 12
    w[0], w[1], w[6], w[8] = 0x81, 48, address, seq_index
    w[10], w[11] = arg_plus & 0xFFFFFFFF, arg_plus >> 32
    return _words(*w)


def insts_stream(device: str, ops: Iterable[bytes], columns: int | None = None) -> bytes:
    """Header (version 0.1, 6 rows, 1 mem tile row) + the given ops; size word = total."""
    gen, dev_columns = device_info(device)
    ops = list(ops)
    body = b"".join(ops)
    cols = dev_columns if columns is None else columns
    header = _words(6 << 24 | gen << 16 | 1 << 8 | 0, 1 << 8 | cols, len(ops), 16 + len(body))
    return header + body


def _shim_bd_address(column: int, bd_id: int) -> int:
    # AIE-ML shim tile: buffer descriptors at 0x1D000, 0x20 bytes each; column at bit 25.
    return column << 25 | (0x1D000 + 0x20 * bd_id)


def _queue_address(column: int, s2mm: bool, channel: int) -> int:
    # Shim DMA channel control/start-queue pairs: S2MM at 0x1D200, MM2S at 0x1D210, 8 apart.
    return column << 25 | ((0x1D200 if s2mm else 0x1D210) + 8 * channel + 4)


def make_insts(
    device: str = "npu1_1col",
    arg_indices: Sequence[int] = (3, 4),
    columns: int | None = None,
    *,
    n_waits: int = 1,
) -> bytes:
    """A stream like aiecc's: per transfer a BD blockwrite, an address patch for its kernel
    argument, a queue-push write32; then `n_waits` syncs. The last transfer is the output.

    `columns` defaults to the device's; pass it to write a header that disagrees.
    """
    ops: list[bytes] = []
    for k, arg in enumerate(arg_indices):
        is_out = k == len(arg_indices) - 1 and len(arg_indices) > 1
        bd_id = k % 16
        bd = _shim_bd_address(0, bd_id)
        # BD words: length in 32-bit words, address low/high (patched), no ND, valid bit.
        ops.append(op_blockwrite(bd, [1024, 0, 0, 0, 0, 0, 0, 1 << 25]))
        ops.append(op_address_patch(bd + 4, arg - FIRST_DATA_ARG))
        token = 1 << 31 if is_out else 0
        ops.append(op_write32(_queue_address(0, is_out, 0 if is_out else k % 2), bd_id | token))
    ops.extend(op_sync(0, 0, 0, 0) for _ in range(n_waits))
    return insts_stream(device, ops, columns)


def set_word(data: bytes, index: int, value: int) -> bytes:
    """A copy of `data` with little-endian uint32 word `index` replaced (for tampering)."""
    out = bytearray(data)
    struct.pack_into("<I", out, 4 * index, value & 0xFFFFFFFF)
    return bytes(out)


# ------------------------------------------------------------------- xclbin ----

XCLBIN_HEADER_AT = 304  # struct axlf: the axlf_header after magic, signature and key block
XCLBIN_SECTIONS_AT = 456
KIND = {
    "EMBEDDED_METADATA": 2,
    "MEM_TOPOLOGY": 6,
    "CONNECTIVITY": 7,
    "IP_LAYOUT": 8,
    "GROUP_TOPOLOGY": 26,
    "GROUP_CONNECTIVITY": 27,
    "AIE_PARTITION": 32,
}
HOST_BANK, SRAM_BANK = 0, 1
_MEM_DRAM = 2
_IP_PS_KERNEL = 7


def _pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def _mem_topology() -> bytes:
    # int32 count, 4 pad, mem_data {u8 type, u8 used, 6 pad, u64 size KB, u64 base, tag[16]}
    banks = [("HOST", 0x10000), ("SRAM", 0xC000)]
    out = struct.pack("<i4x", len(banks))
    for tag, size_kb in banks:
        out += struct.pack("<BB6xQQ16s", _MEM_DRAM, 1, size_kb, 0x4000000, tag.encode())
    return out


def _connectivity(n_data: int, data_bank: int, instr_bank: int, ip: int = 0) -> list[tuple]:
    # connection {int32 arg_index, int32 ip_layout_index, int32 mem_data_index}
    return [(1, ip, instr_bank)] + [(FIRST_DATA_ARG + i, ip, data_bank) for i in range(n_data)]


def _counted(conns: list[tuple]) -> bytes:
    # int32 count, then the connections
    return struct.pack("<i", len(conns)) + b"".join(struct.pack("<iii", *c) for c in conns)


def _ip_layout(kernels: Sequence[tuple[str, int]]) -> bytes:
    # int32 count, 4 pad, ip_data {u32 type, u32 properties, u64 base, name[64]}; a PS
    # kernel's properties: subtype DPU (1) in bits 0-1, kernel id in bits 16-27.
    out = struct.pack("<i4x", len(kernels))
    for kernel_name, kernel_id in kernels:
        props = 1 | (kernel_id & 0xFFF) << 16
        name = f"{kernel_name}:MLIRAIE".encode()
        out += struct.pack("<IIQ64s", _IP_PS_KERNEL, props, 0xFFFFFFFFFFFFFFFF, name)
    return out


def _metadata_xml(kernels: Sequence[tuple[str, int]], n_data: int) -> bytes:
    """The kernel description xclbinutil derives from aiecc's kernels.json."""
    project = ET.Element("project")
    core = ET.SubElement(ET.SubElement(ET.SubElement(project, "platform"), "device"), "core")
    for kernel_name, kernel_id in kernels:
        kernel = ET.SubElement(core, "kernel", name=kernel_name, language="c", type="dpu")
        ET.SubElement(
            kernel, "extended-data", subtype="1", functional="0",
            dpu_kernel_id=f"0x{kernel_id:x}",
        )
        args = [("opcode", 0, 8, "uint64_t"), ("instr", 1, 8, "char *"),
                ("ninstr", 0, 4, "uint32_t")]
        args += [(f"bo{i}", 1, 8, "void*") for i in range(n_data)]
        offset = 0
        for index, (name, qual, size, ctype) in enumerate(args):
            ET.SubElement(
                kernel,
                "arg",
                name=name,
                addressQualifier=str(qual),
                id=str(index),
                size=f"0x{size:x}",
                offset=f"0x{offset:x}",
                hostOffset="0x0",
                hostSize=f"0x{size:x}",
                type=ctype,
            )
            offset += size
        ET.SubElement(kernel, "instance", name="MLIRAIE")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(project) + b"\n"


def _aie_partition(
    column_width: int, start_columns: Sequence[int], dpu_ids: Sequence[int]
) -> bytes:
    """struct aie_partition (184 bytes) followed by the arrays its array_offsets point at."""
    name_at = 184
    name = _pad8(b"QoS\0")
    starts_at = name_at + len(name)
    starts = _pad8(struct.pack(f"<{len(start_columns)}H", *start_columns))
    image_at = starts_at + len(starts)
    image = _pad8(b"\0" * 16 + b"npukit fake PDI image\0")
    pdi_at = image_at + len(image)
    group_at = pdi_at + 96
    group_name_at = group_at + 96
    group_name = _pad8(b"DPU\0")
    ids_at = group_name_at + len(group_name)
    ids = struct.pack(f"<{len(dpu_ids)}Q", *dpu_ids)
    pre_at = ids_at + len(ids)
    pre = _pad8(struct.pack("<I", 0xC1))

    head = struct.pack("<B3xII4xQQ", 0, name_at, 2048, 23423, 12345)
    # aie_partition_info: u16 column_width, 6 pad, array_offset start_columns, 72 reserved
    head += struct.pack("<H6xII72x", column_width, len(start_columns), starts_at)
    head += struct.pack("<II", 1, pdi_at)  # aie_pdi array
    head += struct.pack("<I52x", 0)  # kernel_commit_id, reserved
    assert len(head) == 184
    # aie_pdi: uuid[16], array_offset pdi_image, array_offset cdo_groups, 64 reserved
    pdi = struct.pack("<16sIIII64x", b"\0" * 16, len(image), image_at, 1, group_at)
    # cdo_group: mpo_name, u8 type (PRIMARY), 3 pad, u64 pdi_id, dpu_kernel_ids, pre groups
    group = struct.pack("<IB3xQIIII64x", group_name_at, 1, 1, len(dpu_ids), ids_at, 1, pre_at)
    return head + name + starts + image + pdi + group + group_name + ids + pre


def aiecc_start_columns(device: str) -> tuple[int, ...]:
    """The AIE_PARTITION start columns aiecc writes (aiecc main.py emit_partition): [0] for
    the whole-array devices npu1 and npu2, else 1..5-N for an N-column partition."""
    _gen, columns = device_info(device)
    return (0,) if device in ("npu1", "npu2") else tuple(range(1, 6 - columns))


def _container(sections: list[tuple[str, bytes]], xuid: bytes) -> bytes:
    """The axlf container around `sections`: header at 304, section table at 456."""
    data_at = XCLBIN_SECTIONS_AT + 40 * len(sections)
    data_at += -data_at % 8
    table = blob = b""
    for name, body in sections:
        # axlf_section_header: u32 kind, name[16], 4 pad, u64 offset, u64 size
        table += struct.pack(
            "<I16s4xQQ", KIND[name], name.lower()[:15].encode(), data_at + len(blob), len(body)
        )
        blob += _pad8(body)
    total = data_at + len(blob)
    # axlf_header: length, timestamp, feature ROM timestamp, u16 patch, u8 major, u8 minor,
    # u16 mode, u16 action mask, interface uuid[16], VBNV[64], uuid[16], debug_bin[16],
    # u32 section count, 4 pad -> 152 bytes.
    header = struct.pack("<QQQHBBHH16s64s16s16sI4x", total, 1700000000, 0, 0, 2, 23, 0, 0, b"",
                         b"", xuid, b"", len(sections))
    top = b"xclbin2\0" + struct.pack("<i", -1) + b"\xff" * 28 + b"\xff" * 256
    top += struct.pack("<Q", 1700000000)
    out = top + header + table
    out += b"\0" * (data_at - len(out)) + blob
    assert len(out) == total
    return out


def make_xclbin(
    n_data_buffers: int = 2,
    columns: int = 1,
    kernel_id: int = 0x901,
    dpu_kernel_ids: Sequence[int] = (0x901,),
    *,
    kernel_name: str = "MLIR_AIE",
    data_bank: int = HOST_BANK,
    instr_bank: int = SRAM_BANK,
    start_columns: Sequence[int] | None = None,
    omit_sections: Iterable[str] = (),
    other_kernels: Sequence[str] = (),
) -> bytes:
    """An xclbin with the 7 sections aiecc's xclbinutil step writes, section order as aiecc's.

    The keyword knobs build the defective variants the linter must catch. `other_kernels`
    come first in the metadata and IP_LAYOUT, each with its own instance, and their
    connections (instr in the HOST bank, data in SRAM) follow the kernel's own.
    """
    if start_columns is None:
        start_columns = tuple(range(1, 6 - columns)) if columns <= 4 else (0,)
    kernels = [(k, 0x900 + i) for i, k in enumerate(other_kernels)] + [(kernel_name, kernel_id)]
    own = len(other_kernels)
    conns = _connectivity(n_data_buffers, data_bank, instr_bank, ip=own)
    for ip in range(own):
        conns += _connectivity(n_data_buffers, instr_bank, data_bank, ip=ip)
    conn = _counted(conns)
    sections = [
        ("MEM_TOPOLOGY", _mem_topology()),
        ("AIE_PARTITION", _aie_partition(columns, start_columns, dpu_kernel_ids)),
        ("EMBEDDED_METADATA", _metadata_xml(kernels, n_data_buffers)),
        ("IP_LAYOUT", _ip_layout(kernels)),
        ("CONNECTIVITY", conn),
        ("GROUP_CONNECTIVITY", conn),
        ("GROUP_TOPOLOGY", _mem_topology()),
    ]
    omit = set(omit_sections)
    sections = [(n, b) for n, b in sections if n not in omit]
    xuid = uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"npukit-fake-{kernel_name}-{n_data_buffers}")
    return _container(sections, xuid.bytes)


# ------------------------------------------------------ multi-kernel xclbin ----


def _multi_partition(column_width: int, start_columns: Sequence[int],
                     kernel_ids: Sequence[int]) -> bytes:
    """struct aie_partition with one aie_pdi per kernel, each with one PRIMARY cdo_group
    naming that kernel's id, as aiecc's --xclbin-input appends one PDI per chained design."""
    n = len(kernel_ids)
    name_at = 184
    name = _pad8(b"QoS\0")
    starts_at = name_at + len(name)
    starts = _pad8(struct.pack(f"<{len(start_columns)}H", *start_columns))
    pdis_at = starts_at + len(starts)
    groups_at = pdis_at + 96 * n
    tail_at = groups_at + 96 * n  # per PDI: image, group name, ids, pre groups
    pdis = groups = tail = b""
    for i, kid in enumerate(kernel_ids):
        image_at = tail_at + len(tail)
        tail += _pad8(b"\0" * 16 + f"npukit fake PDI image {i}\0".encode())
        image_len = tail_at + len(tail) - image_at
        group_name_at = tail_at + len(tail)
        tail += _pad8(b"DPU\0")
        ids_at = tail_at + len(tail)
        tail += struct.pack("<Q", kid)
        pre_at = tail_at + len(tail)
        tail += _pad8(struct.pack("<I", 0xC1))
        pdi_uuid = uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"npukit-fake-pdi-{kid}").bytes
        pdis += struct.pack("<16sIIII64x", pdi_uuid, image_len, image_at, 1, groups_at + 96 * i)
        groups += struct.pack("<IB3xQIIII64x", group_name_at, 1, i + 1, 1, ids_at, 1, pre_at)
    head = struct.pack("<B3xII4xQQ", 0, name_at, 2048, 23423, 12345)
    head += struct.pack("<H6xII72x", column_width, len(start_columns), starts_at)
    head += struct.pack("<II", n, pdis_at)
    head += struct.pack("<I52x", 0)
    assert len(head) == 184
    return head + name + starts + pdis + groups + tail


def make_multi_xclbin(kernels: Sequence[tuple[str, str, int, int]], columns: int,
                      start_columns: Sequence[int]) -> bytes:
    """An xclbin holding several kernels, as aiecc --xclbin-input chains them: `kernels` are
    (kernel name, instance name, kernel id, data buffers) in the order they were added; each
    has its IP_LAYOUT entry "name:instance" with its id, its own connections (instr in SRAM,
    data in HOST), its metadata and its own PDI in AIE_PARTITION."""
    conns: list[tuple] = []
    for ip, (_name, _inst, _kid, n_data) in enumerate(kernels):
        conns += _connectivity(n_data, HOST_BANK, SRAM_BANK, ip=ip)
    conn = _counted(conns)
    ip_layout = struct.pack("<i4x", len(kernels))
    for name, inst, kid, _n in kernels:
        ip_layout += struct.pack("<IIQ64s", _IP_PS_KERNEL, 1 | (kid & 0xFFF) << 16,
                                 0xFFFFFFFFFFFFFFFF, f"{name}:{inst}".encode())
    metadata = ET.Element("project")
    core = ET.SubElement(ET.SubElement(ET.SubElement(metadata, "platform"), "device"), "core")
    for name, inst, kid, n_data in kernels:
        one = ET.fromstring(_metadata_xml([(name, kid)], n_data).split(b"\n", 1)[1])
        kernel = next(one.iter("kernel"))
        next(kernel.iter("instance")).set("name", inst)
        core.append(kernel)
    sections = [
        ("MEM_TOPOLOGY", _mem_topology()),
        ("AIE_PARTITION", _multi_partition(columns, start_columns, [k[2] for k in kernels])),
        ("EMBEDDED_METADATA",
         b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(metadata) + b"\n"),
        ("IP_LAYOUT", ip_layout),
        ("CONNECTIVITY", conn),
        ("GROUP_CONNECTIVITY", conn),
        ("GROUP_TOPOLOGY", _mem_topology()),
    ]
    xuid = uuidlib.uuid5(uuidlib.NAMESPACE_OID, "npukit-fake-" + "|".join(
        f"{k[0]}:{k[1]}:{k[2]}:{k[3]}" for k in kernels))
    return _container(sections, xuid.bytes)

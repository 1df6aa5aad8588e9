"""A minimal axlf (xclbin) writer and reader for the fake device: only what the fake needs.

Writes the container layout NPU_FACTS 4 describes (magic, header at 304, section headers from
456) with MEM_TOPOLOGY, CONNECTIVITY, IP_LAYOUT and EMBEDDED_METADATA, so the fake reads the
banks and kernel arguments from the file the way XRT does, instead of assuming them.
"""

from __future__ import annotations

import struct
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"xclbin2\0"
HEADER_AT = 304
NUM_SECTIONS_AT = HEADER_AT + 144
UUID_AT = HEADER_AT + 112
SECTIONS_AT = 456
SECTION_HEADER = struct.Struct("<I16s4xQQ")  # kind, name, offset, size: 40 bytes
EMBEDDED_METADATA, MEM_TOPOLOGY, CONNECTIVITY, IP_LAYOUT = 2, 6, 7, 8
MEM_DATA = struct.Struct("<BB6xQQ16s")  # type, used, size, base address, tag: 40 bytes
CONNECTION = struct.Struct("<iii")  # arg index, ip index, mem bank index
IP_DATA = struct.Struct("<IIQ64s")  # type, properties, base address, name: 80 bytes
IP_PS_KERNEL = 7
MEM_DRAM = 2


@dataclass(frozen=True)
class KernelArg:
    index: int
    name: str
    pointer: bool


@dataclass(frozen=True)
class Axlf:
    """What the fake reads from an xclbin: uuid, banks, and each kernel's args and connections.

    As in XRT, connectivity belongs to a kernel instance (an IP_LAYOUT entry named
    "kernel:instance"), so two kernels in one xclbin keep their own argument banks.
    """

    uuid: bytes
    mem_banks: tuple[str, ...]
    connections: tuple[tuple[int, int, int], ...]  # (arg index, ip index, bank)
    ip_names: tuple[str, ...]
    kernels: dict[str, tuple[KernelArg, ...]]
    ip_kernel_ids: tuple[int, ...] = ()  # each IP_LAYOUT entry's kernel id (properties 16-27)

    def connectivity(self, kernel_name: str) -> dict[int, int]:
        """Argument index -> bank for the first instance of `kernel_name`."""
        ips = [i for i, n in enumerate(self.ip_names) if n.split(":", 1)[0] == kernel_name]
        first = ips[0] if ips else 0
        return {arg: bank for arg, ip, bank in self.connections if ip == first}


def npu_args(n_data: int) -> tuple[KernelArg, ...]:
    """The MLIR_AIE argument table of an aiecc xclbin (NPU_FACTS 4) with `n_data` BOs."""
    head = (
        KernelArg(0, "opcode", False), KernelArg(1, "instr", True), KernelArg(2, "ninstr", False)
    )
    return head + tuple(KernelArg(3 + i, f"bo{i}", True) for i in range(n_data))


def write_xclbin(
    path: Path, n_data: int = 5, kernel_name: str = "MLIR_AIE", other_kernels: tuple[str, ...] = (),
    host_banks: int = 1, tags: tuple[str, str] = ("HOST", "SRAM"),
) -> Path:
    """An xclbin whose kernel has `n_data` data BOs: instr in bank 1 (SRAM), data in bank 0.

    `other_kernels` come first, each an instance of its own whose connections (instr in bank
    0, data in bank 1) follow the kernel's: a reader that merged them would get it wrong.
    With `host_banks` > 1 the topology has that many HOST banks (0, then 2, 3, ...) and data
    argument i is connected to the (i mod host_banks)-th: each argument's group is then its
    own, so a BO allocated in another argument's group lands in the wrong bank. `tags` names
    banks 0 and 1 (swapped, the data buffers sit in an SRAM-tagged bank: a defect to catch).
    """
    args = npu_args(n_data)
    banks = (*tags, *("HOST",) * (host_banks - 1))
    topology = struct.pack("<i4x", len(banks)) + b"".join(
        MEM_DATA.pack(MEM_DRAM, 1, 0, 0, tag.encode()) for tag in banks
    )
    host = [0, *range(2, host_banks + 1)]
    names = (*other_kernels, kernel_name)
    own = len(other_kernels)
    conns = [(a.index, own, 1 if a.name == "instr" else host[(a.index - 3) % host_banks])
             for a in args if a.pointer]
    for ip in range(own):
        conns += [(a.index, ip, 0 if a.name == "instr" else 1) for a in args if a.pointer]
    connectivity = struct.pack("<i", len(conns)) + b"".join(CONNECTION.pack(*c) for c in conns)
    ip_layout = struct.pack("<i4x", len(names)) + b"".join(
        IP_DATA.pack(IP_PS_KERNEL, 0, 0, f"{name}:MLIRAIE".encode()) for name in names
    )
    sections = [
        (MEM_TOPOLOGY, "MEM_TOPOLOGY", topology),
        (CONNECTIVITY, "CONNECTIVITY", connectivity),
        (IP_LAYOUT, "IP_LAYOUT", ip_layout),
        (EMBEDDED_METADATA, "EMBEDDED_METADATA", _metadata_xml(names, args)),
    ]
    offset = SECTIONS_AT + SECTION_HEADER.size * len(sections)
    headers, payload = b"", b""
    for kind, name, data in sections:
        data += b"\0" * (-len(data) % 8)
        headers += SECTION_HEADER.pack(kind, name.encode(), offset + len(payload), len(data))
        payload += data
    blob = bytearray(offset) + payload
    blob[0:8] = MAGIC
    struct.pack_into("<Q", blob, HEADER_AT, len(blob))
    blob[UUID_AT : UUID_AT + 16] = uuid.uuid4().bytes
    struct.pack_into("<I", blob, NUM_SECTIONS_AT, len(sections))
    blob[SECTIONS_AT : SECTIONS_AT + len(headers)] = headers
    path.write_bytes(bytes(blob))
    return path


def _metadata_xml(kernel_names: tuple[str, ...], args: tuple[KernelArg, ...]) -> bytes:
    root = ET.Element("project", name="npukit-fake")
    core = ET.SubElement(
        ET.SubElement(ET.SubElement(root, "platform", name="fake"), "device", name="fpga0"),
        "core", name="OCL_REGION_0",
    )
    for kernel_name in kernel_names:
        kernel = ET.SubElement(core, "kernel", name=kernel_name, language="c")
        for a in args:
            ET.SubElement(
                kernel, "arg", name=a.name, id=str(a.index),
                addressQualifier="1" if a.pointer else "0",
                type="void*" if a.pointer else ("uint64_t" if a.name == "opcode" else "uint32_t"),
            )
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def read_xclbin(path: Path) -> Axlf:
    """Parse the sections the fake needs; ValueError on anything else."""
    blob = Path(path).read_bytes()
    if blob[:8] != MAGIC:
        raise ValueError(f"{path}: not an xclbin (magic {blob[:8]!r})")
    (count,) = struct.unpack_from("<I", blob, NUM_SECTIONS_AT)
    sections: dict[int, bytes] = {}
    for i in range(count):
        kind, _, off, size = SECTION_HEADER.unpack_from(blob, SECTIONS_AT + i * SECTION_HEADER.size)
        sections[kind] = blob[off : off + size]
    missing = {MEM_TOPOLOGY, CONNECTIVITY, EMBEDDED_METADATA} - set(sections)
    if missing:
        raise ValueError(f"{path}: xclbin lacks section kinds {sorted(missing)}")
    topo = sections[MEM_TOPOLOGY]
    (n_banks,) = struct.unpack_from("<i", topo)
    banks = tuple(
        MEM_DATA.unpack_from(topo, 8 + i * MEM_DATA.size)[4].rstrip(b"\0").decode()
        for i in range(n_banks)
    )
    conn = sections[CONNECTIVITY]
    (n_conn,) = struct.unpack_from("<i", conn)
    connections = tuple(
        CONNECTION.unpack_from(conn, 4 + i * CONNECTION.size) for i in range(n_conn)
    )
    ip_names: tuple[str, ...] = ()
    ip_ids: tuple[int, ...] = ()
    if IP_LAYOUT in sections:
        ips = sections[IP_LAYOUT]
        (n_ip,) = struct.unpack_from("<i", ips)
        entries = [IP_DATA.unpack_from(ips, 8 + i * IP_DATA.size) for i in range(n_ip)]
        ip_names = tuple(e[3].rstrip(b"\0").decode() for e in entries)
        ip_ids = tuple(e[1] >> 16 & 0xFFF for e in entries)
    meta = ET.fromstring(sections[EMBEDDED_METADATA].rstrip(b"\0"))
    kernels = {
        k.get("name", ""): tuple(
            KernelArg(int(a.get("id", "0")), a.get("name", ""), a.get("addressQualifier") == "1")
            for a in k.findall("arg")
        )
        for k in meta.iter("kernel")
    }
    if not kernels:
        raise ValueError(f"{path}: no kernel in EMBEDDED_METADATA")
    return Axlf(blob[UUID_AT : UUID_AT + 16], banks, connections, ip_names, kernels, ip_ids)

"""Reader and validator of an aiecc-made xclbin (the axlf container), no XRT needed.

XRT refuses or, worse, silently works around a wrong xclbin at run time (a missing DPU kernel
id, a data argument in the wrong memory bank). Reading the sections here turns those into one
clear line at build time. Struct layouts follow XRT's `xclbin.h` (axlf, section headers,
mem_topology, connectivity, ip_layout, aie_partition).
"""

from __future__ import annotations

import struct
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ArtifactError
from runtime.insts import DEV_GEN_NPU1, device_columns, device_generation
from runtime.manifest import FIRST_DATA_ARG, INSTR_ARG, KERNEL_NAME

MAGIC = b"xclbin2\0"
# struct axlf: magic[8], signature length, reserved[28], key block[256], unique id -> 304;
# then struct axlf_header (152 bytes) and the section header array.
HEADER_AT = 304
SECTIONS_AT = HEADER_AT + 152
SECTION_HEADER_SIZE = 40
MAX_SECTIONS = 0x10000  # XCLBIN_MAX_NUM_SECTION

# enum axlf_section_kind; names as xclbinutil prints them.
SECTION_NAMES = {
    0: "BITSTREAM",
    2: "EMBEDDED_METADATA",
    6: "MEM_TOPOLOGY",
    7: "CONNECTIVITY",
    8: "IP_LAYOUT",
    9: "DEBUG_IP_LAYOUT",
    11: "CLOCK_FREQ_TOPOLOGY",
    14: "BUILD_METADATA",
    15: "KEYVALUE_METADATA",
    18: "PDI",
    20: "PARTITION_METADATA",
    22: "SYSTEM_METADATA",
    23: "SOFT_KERNEL",
    25: "AIE_METADATA",
    26: "GROUP_TOPOLOGY",
    27: "GROUP_CONNECTIVITY",
    29: "AIE_RESOURCES",
    32: "AIE_PARTITION",
    33: "IP_METADATA",
    34: "AIE_RESOURCES_BIN",
    35: "AIE_TRACE_METADATA",
}
REQUIRED_SECTIONS = (
    "MEM_TOPOLOGY",
    "AIE_PARTITION",
    "EMBEDDED_METADATA",
    "IP_LAYOUT",
    "CONNECTIVITY",
    "GROUP_CONNECTIVITY",
    "GROUP_TOPOLOGY",
)
IP_PS_KERNEL = 7  # enum IP_TYPE
SRAM_TAG = "SRAM"  # bank of the instruction buffer (aiecc's mem_topology.json)
HOST_TAG = "HOST"  # bank of every data buffer
FIXED_ARGS = ((0, "opcode", "scalar"), (1, "instr", "pointer"), (2, "ninstr", "scalar"))
_NPU1_COLUMNS = 4  # Phoenix's whole array; Strix has 8


@dataclass(frozen=True)
class KernelArg:
    """One kernel argument as EMBEDDED_METADATA declares it."""

    index: int
    name: str
    kind: str  # "scalar" (addressQualifier 0), "pointer" (1) or "other"
    address_qualifier: int = 0
    type: str = ""


@dataclass(frozen=True)
class XclbinInfo:
    """What the sections of one xclbin say about one of its kernels, banks and AIE partition.

    An xclbin may hold several kernels (each with instances, the IP_LAYOUT entries named
    "kernel:instance"); CONNECTIVITY entries belong to an instance. `kernel_name`,
    `kernel_args`, `connectivity` (its first instance's) and `ip_kernel_ids` describe the
    selected kernel only: the one asked for, else the first in EMBEDDED_METADATA.
    """

    uuid: str
    sections: tuple[str, ...]
    kernel_name: str  # "" when the kernel asked for is not in the xclbin
    kernel_args: tuple[KernelArg, ...]
    mem_banks: tuple[str, ...]
    connectivity: dict[int, int]  # arg index -> mem bank index, first instance
    ip_kernel_ids: tuple[int, ...]
    dpu_kernel_ids: tuple[int, ...]
    column_width: int
    start_columns: tuple[int, ...]
    ip_names: tuple[str, ...] = ()
    kernel_names: tuple[str, ...] = ()
    length: int = 0
    instances: dict[str, dict[int, int]] = field(default_factory=dict)  # per instance

    def arg(self, index: int) -> KernelArg | None:
        """The kernel argument at `index`, or None."""
        return next((a for a in self.kernel_args if a.index == index), None)

    def bank_of(self, arg_index: int) -> str | None:
        """The memory bank tag argument `arg_index` is connected to, or None."""
        bank = self.connectivity.get(arg_index)
        if bank is None or not 0 <= bank < len(self.mem_banks):
            return None
        return self.mem_banks[bank]


class _Reader:
    """Bounds-checked little-endian reads inside one byte range, errors naming the section."""

    def __init__(self, data: bytes, where: str, section: str) -> None:
        self.data = data
        self.where = where
        self.section = section

    def fail(self, what: str) -> ArtifactError:
        return ArtifactError(f"{self.where}: {self.section}: {what}")

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        size = struct.calcsize("<" + fmt)
        if offset < 0 or offset + size > len(self.data):
            raise self.fail(
                f"needs bytes {offset}..{offset + size}, the section has {len(self.data)}"
            )
        return struct.unpack_from("<" + fmt, self.data, offset)

    def u(self, fmt: str, offset: int) -> int:
        return self.unpack(fmt, offset)[0]

    def cstr(self, offset: int, size: int | None = None) -> str:
        """A NUL-terminated string at `offset` (within `size` bytes if given)."""
        if offset < 0 or offset >= len(self.data):
            raise self.fail(f"string offset {offset} outside the section ({len(self.data)} bytes)")
        end = len(self.data) if size is None else min(len(self.data), offset + size)
        raw = self.data[offset:end].split(b"\0", 1)[0]
        return raw.decode("utf-8", errors="replace")

    def array(self, at: int, elem: int, what: str) -> tuple[int, int]:
        """An `array_offset` {count, offset} at `at`, checked to lie inside the section."""
        count, offset = self.unpack("II", at)
        if offset + count * elem > len(self.data):
            raise self.fail(
                f"{what}: {count} entries at offset {offset} run past the section end "
                f"({len(self.data)} bytes)"
            )
        return count, offset

    def counted(self, first: int, elem: int, what: str) -> int:
        """The int32 entry count at 0 of a counted struct array starting at `first`."""
        count = self.u("i", 0)
        if count < 0 or first + count * elem > len(self.data):
            raise self.fail(
                f"{what} count {count} needs {first + max(count, 0) * elem} bytes, "
                f"the section has {len(self.data)}"
            )
        return count


def parse_xclbin(
    data: bytes, *, where: str = "final.xclbin", kernel: str | None = None
) -> XclbinInfo:
    """Parse the container and the sections npukit relies on, for `kernel` (default: the
    first); a malformed one is an error."""
    if data[:8] != MAGIC:
        raise ArtifactError(
            f"{where}: header: magic {data[:8]!r}, expected {MAGIC!r}; not an xclbin"
        )
    if len(data) < SECTIONS_AT:
        raise ArtifactError(f"{where}: header: {len(data)} bytes, expected at least {SECTIONS_AT}")
    top = _Reader(data, where, "header")
    length = top.u("Q", HEADER_AT)
    if length != len(data):
        raise ArtifactError(
            f"{where}: header: length field says {length} bytes, the file has {len(data)}; "
            "truncated or edited, rebuild it"
        )
    n_sections = top.u("I", HEADER_AT + 144)
    if n_sections > MAX_SECTIONS or SECTIONS_AT + n_sections * SECTION_HEADER_SIZE > len(data):
        raise ArtifactError(
            f"{where}: header: {n_sections} section headers do not fit in {len(data)} bytes"
        )
    header_uuid = str(uuidlib.UUID(bytes=bytes(data[HEADER_AT + 112 : HEADER_AT + 128])))
    sections: list[str] = []
    bodies: dict[str, bytes] = {}
    for n in range(n_sections):
        at = SECTIONS_AT + n * SECTION_HEADER_SIZE
        kind = top.u("I", at)
        name = SECTION_NAMES.get(kind, f"KIND_{kind}")
        offset, size = top.unpack("QQ", at + 24)
        if offset + size > len(data) or offset < SECTIONS_AT:
            raise ArtifactError(
                f"{where}: {name}: section bytes {offset}..{offset + size} lie outside the "
                f"file's data ({SECTIONS_AT}..{len(data)})"
            )
        sections.append(name)
        bodies.setdefault(name, bytes(data[offset : offset + size]))

    def reader(name: str) -> _Reader | None:
        body = bodies.get(name)
        return None if body is None else _Reader(body, where, name)

    banks = _mem_banks(reader("MEM_TOPOLOGY"))
    ips = _ip_layout(reader("IP_LAYOUT"))
    kernels = _kernels(reader("EMBEDDED_METADATA"))
    width, starts, dpu_ids = _aie_partition(reader("AIE_PARTITION"))
    names = tuple(k for k, _ in kernels)
    if kernel is None:
        kernel = names[0] if names else ""
    args = dict(kernels).get(kernel)
    chosen = kernel if args is not None else ""
    mine = [i for i, (name, _) in enumerate(ips) if name.split(":", 1)[0] == chosen]
    instances: dict[str, dict[int, int]] = {ips[i][0]: {} for i in mine}
    for arg, ip, bank in _connections(reader("CONNECTIVITY")):
        if ip in mine:
            instances[ips[ip][0]][arg] = bank
    return XclbinInfo(
        uuid=header_uuid,
        sections=tuple(sections),
        kernel_name=chosen,
        kernel_args=args or (),
        mem_banks=banks,
        connectivity=next(iter(instances.values()), {}),
        ip_kernel_ids=tuple(ips[i][1] for i in mine if ips[i][1] is not None),
        dpu_kernel_ids=dpu_ids,
        column_width=width,
        start_columns=starts,
        ip_names=tuple(name for name, _ in ips),
        kernel_names=names,
        length=length,
        instances=instances,
    )


def _mem_banks(r: _Reader | None) -> tuple[str, ...]:
    # struct mem_topology: int32 count, pad to 8, mem_data[40]: type, used, pad[6], size,
    # base address, tag[16].
    if r is None:
        return ()
    count = r.counted(8, 40, "mem_data")
    return tuple(r.cstr(8 + 40 * i + 24, 16) for i in range(count))


def _connections(r: _Reader | None) -> list[tuple[int, int, int]]:
    # struct connectivity: int32 count, connection[12]: arg_index, ip_layout_index, mem_data_index.
    if r is None:
        return []
    count = r.counted(4, 12, "connection")
    return [r.unpack("iii", 4 + 12 * i) for i in range(count)]  # type: ignore[misc]


def _ip_layout(r: _Reader | None) -> list[tuple[str, int | None]]:
    # struct ip_layout: int32 count, pad to 8, ip_data[80]: type, properties, base address,
    # name[64]. For IP_PS_KERNEL, properties bits 16..27 are ps_kernel.m_kernel_id.
    if r is None:
        return []
    count = r.counted(8, 80, "ip_data")
    out: list[tuple[str, int | None]] = []
    for i in range(count):
        at = 8 + 80 * i
        ip_type, props = r.unpack("II", at)
        kid = (props >> 16) & 0xFFF if ip_type == IP_PS_KERNEL else None
        out.append((r.cstr(at + 16, 64), kid))
    return out


def _kernels(r: _Reader | None) -> list[tuple[str, tuple[KernelArg, ...]]]:
    """Each <kernel> of the metadata XML with its <arg>s, in document order."""
    if r is None:
        return []
    text = r.data.rstrip(b"\0")
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, LookupError, ValueError) as e:
        # LookupError: the XML declaration names an encoding Python does not know
        raise r.fail(f"XML does not parse ({e}); rebuild the xclbin") from None
    kernels = []
    for k in root.iter("kernel"):
        args = []
        for a in k.iter("arg"):
            try:
                index = int(a.get("id", ""), 0)
                qual = int(a.get("addressQualifier", ""), 0)
            except ValueError as e:
                raise r.fail(
                    f"kernel {k.get('name')!r} arg {a.get('name')!r}: id or addressQualifier "
                    "is not an integer"
                ) from e
            kind = {0: "scalar", 1: "pointer"}.get(qual, "other")
            args.append(KernelArg(index, a.get("name", ""), kind, qual, a.get("type", "")))
        kernels.append((k.get("name", ""), tuple(sorted(args, key=lambda x: x.index))))
    return kernels


def _aie_partition(r: _Reader | None) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    # struct aie_partition (184 bytes): info at 32 = aie_partition_info {u16 column_width,
    # pad[6], array_offset start_columns (u16)}; aie_pdi array_offset at 120. Each aie_pdi
    # (96): uuid[16], pdi_image at 16, cdo_groups at 24. Each cdo_group (96): mpo_name,
    # cdo_type, pad, pdi_id, dpu_kernel_ids (u64) at 16, pre_cdo_groups (u32) at 24.
    if r is None:
        return 0, (), ()
    r.unpack("184s", 0)
    width = r.u("H", 32)
    n, off = r.array(40, 2, "start_columns")
    starts = r.unpack(f"{n}H", off) if n else ()
    dpu_ids: list[int] = []
    n_pdi, pdi_off = r.array(120, 96, "aie_pdi")
    for p in range(n_pdi):
        pdi = pdi_off + 96 * p
        r.array(pdi + 16, 1, f"aie_pdi[{p}].pdi_image")
        n_grp, grp_off = r.array(pdi + 24, 96, f"aie_pdi[{p}].cdo_groups")
        for g in range(n_grp):
            grp = grp_off + 96 * g
            n_ids, ids_off = r.array(grp + 16, 8, f"aie_pdi[{p}].cdo_groups[{g}].dpu_kernel_ids")
            dpu_ids.extend(r.unpack(f"{n_ids}Q", ids_off) if n_ids else ())
    return width, tuple(starts), tuple(dpu_ids)


def read_xclbin(path: Path, kernel: str | None = None) -> XclbinInfo:
    """Read and parse an xclbin file, for `kernel` (default: its first)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read the xclbin ({e.strerror})") from e
    return parse_xclbin(data, where=str(path), kernel=kernel)


def lint_xclbin(
    path: Path,
    *,
    n_data_buffers: int,
    device: str | None = None,
    kernel_name: str = KERNEL_NAME,
) -> XclbinInfo:
    """Check an xclbin holds what the NPU driver and XRT need to run `kernel_name`.

    The checks mirror the ways a run fails: a missing section, a kernel XRT cannot find, data
    buffers beyond the declared arguments, arguments in the wrong bank (XRT then copies into a
    local clone), a DPU kernel id the driver cannot match, a partition of the wrong width.
    """
    info = read_xclbin(path, kernel=kernel_name)
    missing = [s for s in REQUIRED_SECTIONS if s not in info.sections]
    if missing:
        raise ArtifactError(
            f"{path}: {missing[0]}: section missing; an aiecc xclbin has "
            f"{', '.join(REQUIRED_SECTIONS)}, found {', '.join(info.sections) or 'none'}"
        )
    _check_kernel_args(path, info, kernel_name, n_data_buffers)
    _check_kernel_ids(path, info, kernel_name)
    _check_connectivity(path, info, n_data_buffers)
    if device is not None:
        columns = device_columns(device)
        if info.column_width != columns:
            raise ArtifactError(
                f"{path}: AIE_PARTITION: column_width {info.column_width}, expected {columns} "
                f"for device {device}"
            )
        family = partition_family(info)
        wanted = "npu1" if device_generation(device) == DEV_GEN_NPU1 else "npu2"
        if family is not None and family != wanted:
            raise ArtifactError(
                f"{path}: AIE_PARTITION: column_width {info.column_width} from column "
                f"{info.start_columns[0]} is aiecc's partition of {family}, but the device is "
                f"{device}; rebuild for the right device"
            )
    return info


def partition_family(info: XclbinInfo) -> str | None:
    """"npu1" or "npu2" where the AIE partition alone tells them apart, else None.

    aiecc (main.py emit_partition) writes column_width N with start_columns [0] for the
    whole-array devices (npu1: 4 columns, npu2: 8) and 1..5-N for an N-column partition,
    and nothing else in the xclbin differs by device (the same operations_per_cycle,
    fingerprints, PDI id code and kernel metadata). So a width above 4 is npu2 and width 4
    from column 0 is npu1; npu1_Ncol and npu2_Ncol at N <= 4 give identical metadata (only
    the PDI's CDO register writes differ, which npukit does not decode), so there only the
    instruction stream's device generation (lint_insts) tells them apart.
    """
    if info.column_width > _NPU1_COLUMNS:
        return "npu2"
    if info.column_width == _NPU1_COLUMNS and info.start_columns == (0,):
        return "npu1"
    return None


def _check_kernel_args(path: Path, info: XclbinInfo, kernel_name: str, n_data: int) -> None:
    if info.kernel_name != kernel_name:
        raise ArtifactError(
            f"{path}: EMBEDDED_METADATA: kernel {kernel_name!r} expected, found "
            f"{', '.join(repr(k) for k in info.kernel_names) or 'no kernel'}"
        )
    for index, name, kind in FIXED_ARGS:
        arg = info.arg(index)
        if arg is None or arg.name != name or arg.kind != kind:
            found = "nothing" if arg is None else f"{arg.kind} {arg.name!r}"
            hint = (
                "; an xclbin without the opcode argument (Riallto era) needs a rebuild"
                if index == 0 and arg is not None and arg.name == "instr"
                else ""
            )
            raise ArtifactError(
                f"{path}: EMBEDDED_METADATA: kernel argument {index} should be {kind} "
                f"{name!r}, found {found}{hint}"
            )
    n_ptr = 0
    while (a := info.arg(FIRST_DATA_ARG + n_ptr)) is not None and a.kind == "pointer":
        n_ptr += 1
    if n_ptr < n_data:
        raise ArtifactError(
            f"{path}: EMBEDDED_METADATA: {n_data} data buffers need pointer arguments "
            f"{FIRST_DATA_ARG}..{FIRST_DATA_ARG + n_data - 1}, the kernel declares {n_ptr}"
        )


def _check_connectivity(path: Path, info: XclbinInfo, n_data: int) -> None:
    wanted = [(INSTR_ARG, SRAM_TAG)]
    wanted += [(FIRST_DATA_ARG + i, HOST_TAG) for i in range(n_data)]
    for instance, banks in info.instances.items():
        for arg, tag in wanted:
            bank = banks.get(arg)
            found = info.mem_banks[bank] if bank is not None and 0 <= bank < len(
                info.mem_banks) else None
            if found != tag:
                shown = ("no connection" if bank is None
                         else f"bank {bank} ({found or 'no such bank'})")
                raise ArtifactError(
                    f"{path}: CONNECTIVITY: argument {arg} should connect to the {tag} bank "
                    f"(banks: {', '.join(info.mem_banks) or 'none'}), found {shown} "
                    f"(instance {instance})"
                )


def _check_kernel_ids(path: Path, info: XclbinInfo, kernel_name: str) -> None:
    if not any(n.split(":", 1)[0] == kernel_name for n in info.ip_names):
        raise ArtifactError(
            f"{path}: IP_LAYOUT: no IP named {kernel_name}:<instance>, found "
            f"{', '.join(info.ip_names) or 'none'}"
        )
    if not info.ip_kernel_ids:
        raise ArtifactError(f"{path}: IP_LAYOUT: no PS kernel entry carries a kernel id")
    for kid in info.ip_kernel_ids:
        if kid not in info.dpu_kernel_ids:
            ids = ", ".join(f"0x{d:X}" for d in info.dpu_kernel_ids) or "none"
            raise ArtifactError(
                f"{path}: IP_LAYOUT/AIE_PARTITION: kernel id 0x{kid:X} is not among the "
                f"partition's dpu_kernel_ids ({ids}); the driver would say "
                '"No valid DPU kernel found in xclbin"'
            )

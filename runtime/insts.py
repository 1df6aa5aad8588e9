"""Reader and validator of an NPU instruction stream (`insts.bin`), no XRT needed.

The stream is what the firmware runs on every kernel call: a header, then register writes that
program the shim DMAs and address patches that plug the host buffers in. A stale or mismatched
stream fails silently on hardware, so every check here names the file and the expected value.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ArtifactError
from runtime.manifest import FIRST_DATA_ARG

HEADER_WORDS = 4
# Transaction format version (major, minor) written by mlir-aie since March 2025
# (AIETargetNPU.cpp: major 0, minor 1; mlir-aie #2152 and #2156); version 1.0 used 3-word
# writes and 6-word patches.
FORMAT_VERSION = (0, 1)
DEV_GEN_NPU1 = 3  # Phoenix / Hawk Point (aie2)
DEV_GEN_NPU2 = 4  # Strix / Krackan (aie2p)

# Opcodes are aie-rt's XAie_TxnOpcode values; custom ops start at 0x80.
OP_WRITE32 = 0x00
OP_BLOCKWRITE = 0x01
OP_MASKWRITE = 0x03
OP_LOAD_PDI = 0x08
OP_SYNC = 0x80
OP_ADDRESS_PATCH = 0x81
OP_READ_REGS = 0x82

OP_NAMES = {
    OP_WRITE32: "write32",
    OP_BLOCKWRITE: "blockwrite",
    OP_MASKWRITE: "maskwrite",
    OP_LOAD_PDI: "load_pdi",
    OP_SYNC: "sync",
    OP_ADDRESS_PATCH: "address_patch",
    OP_READ_REGS: "read_regs",
}

# Where each op keeps its own size in bytes, and its fixed length in words (None: from the
# size word). Layouts from mlir-aie's AIETargetNPU.cpp and its test/Targets/NPU lit tests:
#   write32   [op, 0, addr, 0, value, size=24]
#   blockwrite [op, col|row<<8, addr, size=(4+N)*4, N data words]
#   maskwrite [op, 0, addr, 0, value, mask, size=28]
#   load_pdi  [op | id<<16, pdi size, addr lo, addr hi]  (no size word of its own)
#   sync      [op, size=16, dir|row<<8|col<<16, rows<<8|cols<<16|channel<<24]
#   patch     [op, size=48, 0, 0, 0, action, addr lo, addr hi, arg lo, arg hi, plus lo, plus hi]
#   read_regs [op, size, count, addresses...]
_SIZE_WORD = {
    OP_WRITE32: 5,
    OP_BLOCKWRITE: 3,
    OP_MASKWRITE: 6,
    OP_SYNC: 1,
    OP_ADDRESS_PATCH: 1,
    OP_READ_REGS: 1,
}
_FIXED_WORDS = {
    OP_WRITE32: 6,
    OP_MASKWRITE: 7,
    OP_LOAD_PDI: 4,
    OP_SYNC: 4,
    OP_ADDRESS_PATCH: 12,
}
_MIN_WORDS = {OP_BLOCKWRITE: 4, OP_READ_REGS: 3}
PATCH_ARG_WORD = 8  # low half of the patch's 64-bit argument index; word 9 is the high half

_DEVICE_RE = re.compile(r"^(npu1|npu2)(?:_([1-7])col)?$")
_FULL_COLUMNS = {"npu1": 4, "npu2": 8}
_MAX_PARTIAL_COLUMNS = {"npu1": 3, "npu2": 7}
LFS_POINTER = b"version https://git-lfs.github.com/spec/"  # first line of a git-lfs pointer
_TEXT_LINE_RE = re.compile(rb"^\s*(?:0x)?[0-9A-Fa-f]{8}\s*$")


@dataclass(frozen=True)
class InstsOp:
    """One operation of the stream: where it starts, what it is, how long it is.

    `arg_index` is set for address patches only: the XRT kernel argument whose buffer address
    the firmware writes into the DMA descriptor. The stream stores the runtime-sequence index
    i; the host binds that buffer at kernel argument FIRST_DATA_ARG + i (AIEDmaToNpu.cpp).
    """

    offset_words: int
    opcode: int
    name: str
    n_words: int
    arg_index: int | None = None


@dataclass(frozen=True)
class InstsInfo:
    """What the header and operation walk of one instruction stream say."""

    dev_gen: int
    major: int
    minor: int
    rows: int
    columns: int
    mem_tile_rows: int
    n_ops: int
    n_words: int
    size_bytes: int
    ops: tuple[InstsOp, ...]

    @property
    def patched_args(self) -> tuple[int, ...]:
        """The kernel argument indices the address patches fill in, sorted, each once."""
        return tuple(sorted({op.arg_index for op in self.ops if op.arg_index is not None}))

    def count(self, name: str) -> int:
        """How many operations named `name` (e.g. "sync") the stream holds."""
        return sum(1 for op in self.ops if op.name == name)


def device_generation(device: str) -> int:
    """The header's device generation for an mlir-aie device name: npu1* -> 3, npu2* -> 4."""
    return DEV_GEN_NPU1 if _split_device(device)[0] == "npu1" else DEV_GEN_NPU2


def device_columns(device: str) -> int:
    """The columns an mlir-aie device spans: npu1_Ncol/npu2_Ncol -> N, npu1 -> 4, npu2 -> 8."""
    family, n = _split_device(device)
    return _FULL_COLUMNS[family] if n is None else n


def _split_device(device: str) -> tuple[str, int | None]:
    m = _DEVICE_RE.match(device)
    if m is None or (m.group(2) and int(m.group(2)) > _MAX_PARTIAL_COLUMNS[m.group(1)]):
        raise ArtifactError(
            f"unknown device {device!r}: expected npu1, npu1_1col..npu1_3col, npu2 or "
            "npu2_1col..npu2_7col (mlir-aie AIEAttrs.td)"
        )
    return m.group(1), int(m.group(2)) if m.group(2) else None


def parse_insts(data: bytes, *, where: str = "insts.bin") -> InstsInfo:
    """Parse and check the structure of an instruction stream; any defect is an ArtifactError."""
    if _looks_like_text(data):
        raise ArtifactError(
            f"{where}: text insts from an mlir-aie before March 2025; rebuild with a current "
            "aiecc (it writes a binary insts.bin)"
        )
    if data.startswith(LFS_POINTER):
        raise ArtifactError(
            f"{where}: a git-lfs pointer file, not the instruction stream it stands for; "
            "fetch the real file (`git lfs pull`) or rebuild it"
        )
    if len(data) < HEADER_WORDS * 4:
        raise ArtifactError(
            f"{where}: {len(data)} bytes, expected at least the {HEADER_WORDS * 4}-byte header"
        )
    # The format goes first: a file of another format (an old `.seq`, another tool's output)
    # has no size word to check, and calling it "truncated" would send its owner astray.
    w0 = struct.unpack_from("<I", data)[0]
    major, minor, dev_gen, rows = w0 & 0xFF, (w0 >> 8) & 0xFF, (w0 >> 16) & 0xFF, w0 >> 24
    if (major, minor) != FORMAT_VERSION:
        raise ArtifactError(
            f"{where}: not a current transaction stream: transaction format {major}.{minor}, "
            f"expected {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]} (header word 0 = 0x{w0:08X}); "
            "an mlir-aie before March 2025 or another tool wrote it, rebuild with a current aiecc"
        )
    if dev_gen not in (DEV_GEN_NPU1, DEV_GEN_NPU2):
        raise ArtifactError(
            f"{where}: device generation {dev_gen} in header word 0 (0x{w0:08X}), "
            f"expected {DEV_GEN_NPU1} (npu1) or {DEV_GEN_NPU2} (npu2)"
        )
    if len(data) % 4:
        raise ArtifactError(
            f"{where}: size {len(data)} bytes is not a multiple of 4 (a stream of uint32 words)"
        )
    words = struct.unpack(f"<{len(data) // 4}I", data)
    w1, n_ops, size = words[1:HEADER_WORDS]
    if size != len(data):
        raise ArtifactError(
            f"{where}: header size word says {size} bytes, the file has {len(data)}; "
            "truncated or edited, rebuild it"
        )
    ops = _walk_ops(words, where)
    if len(ops) != n_ops:
        raise ArtifactError(f"{where}: header says {n_ops} operations, the stream holds {len(ops)}")
    return InstsInfo(
        dev_gen=dev_gen,
        major=major,
        minor=minor,
        rows=rows,
        columns=w1 & 0xFF,
        mem_tile_rows=(w1 >> 8) & 0xFF,
        n_ops=n_ops,
        n_words=len(words),
        size_bytes=len(data),
        ops=tuple(ops),
    )


def _looks_like_text(data: bytes) -> bool:
    """True for the pre-2025 `insts.txt` format: one 8-digit hex word per line."""
    lines = [ln for ln in data[:4096].splitlines() if ln.strip()]
    return bool(lines) and all(_TEXT_LINE_RE.match(ln) for ln in lines[:8])


def _walk_ops(words: Sequence[int], where: str) -> list[InstsOp]:
    ops: list[InstsOp] = []
    i = HEADER_WORDS
    while i < len(words):
        opcode = words[i] & 0xFF  # the other bytes of word 0 carry col/row or a PDI id
        name = OP_NAMES.get(opcode)
        if name is None:
            raise ArtifactError(
                f"{where}: unknown opcode 0x{opcode:02X} at word {i} (0x{words[i]:08X}); "
                f"expected one of {', '.join(f'0x{k:02X} {v}' for k, v in OP_NAMES.items())}"
            )
        n_words = _op_words(words, i, opcode, name, where)
        arg_index = None
        if opcode == OP_ADDRESS_PATCH:
            raw = words[i + PATCH_ARG_WORD] | (words[i + PATCH_ARG_WORD + 1] << 32)
            arg_index = FIRST_DATA_ARG + raw
        ops.append(InstsOp(i, opcode, name, n_words, arg_index))
        i += n_words
    return ops


def _op_words(words: Sequence[int], i: int, opcode: int, name: str, where: str) -> int:
    """The length in words of the op at word i, checked against its own size field."""
    remaining = len(words) - i
    fixed = _FIXED_WORDS.get(opcode)
    size_at = _SIZE_WORD.get(opcode)
    if fixed is not None:
        n_words = fixed
    else:
        if size_at is None or size_at >= remaining:
            raise ArtifactError(
                f"{where}: truncated {name} at word {i}: its size word is past the end "
                f"({remaining} words left)"
            )
        size = words[i + size_at]
        n_words = size // 4
        if size % 4 or n_words < _MIN_WORDS[opcode]:
            raise ArtifactError(
                f"{where}: {name} at word {i} has size field {size} bytes, expected a multiple "
                f"of 4 of at least {_MIN_WORDS[opcode] * 4}"
            )
    if n_words > remaining:
        raise ArtifactError(
            f"{where}: truncated {name} at word {i}: needs {n_words} words, only {remaining} remain"
        )
    if fixed is not None and size_at is not None and words[i + size_at] != fixed * 4:
        raise ArtifactError(
            f"{where}: {name} at word {i} has size field {words[i + size_at]} bytes, "
            f"expected {fixed * 4}; not the transaction format this npukit reads"
        )
    return n_words


def read_insts(path: Path) -> InstsInfo:
    """Read and parse an instruction stream file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read the instruction stream ({e.strerror})") from e
    return parse_insts(data, where=str(path))


def lint_insts(path: Path, *, device: str, bound_args: Sequence[int]) -> InstsInfo:
    """Parse a stream and check it fits the target device and the host's buffer bindings.

    `bound_args` are the kernel argument indices the host passes data buffers at (3, 4, ...):
    a patch of any other argument would make the DMA read or write an unbound address.
    """
    info = read_insts(path)
    dev_gen = device_generation(device)
    if info.dev_gen != dev_gen:
        raise ArtifactError(
            f"{path}: header device generation {info.dev_gen} "
            f"({_gen_name(info.dev_gen)}), but the device is {device} (generation {dev_gen}); "
            "rebuild for the right device"
        )
    columns = device_columns(device)
    if info.columns != columns:
        raise ArtifactError(
            f"{path}: header says {info.columns} columns, device {device} has {columns}"
        )
    bound = sorted(set(bound_args))
    for op in info.ops:
        if op.arg_index is not None and op.arg_index not in bound:
            shown = ",".join(str(a) for a in bound) or "none"
            raise ArtifactError(
                f"{path}: address patch at word {op.offset_words} for argument {op.arg_index} "
                f"but the host binds only {shown}"
            )
    return info


def _gen_name(dev_gen: int) -> str:
    return {DEV_GEN_NPU1: "npu1", DEV_GEN_NPU2: "npu2"}.get(dev_gen, "unknown")

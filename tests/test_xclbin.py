"""xclbin reader: round trips of a faithful aiecc-style xclbin and one test per lint failure."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ArtifactError
from runtime.xclbin import lint_xclbin, parse_xclbin, read_xclbin
from tests.fakes.artifacts import (
    HOST_BANK,
    SRAM_BANK,
    XCLBIN_HEADER_AT,
    XCLBIN_SECTIONS_AT,
    make_xclbin,
)

SEVEN = (
    "MEM_TOPOLOGY",
    "AIE_PARTITION",
    "EMBEDDED_METADATA",
    "IP_LAYOUT",
    "CONNECTIVITY",
    "GROUP_CONNECTIVITY",
    "GROUP_TOPOLOGY",
)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "final.xclbin"
    path.write_bytes(data)
    return path


def lint(tmp_path: Path, data: bytes, n_data_buffers: int = 2, device: str | None = None) -> None:
    lint_xclbin(write(tmp_path, data), n_data_buffers=n_data_buffers, device=device)


def test_round_trip_default() -> None:
    info = parse_xclbin(make_xclbin())
    assert info.sections == SEVEN
    assert info.kernel_name == "MLIR_AIE" and info.kernel_names == ("MLIR_AIE",)
    assert [(a.index, a.name, a.kind) for a in info.kernel_args] == [
        (0, "opcode", "scalar"),
        (1, "instr", "pointer"),
        (2, "ninstr", "scalar"),
        (3, "bo0", "pointer"),
        (4, "bo1", "pointer"),
    ]
    assert info.kernel_args[0].type == "uint64_t" and info.kernel_args[1].address_qualifier == 1
    assert info.mem_banks == ("HOST", "SRAM")
    assert info.connectivity == {1: SRAM_BANK, 3: HOST_BANK, 4: HOST_BANK}
    assert info.bank_of(1) == "SRAM" and info.bank_of(4) == "HOST" and info.bank_of(2) is None
    assert info.ip_kernel_ids == (0x901,) and info.dpu_kernel_ids == (0x901,)
    assert info.ip_names == ("MLIR_AIE:MLIRAIE",)
    assert info.column_width == 1 and info.start_columns == (1, 2, 3, 4)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", info.uuid)


def test_round_trip_variants() -> None:
    info = parse_xclbin(make_xclbin(5, columns=4, kernel_id=0x902, dpu_kernel_ids=(0x901, 0x902)))
    assert [a.name for a in info.kernel_args][3:] == ["bo0", "bo1", "bo2", "bo3", "bo4"]
    assert sorted(info.connectivity) == [1, 3, 4, 5, 6, 7]
    assert info.ip_kernel_ids == (0x902,) and info.dpu_kernel_ids == (0x901, 0x902)
    assert info.column_width == 4 and info.start_columns == (1,)


def test_lint_accepts_faithful_xclbin(tmp_path: Path) -> None:
    info = lint_xclbin(write(tmp_path, make_xclbin(3)), n_data_buffers=3, device="npu1_1col")
    assert info.length == len(make_xclbin(3))
    # fewer buffers than declared is fine (an unused BO slot)
    lint(tmp_path, make_xclbin(3), n_data_buffers=1)


def test_bad_magic(tmp_path: Path) -> None:
    data = b"xclbin1\0" + make_xclbin()[8:]
    with pytest.raises(ArtifactError, match=r"final\.xclbin: header: magic .*expected"):
        lint(tmp_path, data)


def test_header_length_tampered(tmp_path: Path) -> None:
    data = bytearray(make_xclbin())
    struct.pack_into("<Q", data, XCLBIN_HEADER_AT, len(data) + 100)
    with pytest.raises(
        ArtifactError, match=f"header: length field says {len(data) + 100} bytes, the file has"
    ):
        lint(tmp_path, bytes(data))


def test_truncated_file(tmp_path: Path) -> None:
    data = make_xclbin()
    with pytest.raises(ArtifactError, match="length field says"):
        lint(tmp_path, data[:-16])
    with pytest.raises(ArtifactError, match="expected at least 456"):
        parse_xclbin(data[:300])


def test_section_out_of_bounds(tmp_path: Path) -> None:
    data = bytearray(make_xclbin())
    # second section header (AIE_PARTITION): size field at +32
    struct.pack_into("<Q", data, XCLBIN_SECTIONS_AT + 40 + 32, 1 << 20)
    with pytest.raises(ArtifactError, match=r"AIE_PARTITION: section bytes \d+\.\.\d+ lie outside"):
        lint(tmp_path, bytes(data))


def test_section_count_too_large() -> None:
    data = bytearray(make_xclbin())
    struct.pack_into("<I", data, XCLBIN_HEADER_AT + 144, 1000)
    with pytest.raises(ArtifactError, match="1000 section headers do not fit"):
        parse_xclbin(bytes(data))


@pytest.mark.parametrize("section", SEVEN)
def test_missing_section(tmp_path: Path, section: str) -> None:
    with pytest.raises(ArtifactError, match=f"final.xclbin: {section}: section missing"):
        lint(tmp_path, make_xclbin(omit_sections=[section]))


def test_wrong_kernel_name(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError, match="EMBEDDED_METADATA: kernel 'MLIR_AIE' expected, found 'OTHER'"
    ):
        lint(tmp_path, make_xclbin(kernel_name="OTHER"))


def test_too_few_data_arguments(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError,
        match=r"EMBEDDED_METADATA: 3 data buffers need pointer arguments 3\.\.5, "
        "the kernel declares 2",
    ):
        lint(tmp_path, make_xclbin(2), n_data_buffers=3)


def test_data_argument_in_wrong_bank(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError,
        match=r"CONNECTIVITY: argument 3 should connect to the HOST bank .*found bank 1 \(SRAM\)",
    ):
        lint(tmp_path, make_xclbin(data_bank=SRAM_BANK))


def test_instr_in_wrong_bank(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError, match=r"CONNECTIVITY: argument 1 should connect to the SRAM bank"
    ):
        lint(tmp_path, make_xclbin(instr_bank=HOST_BANK))


def test_connection_to_missing_bank(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"found bank 5 \(no such bank\)"):
        lint(tmp_path, make_xclbin(data_bank=5))


def test_kernel_id_mismatch(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError,
        match=r"IP_LAYOUT/AIE_PARTITION: kernel id 0x902 is not among the partition's "
        r"dpu_kernel_ids \(0x901\).*No valid DPU kernel found in xclbin",
    ):
        lint(tmp_path, make_xclbin(kernel_id=0x902))


@pytest.mark.parametrize(("device", "width"), [("npu1", 4), ("npu1_2col", 2), ("npu2", 8)])
def test_wrong_column_width(tmp_path: Path, device: str, width: int) -> None:
    with pytest.raises(
        ArtifactError,
        match=f"AIE_PARTITION: column_width 1, expected {width} for device {device}",
    ):
        lint(tmp_path, make_xclbin(columns=1), device=device)


@pytest.mark.parametrize(
    ("device", "columns"), [("npu1", 4), ("npu1_3col", 3), ("npu2_1col", 1), ("npu2", 8)]
)
def test_right_column_width(tmp_path: Path, device: str, columns: int) -> None:
    lint(tmp_path, make_xclbin(columns=columns), device=device)


def test_partition_array_out_of_bounds() -> None:
    data = bytearray(make_xclbin())
    offset = struct.unpack_from("<Q", data, XCLBIN_SECTIONS_AT + 40 + 24)[0]
    struct.pack_into("<I", data, offset + 120, 50)  # 50 aie_pdi entries cannot fit
    with pytest.raises(ArtifactError, match="AIE_PARTITION: aie_pdi: 50 entries at offset"):
        parse_xclbin(bytes(data))


def test_metadata_not_xml() -> None:
    data = bytearray(make_xclbin())
    offset = struct.unpack_from("<Q", data, XCLBIN_SECTIONS_AT + 80 + 24)[0]
    data[offset : offset + 5] = b"<<<<<"
    with pytest.raises(ArtifactError, match="EMBEDDED_METADATA: XML does not parse"):
        parse_xclbin(bytes(data))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read the xclbin"):
        read_xclbin(tmp_path / "none.xclbin")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=8))
def test_corrupted_bytes_only_raise_artifact_error(at: int, junk: bytes) -> None:
    data = bytearray(make_xclbin())
    at = at % len(data)
    data[at : at + len(junk)] = junk
    try:
        parse_xclbin(bytes(data))
    except ArtifactError as e:
        assert str(e).startswith("final.xclbin: ") and "\n" not in str(e)


def test_multi_kernel_xclbin_keys_connectivity_by_instance_and_selects_the_kernel(
    tmp_path: Path,
) -> None:
    """Another kernel listed first, with conflicting banks after ours, changes nothing."""
    data = make_xclbin(3, other_kernels=("vadd",))
    info = lint_xclbin(write(tmp_path, data), n_data_buffers=3, device="npu1_1col")
    assert info.kernel_name == "MLIR_AIE" and info.kernel_names == ("vadd", "MLIR_AIE")
    assert info.connectivity == {1: SRAM_BANK, 3: HOST_BANK, 4: HOST_BANK, 5: HOST_BANK}
    assert list(info.instances) == ["MLIR_AIE:MLIRAIE"] and info.ip_kernel_ids == (0x901,)
    other = parse_xclbin(data, kernel="vadd")
    assert other.connectivity == {1: HOST_BANK, 3: SRAM_BANK, 4: SRAM_BANK, 5: SRAM_BANK}
    assert other.ip_kernel_ids == (0x900,)
    missing = parse_xclbin(data, kernel="passthrough")
    assert missing.kernel_name == "" and missing.connectivity == {}
    with pytest.raises(ArtifactError, match="kernel 'passthrough' expected, found 'vadd', "):
        lint_xclbin(write(tmp_path, data), n_data_buffers=3, kernel_name="passthrough")


def test_unknown_xml_encoding_is_an_artifact_error(tmp_path: Path) -> None:
    data = make_xclbin().replace(b'encoding="utf-8"', b'encoding="xyz-8"')
    with pytest.raises(ArtifactError, match=r"EMBEDDED_METADATA: XML does not parse.*xyz-8"):
        lint(tmp_path, data)


def test_lint_tells_npu1_from_npu2_where_the_partition_does(tmp_path: Path) -> None:
    """Width 4 from column 0 is aiecc's whole npu1; npu2_4col starts at column 1."""
    whole_npu1 = make_xclbin(columns=4, start_columns=(0,))
    lint(tmp_path, whole_npu1, device="npu1")
    with pytest.raises(ArtifactError, match=r"partition of npu1, but the device is npu2_4col"):
        lint(tmp_path, whole_npu1, device="npu2_4col")
    lint(tmp_path, make_xclbin(columns=4, start_columns=(1,)), device="npu2_4col")
    # N <= 3 columns: aiecc writes the same partition for both families; the stream lint tells
    for device in ("npu1_2col", "npu2_2col"):
        lint(tmp_path, make_xclbin(columns=2, start_columns=(1, 2, 3)), device=device)

"""insts.bin reader: round trips of faithful streams and one test per defect the linter names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ArtifactError
from runtime.insts import (
    device_columns,
    device_generation,
    lint_insts,
    parse_insts,
    read_insts,
)
from tests.fakes.artifacts import (
    insts_stream,
    make_insts,
    op_address_patch,
    op_blockwrite,
    op_maskwrite,
    op_sync,
    op_write32,
    set_word,
)


def write(tmp_path: Path, data: bytes, name: str = "insts.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_round_trip_npu1_1col() -> None:
    data = make_insts("npu1_1col", (3, 4))
    info = parse_insts(data)
    assert (info.dev_gen, info.major, info.minor) == (3, 0, 1)
    assert (info.rows, info.columns, info.mem_tile_rows) == (6, 1, 1)
    assert info.size_bytes == len(data) and info.n_words == len(data) // 4
    assert [op.name for op in info.ops] == ["blockwrite", "address_patch", "write32"] * 2 + ["sync"]
    assert info.n_ops == 7
    assert [op.n_words for op in info.ops[:3]] == [12, 12, 6]
    assert info.ops[0].offset_words == 4 and info.ops[1].offset_words == 16
    assert info.patched_args == (3, 4)


def test_round_trip_npu2_three_buffers_two_waits() -> None:
    info = parse_insts(make_insts("npu2", (5, 3, 4), n_waits=2))
    assert info.dev_gen == 4 and info.columns == 8
    assert info.patched_args == (3, 4, 5)
    assert [op.arg_index for op in info.ops if op.name == "address_patch"] == [5, 3, 4]
    assert info.count("sync") == 2


def test_every_known_op_parses_with_its_length() -> None:
    ops = [
        op_write32(0x1D204, 1),
        op_blockwrite(0x1D000, list(range(5))),
        op_maskwrite(0x1D200, 0x100, 0x1F00),
        op_sync(0, 0, 0, 0),
        op_address_patch(0x1D004, 2, arg_plus=1 << 33),
    ]
    info = parse_insts(insts_stream("npu1_2col", ops))
    assert [(op.opcode, op.n_words) for op in info.ops] == [
        (0x00, 6),
        (0x01, 9),
        (0x03, 7),
        (0x80, 4),
        (0x81, 12),
    ]
    assert info.columns == 2
    assert info.ops[-1].arg_index == 5  # sequence index 2 -> kernel argument 3 + 2


def test_read_and_lint_accept_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, make_insts("npu1_1col", (3, 4)))
    assert read_insts(path).patched_args == (3, 4)
    assert lint_insts(path, device="npu1_1col", bound_args=[3, 4]).n_ops == 7


@pytest.mark.parametrize(
    ("device", "gen", "cols"),
    [
        ("npu1", 3, 4),
        ("npu1_1col", 3, 1),
        ("npu1_3col", 3, 3),
        ("npu2", 4, 8),
        ("npu2_1col", 4, 1),
        ("npu2_7col", 4, 7),
    ],
)
def test_device_tables(device: str, gen: int, cols: int) -> None:
    assert device_generation(device) == gen
    assert device_columns(device) == cols


@pytest.mark.parametrize("device", ["npu3", "npu1_4col", "npu2_8col", "npu1_0col", "", "NPU1"])
def test_unknown_device(device: str) -> None:
    with pytest.raises(ArtifactError, match="unknown device"):
        device_generation(device)


def test_size_not_multiple_of_4(tmp_path: Path) -> None:
    path = write(tmp_path, make_insts() + b"\0\0")
    with pytest.raises(ArtifactError, match=r"insts\.bin: size \d+ bytes is not a multiple of 4"):
        read_insts(path)


def test_size_word_tampered(tmp_path: Path) -> None:
    data = make_insts()
    path = write(tmp_path, set_word(data, 3, len(data) + 8))
    with pytest.raises(
        ArtifactError,
        match=f"header size word says {len(data) + 8} bytes, the file has {len(data)}",
    ):
        read_insts(path)


def test_truncated_file_is_caught_by_size_word() -> None:
    data = make_insts()
    with pytest.raises(ArtifactError, match="header size word says"):
        parse_insts(data[:-8])


def test_truncated_op() -> None:
    data = make_insts()
    cut = data[:-8]  # the final sync loses 2 of its 4 words
    with pytest.raises(ArtifactError, match=r"truncated sync at word \d+: needs 4 words, only 2"):
        parse_insts(set_word(cut, 3, len(cut)))


def test_blockwrite_size_past_end() -> None:
    data = insts_stream("npu1_1col", [op_blockwrite(0x1D000, [1, 2])])
    bad = set_word(data, 4 + 3, 400)
    with pytest.raises(ArtifactError, match="truncated blockwrite at word 4: needs 100 words"):
        parse_insts(bad)


def test_blockwrite_size_not_words() -> None:
    data = insts_stream("npu1_1col", [op_blockwrite(0x1D000, [1, 2])])
    with pytest.raises(ArtifactError, match="blockwrite at word 4 has size field 23 bytes"):
        parse_insts(set_word(data, 4 + 3, 23))


def test_fixed_op_with_wrong_size_field() -> None:
    data = insts_stream("npu1_1col", [op_write32(0x1D204, 1)])
    with pytest.raises(
        ArtifactError, match="write32 at word 4 has size field 12 bytes, expected 24"
    ):
        parse_insts(set_word(data, 4 + 5, 12))


def test_unknown_opcode() -> None:
    data = make_insts()
    with pytest.raises(ArtifactError, match=r"unknown opcode 0x42 at word 16 \(0x00000042\)"):
        parse_insts(set_word(data, 16, 0x42))


def test_op_count_mismatch() -> None:
    data = make_insts()
    with pytest.raises(ArtifactError, match="header says 9 operations, the stream holds 7"):
        parse_insts(set_word(data, 2, 9))


def test_old_format_version() -> None:
    data = set_word(make_insts(), 0, 0x06030001)  # version 1.0 (the layout before March 2025)
    with pytest.raises(ArtifactError, match=r"transaction format 1\.0, expected 0\.1"):
        parse_insts(data)


def test_bad_device_generation_in_header() -> None:
    data = set_word(make_insts(), 0, 0x06070100)
    with pytest.raises(ArtifactError, match="device generation 7 in header word 0"):
        parse_insts(data)


def test_too_short_for_header() -> None:
    with pytest.raises(ArtifactError, match="8 bytes, expected at least the 16-byte header"):
        parse_insts(b"\x00\x01\x03\x06" * 2)


def test_text_insts_detected(tmp_path: Path) -> None:
    words = make_insts()
    text = "".join(f"{int.from_bytes(words[i : i + 4], 'little'):08X}\n" for i in range(0, 64, 4))
    path = write(tmp_path, text.encode(), "insts.txt")
    with pytest.raises(
        ArtifactError,
        match=re.escape(
            "insts.txt: text insts from an mlir-aie before March 2025; rebuild with a current aiecc"
        ),
    ):
        read_insts(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read the instruction stream"):
        read_insts(tmp_path / "nope.bin")


def test_lint_wrong_generation(tmp_path: Path) -> None:
    path = write(tmp_path, make_insts("npu2_1col", (3, 4)))
    with pytest.raises(
        ArtifactError, match=r"generation 4 \(npu2\), but the device is npu1_1col \(generation 3\)"
    ):
        lint_insts(path, device="npu1_1col", bound_args=[3, 4])


def test_lint_wrong_columns(tmp_path: Path) -> None:
    path = write(tmp_path, make_insts("npu1_1col", (3, 4), columns=2))
    with pytest.raises(ArtifactError, match="header says 2 columns, device npu1_1col has 1"):
        lint_insts(path, device="npu1_1col", bound_args=[3, 4])


def test_lint_patch_of_unbound_argument(tmp_path: Path) -> None:
    path = write(tmp_path, make_insts("npu1_1col", (3, 7)))
    with pytest.raises(
        ArtifactError, match=r"address patch at word \d+ for argument 7 but the host binds only 3,4"
    ):
        lint_insts(path, device="npu1_1col", bound_args=[4, 3])


def test_lint_unknown_device(tmp_path: Path) -> None:
    path = write(tmp_path, make_insts())
    with pytest.raises(ArtifactError, match="unknown device 'npu1_4col'"):
        lint_insts(path, device="npu1_4col", bound_args=[3, 4])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_artifact_error(data: bytes) -> None:
    try:
        parse_insts(data)
    except ArtifactError as e:
        assert str(e).startswith("insts.bin: ")
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=0xFFFFFFFF), min_size=0, max_size=60),
    st.sampled_from([0x00, 0x01, 0x03, 0x08, 0x80, 0x81, 0x82, 0x55]),
)
def test_random_words_after_valid_header_only_raise_artifact_error(
    body: list[int], opcode: int
) -> None:
    words = [opcode, *body]
    raw = b"".join(w.to_bytes(4, "little") for w in words)
    data = insts_stream("npu1_1col", [raw])
    try:
        info = parse_insts(data)
    except ArtifactError:
        return
    assert sum(op.n_words for op in info.ops) == len(words)


LFS = (b"version https://git-lfs.github.com/spec/v1\n"
       b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
       b"size 2432\n")
# an instruction file of the pre-transaction format: its third and fourth words are no sizes
OLD_SEQ = bytes.fromhex("11000000" "05040001" "00010001" "0001590b") + bytes(16)


@pytest.mark.parametrize(("data", "said"), [
    (LFS, "a git-lfs pointer file, not the instruction stream"),
    (OLD_SEQ, r"not a current transaction stream: transaction format 17\.0"),
])
def test_a_non_transaction_file_is_named_as_such_not_truncated(
    tmp_path: Path, data: bytes, said: str
) -> None:
    with pytest.raises(ArtifactError, match=said) as e:
        read_insts(write(tmp_path, data, "insts.seq"))
    assert "truncated" not in str(e.value)

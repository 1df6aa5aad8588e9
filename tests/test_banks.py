"""Core memory as aiecc places it: four 16 KiB banks, the stack at 0, static data above."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codegen import banks
from codegen.checks import check_design
from codegen.kernels import spec_from_params
from codegen.pipeline import build
from codegen.render import DESIGN_NAME, render
from codegen.spec import MemoryItem, SpecError
from runtime.errors import DesignError
from runtime.manifest import load_manifest

KIB = 1024


def test_bank_aware_places_round_robin_above_the_stack() -> None:
    """attention's defaults: two 12 KiB inputs, two 4 KiB outputs, a 2 KiB stack in bank 0."""
    placed = banks.bank_aware([("in0", 12 * KIB), ("in1", 12 * KIB), ("out0", 4 * KIB),
                               ("out1", 4 * KIB)], 64 * KIB, 4, 2 * KIB)
    assert placed is not None
    assert [(p.name, p.address, p.bank) for p in placed] == [
        ("in0", 2 * KIB, 0), ("in1", 16 * KIB, 1), ("out0", 32 * KIB, 2), ("out1", 48 * KIB, 3)]
    assert banks.highest_end(placed, 2 * KIB) == 52 * KIB


def test_a_buffer_above_a_bank_fails_bank_aware_but_not_sequential() -> None:
    buffers = [("big", 18 * KIB), ("small", KIB)]
    assert banks.bank_aware(buffers, 64 * KIB, 4, KIB) is None
    placed = banks.basic_sequential(buffers, 64 * KIB, KIB)
    assert placed is not None and [p.address for p in placed] == [KIB, 19 * KIB]
    assert banks.basic_sequential([("x", 64 * KIB)], 64 * KIB, KIB) is None


@pytest.mark.parametrize(("kernel", "params", "scheme"), [
    ("attention", {}, "bank-aware"),
    # An 18,432-byte FIFO element fits no 16 KiB bank: aiecc's default would warn and fall back.
    ("attention", {"n_queries": "32", "n_keys": "128", "head_dim": "64"}, "basic-sequential"),
    ("layernorm", {}, "bank-aware"),
    ("gelu", {"max_tile": "8192"}, "bank-aware"),
])
def test_the_scheme_is_chosen_from_the_buffers(kernel: str, params: dict[str, str],
                                               scheme: str) -> None:
    spec = spec_from_params(kernel, params)
    assert spec.alloc_scheme() == scheme
    passed = check_design(spec, render(spec).files[DESIGN_NAME])
    assert any(f"{scheme} allocation" in line for line in passed), passed


def test_static_data_must_fit_above_the_highest_buffer() -> None:
    """layernorm d=2048, one row a call: the buffers sum to 10 KiB, but bank-aware placement
    ends the last one at 51,200, and 24 KiB of gamma/beta do not fit in the 14,336 above it."""
    with pytest.raises(SpecError) as e:
        spec_from_params("layernorm", {"d": "2048", "tile_rows": "1", "rows": "4"})
    message = str(e.value)
    print(f"layernorm d=2048 tile_rows=1: {message}")
    assert "static data (gamma (int32) 8,192, beta (int64) 16,384: 24,576 bytes)" in message
    assert "highest buffer ends at 51,200, leaving 14,336 of 65,536" in message
    assert "bank-aware" in message and "lower fifo_depth" in message
    # One buffer per FIFO (depth 1) ends in bank 1 and leaves room: the advice holds.
    spec_from_params("layernorm", {"d": "2048", "tile_rows": "1", "rows": "4",
                                   "fifo_depth": "1"})


def test_the_design_check_places_static_data_too(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_from_params("attention")
    text = render(spec).files[DESIGN_NAME]
    big = [MemoryItem("big table", 16 * KIB, kind="static")]
    monkeypatch.setattr(spec, "tables", lambda: big)
    with pytest.raises(DesignError, match=re.escape("static data (big table 16,384: 16,384 "
                                                    "bytes) does not fit above its buffers")):
        check_design(spec, text)


def test_the_scheme_reaches_aiecc_and_the_manifest(tmp_path: Path, fake_toolchain: Path) -> None:
    spec = spec_from_params("attention", {"n_queries": "32", "n_keys": "128", "head_dim": "64",
                                          "fifo_depth": "1"})
    result = build(spec, tmp_path, target="hw")
    assert load_manifest(result.artifact_dir).alloc_scheme == "basic-sequential"
    calls = [json.loads(line)["argv"] for line in fake_toolchain.read_text().splitlines()]
    assert "--alloc-scheme=basic-sequential" in calls[-1]


def test_the_fake_aiecc_sizes_banks_by_the_tile_holding_the_fifo(tmp_path: Path,
                                                                 fake_toolchain: Path) -> None:
    """A mem tile's banks are 64 KiB (512 KiB in 8): a 25 KiB element staged there builds
    bank-aware, as mlir-aie's allocator places it; the cores' elements stay within 16 KiB."""
    spec = spec_from_params("mel", {"frames": "128", "tile_frames": "8", "cores": "16",
                                    "device": "npu1"})
    assert max(i.bytes_each for p in spec.memory_plan() if p.tile[1] == 1
               for i in p.items) > 16 * KIB
    result = build(spec, tmp_path, target="hw")
    assert load_manifest(result.artifact_dir).alloc_scheme == "bank-aware"

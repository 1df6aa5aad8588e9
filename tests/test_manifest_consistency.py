"""The manifest's internal consistency: each rule of `Manifest.from_json` refuses its break.

A manifest that parses but contradicts itself (buffers out of runtime-sequence order, a BO
layout that binds another buffer, a byte count that disagrees with the shape, a hardware
artifact without its xclbin) would make the runtime bind the wrong memory: each is refused
by name, and the untouched manifest is accepted (so a refusal means the rule, not the fixture).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from runtime.errors import ArtifactError
from runtime.manifest import CONTENT_KEY, MANIFEST_NAME, Manifest, content_digest


@pytest.fixture(scope="module")
def manifest_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("build")
    art = build(spec_from_params("matmul"), root, target="emu").artifact_dir
    return json.loads((art / MANIFEST_NAME).read_text())


def _swap_buffer_order(d: dict[str, Any]) -> None:
    # Each entry stays self-consistent (its arg_index follows its seq_index) and the BO layout
    # is left out, so only the order rule can see it.
    d["buffers"][0], d["buffers"][1] = d["buffers"][1], d["buffers"][0]
    del d["bo_layout"]


def _swap_bo_groups(d: dict[str, Any]) -> None:
    data = d["bo_layout"]["data"]
    data[0]["arg_index"], data[1]["arg_index"] = data[1]["arg_index"], data[0]["arg_index"]


def _bo_flags(d: dict[str, Any]) -> None:
    d["bo_layout"]["data"][0]["flags"] = "cacheable"


def _bytes(d: dict[str, Any]) -> None:
    d["buffers"][0]["bytes"] += 4


def _arg_index(d: dict[str, Any]) -> None:
    d["buffers"][1]["arg_index"] += 1


def _hardware_without_xclbin(d: dict[str, Any]) -> None:
    d["emulation_only"] = False


BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "buffer order": (_swap_buffer_order, r"buffers are not in runtime-sequence order"),
    "bo groups swapped": (_swap_bo_groups, r"bo_layout disagrees with the buffers"),
    "bo flags": (_bo_flags, r"bo_layout disagrees with the buffers"),
    "bytes vs shape": (_bytes, r"bytes or arg_index disagree with its shape"),
    "arg index vs order": (_arg_index, r"bytes or arg_index disagree"),
    "hardware without xclbin": (_hardware_without_xclbin,
                                r"a hardware artifact must list an xclbin and insts\.bin"),
}


def test_the_untouched_manifest_is_accepted(manifest_json: dict[str, Any]) -> None:
    m = Manifest.from_json(copy.deepcopy(manifest_json))
    assert [b.arg_index for b in m.buffers] == [3, 4, 5]


@pytest.mark.parametrize("what", sorted(BREAKS))
def test_an_inconsistent_manifest_is_refused(manifest_json: dict[str, Any], what: str) -> None:
    d = copy.deepcopy(manifest_json)
    spoil, message = BREAKS[what]
    spoil(d)
    d[CONTENT_KEY] = content_digest(d)  # re-sealed: the rule itself is under test, not the hash
    with pytest.raises(ArtifactError, match=message):
        Manifest.from_json(d, where=str(Path("art") / MANIFEST_NAME))

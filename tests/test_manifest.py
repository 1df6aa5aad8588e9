"""The manifest contract: what a loaded manifest must be, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from runtime.errors import ArtifactError
from runtime.manifest import CONTENT_KEY, content_digest, load_manifest


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return build(spec_from_params("gelu", {"length": "256"}), tmp_path, target="emu").artifact_dir


def edit(artifact: Path, **changes: object) -> None:
    path = artifact / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    data[CONTENT_KEY] = content_digest(data)  # re-sealed: only the field checks can refuse it
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("changes", "message"), [
    ({"kernel": "../../escaped"}, "kernel/variant name '../../escaped' is not a plain name"),
    ({"variant": "a/b"}, "kernel/variant name 'a/b' is not a plain name"),
    ({"schema": 99}, "schema 99 is not 1; rebuild the artifact with this npukit"),
    ({"files": {"../x": {"sha256": "0" * 64, "bytes": 1, "role": "design"}}},
     "file entry '../x' is not a plain file name"),
])
def test_unsafe_or_foreign_manifests_are_refused(artifact: Path, changes: dict[str, object],
                                                 message: str) -> None:
    edit(artifact, **changes)
    with pytest.raises(ArtifactError, match=message.replace(".", r"\.")):
        load_manifest(artifact, verify=False)


def test_an_edited_file_is_named(artifact: Path) -> None:
    design = artifact / "aie.mlir"
    design.write_text(design.read_text() + "// edited\n")
    with pytest.raises(ArtifactError, match=r"aie\.mlir: content does not match its manifest"):
        load_manifest(artifact)


def test_a_manifest_is_deterministic(tmp_path: Path) -> None:
    """Nothing time- or machine-dependent beyond tool paths: two builds, one manifest."""
    spec = spec_from_params("gelu", {"length": "256"})
    a = build(spec, tmp_path / "a", target="emu").artifact_dir / "manifest.json"
    b = build(spec, tmp_path / "b", target="emu").artifact_dir / "manifest.json"
    assert a.read_text() == b.read_text()


def _retune(d: dict) -> None:
    d["params"]["length"] = 512


def _rename_buffer(d: dict) -> None:
    d["buffers"][0]["name"] = "y"


def _drop_file(d: dict) -> None:
    del d["files"]["gelu.cc"]


def _other_kernel(d: dict) -> None:
    d["kernel"] = "layernorm"


@pytest.mark.parametrize("change", [_retune, _rename_buffer, _drop_file, _other_kernel],
                         ids=["params", "buffers", "files", "kernel"])
def test_an_edited_manifest_is_refused_and_a_build_heals_it(tmp_path: Path, change: Any) -> None:
    """cache_key is left intact, so only the manifest's own hash can tell."""
    from runtime.kernel import NpuKernel

    spec = spec_from_params("gelu", {"length": "256"})
    art = build(spec, tmp_path, target="emu").artifact_dir
    path = art / "manifest.json"
    original = path.read_text()
    data = json.loads(original)
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ArtifactError, match=r"manifest\.json: edited after the build .*rebuild"):
        load_manifest(art, verify=False)
    with pytest.raises(ArtifactError, match=r"edited after the build"):
        NpuKernel.load(art, backend="emu")
    again = build(spec, tmp_path, target="emu")
    assert not again.up_to_date
    assert path.read_text() == original
    load_manifest(art)

"""Every file npukit reads goes through runtime.loader: a bad one is one line naming the file and
the fix, never a traceback, never accepted; what the build owns heals on the next build."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from codegen.spec import SpecError
from codegen.toolchain import VERSIONS_SCHEMA, discover
from runtime.errors import ArtifactError
from runtime.loader import check, load_json, load_npy
from runtime.manifest import MANIFEST_SCHEMA, load_manifest

GELU = {"length": "256"}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return build(spec_from_params("gelu", GELU), tmp_path, target="emu").artifact_dir


# -- JSON -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "message"), [
    ("[]", "expected object, got array"),
    ("null", "expected object, got null"),
    ('"manifest"', "expected object, got string"),
    ("{", "not valid JSON"),
    ("", "not valid JSON"),
    ("\xff\xfe", "not UTF-8 text"),
])
def test_a_manifest_that_is_not_an_object_is_one_line(artifact: Path, text: str,
                                                      message: str) -> None:
    (artifact / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ArtifactError) as e:
        load_manifest(artifact)
    line = str(e.value)
    assert line.startswith(f"{artifact / 'manifest.json'}: ") and message in line
    assert "rebuild the artifact with `invoke build`" in line and "\n" not in line


@pytest.mark.parametrize(("change", "message"), [
    ({"buffers": "qkv"}, "at buffers: expected array, got string"),
    ({"buffers": [{"name": "x"}]}, "at buffers[0]: missing key 'dtype'"),
    ({"files": {"aie.mlir": {"sha256": "x", "bytes": 1, "role": "design"}}},
     "at files.aie.mlir.sha256: 'x' does not match"),
    ({"emulation_only": "yes"}, "at emulation_only: expected boolean, got string"),
    ({"params": None}, "at params: expected object, got null"),
    ({"n_insts_words": 1.5}, "at n_insts_words: expected integer or null, got number"),
])
def test_a_mistyped_manifest_names_the_key(artifact: Path, change: dict[str, Any],
                                           message: str) -> None:
    path = artifact / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ArtifactError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_manifest(artifact, verify=False)


def test_a_rebuild_heals_a_broken_manifest(tmp_path: Path, artifact: Path) -> None:
    spec = spec_from_params("gelu", GELU)
    for text in ("[]", "null", '"x"', "{"):
        (artifact / "manifest.json").write_text(text)
        result = build(spec, tmp_path, target="emu")
        assert not result.up_to_date
        assert load_manifest(artifact).kernel == "gelu"


def test_a_file_where_the_artifact_or_its_kernel_directory_belongs_heals(tmp_path: Path) -> None:
    spec = spec_from_params("gelu", GELU)
    art = build(spec, tmp_path, target="emu").artifact_dir
    for where in (art, art.parent):
        shutil.rmtree(where)
        where.write_text("debris")
        assert build(spec, tmp_path, target="emu").artifact_dir == art
        assert load_manifest(art).kernel == "gelu"
        assert sorted(p.name for p in art.parent.iterdir()) == [art.name, f"{art.name}.lock"]


@pytest.mark.parametrize("content", ["[]", "null", '"text"', "{", '{"k": 1}', "directory"])
def test_tools_json_in_any_broken_state_is_rewritten(tmp_path: Path, content: str) -> None:
    cache = tmp_path / ".cache" / "tools.json"
    cache.parent.mkdir()
    if content == "directory":
        cache.mkdir()
        (cache / "debris").write_text("x")
    else:
        cache.write_text(content)
    tc = discover(None, cache)
    assert tc.cxx is not None
    data = json.loads(cache.read_text())
    assert isinstance(data, dict) and any(tc.cxx.path in key for key in data)
    assert not list(cache.parent.glob("*.tmp"))


def test_a_cache_entry_or_stage_replaced_by_a_file_heals(tmp_path: Path) -> None:
    spec = spec_from_params("gelu", GELU)
    first = build(spec, tmp_path, target="emu")
    cache = tmp_path / ".cache"
    (entry,) = [p for p in (cache / "render").iterdir() if p.is_dir()]
    shutil.rmtree(entry)
    entry.write_text("not an entry")
    shutil.rmtree(cache / "check")
    (cache / "check").write_text("not a stage directory")
    (first.artifact_dir / "manifest.json").unlink()  # so the build looks at its cache
    again = build(spec, tmp_path, target="emu")
    assert entry.is_dir() and (cache / "check").is_dir()
    assert load_manifest(again.artifact_dir).cache_key == first.manifest.cache_key


def test_schemas_are_json_schema_and_check_agrees_with_jsonschema(artifact: Path) -> None:
    """The runtime's numpy-only validator gives jsonschema's verdict on every mutation."""
    good = json.loads((artifact / "manifest.json").read_text())
    for schema in (MANIFEST_SCHEMA, VERSIONS_SCHEMA):
        jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    wrong = [None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}]
    documents: list[Any] = [good, *wrong]
    for key in good:
        documents.append({k: v for k, v in good.items() if k != key})
        documents += [{**good, key: w} for w in wrong]
    buffer = good["buffers"][0]
    for key in buffer:
        documents += [{**good, "buffers": [{**buffer, key: w}]} for w in wrong]
    for document in documents:
        assert (check(document, MANIFEST_SCHEMA) is None) == validator.is_valid(document), document


def test_json_constants_that_are_not_json_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": NaN}')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_json(path, {"type": "object"}, fix="fix it")


# -- .npy parameters --------------------------------------------------------------------------
def _header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (_header((10**12,)), "expected 512 values, the file holds shape (1000000000000,)"),
    (os.urandom(4096), "not a .npy file"),
    (b"gamma = 1.0\n" * 50, "not a .npy file"),
    (_header((512,)) + b"\0" * 100, "the file has 100 (truncated"),
    (_header((512,), "|O"), "holds object values; expected real numbers"),
])
def test_bad_npy_parameter_files_are_one_line(tmp_path: Path, content: bytes,
                                              message: str) -> None:
    path = tmp_path / "gamma.npy"
    path.write_bytes(content)
    with pytest.raises(SpecError) as e:
        spec_from_params("layernorm", {"gamma": str(path)})
    line = str(e.value)
    assert line.startswith(f"gamma {path}") and message in line, line
    assert "allow_pickle" not in line and "\n" not in line


def test_a_huge_header_allocates_nothing(tmp_path: Path) -> None:
    """The size is checked against the file before any data is read."""
    path = tmp_path / "big.npy"
    path.write_bytes(_header((10**12,)))
    with pytest.raises(ArtifactError, match="claims 8,000,000,000,000 bytes"):
        load_npy(path, "values")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(tmp_path: Path, value: float) -> None:
    beta = np.zeros(512)
    beta[7] = value
    np.save(tmp_path / "beta.npy", beta)
    with pytest.raises(SpecError, match=r"at index 7 is not finite"):
        spec_from_params("layernorm", {"beta": str(tmp_path / "beta.npy")})
    with pytest.raises(SpecError, match=rf"beta={value} is not a finite number"):
        spec_from_params("layernorm", {"beta": str(value)})


def test_an_int32_bias_of_minus_2_to_the_31_is_accepted_and_beyond_it_is_named(
        tmp_path: Path) -> None:
    params = {"M": "8", "K": "16", "N": "16", "tm": "8", "tk": "16", "tn": "16"}
    bias = np.zeros(16, dtype=np.int64)
    bias[3] = -(1 << 31)
    np.save(tmp_path / "bias.npy", bias)
    spec = spec_from_params("matmul", {**params, "bias": str(tmp_path / "bias.npy")})
    assert int(spec.bias_values()[3]) == -(1 << 31)
    bias[5] = 1 << 31
    np.save(tmp_path / "bias.npy", bias)
    with pytest.raises(SpecError, match=r"value 2147483648 at index 5 is outside int32"):
        spec_from_params("matmul", {**params, "bias": str(tmp_path / "bias.npy")})
    np.save(tmp_path / "bias.npy", np.full(16, 0.5))
    with pytest.raises(SpecError, match=r"value 0.5 at index 0 is not a whole number"):
        spec_from_params("matmul", {**params, "bias": str(tmp_path / "bias.npy")})


def test_an_over_long_file_name_names_the_parameter() -> None:
    name = "g" * 300 + ".npy"
    with pytest.raises(SpecError, match=r"^gamma 'g+\.\.\.g+\.npy': File name too long"):
        spec_from_params("layernorm", {"gamma": name})


# -- reports and bundle.json ------------------------------------------------------------------
@pytest.mark.parametrize(("report", "message"), [
    ({"backend": "xrt", "passed": "true"}, "at passed: expected boolean, got string"),
    ({"backend": ["xrt"], "passed": True}, "at backend: expected string, got array"),
    ({"backend": "xrt", "passed": True, "timing": {"mean_us": "fast"}},
     "at timing.mean_us: expected number, got string"),
])
def test_a_malformed_report_is_refused_not_published_as_unverified(
        tmp_path: Path, report: dict[str, Any], message: str) -> None:
    from codegen.publish import PublishError, publish, write_artifact_report

    root = tmp_path / "build"
    art = build(spec_from_params("gelu", GELU), root, target="emu").artifact_dir
    written = write_artifact_report(art, report, tested=load_manifest(art).sha256)
    with pytest.raises(PublishError) as e:
        publish([], "1.0.0", tmp_path / "dist", allow_unverified=True, build_root=root)
    assert str(e.value).startswith(f"{written}: {message}; rerun `invoke test-hw`")
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_report_and_bundle_schemas_are_json_schema() -> None:
    from runtime.schemas import BUNDLE_INFO_SCHEMA, REPORT_SCHEMA

    for schema in (REPORT_SCHEMA, BUNDLE_INFO_SCHEMA):
        jsonschema.Draft202012Validator.check_schema(schema)

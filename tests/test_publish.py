"""Publishing: reproducible bundles, their contents, SHA256SUMS, the version, and the refusals."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from codegen.publish import (
    PublishError,
    project_version,
    publish,
    report_path,
    write_artifact_report,
)
from runtime.bundle import read_sums, verify_bundle
from runtime.manifest import CONTENT_KEY, content_digest, load_manifest

VERSION = "1.2.3+gabcdef0"
PASSED = {"backend": "xrt", "passed": True, "reason": "", "cases": [{}, {}, {}],
          "timing": {"median_us": 120.0}}


def record(art: Path, report: dict[str, Any]) -> Path:
    """`report` written as test-hw does: bound to the manifest loaded to make it."""
    return write_artifact_report(art, report, tested=load_manifest(art, verify=False).sha256)


def hw_artifact(root: Path, params: dict[str, str] | None = None,
                report: dict[str, Any] | None = PASSED) -> Path:
    """A hardware artifact (fake aiecc) under `root`, with `report` as its test-hw result."""
    art = build(spec_from_params("attention", params or {}), root, target="hw").artifact_dir
    if report is not None:
        record(art, report)
    return art


def members(bundle: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name: (m, tar.extractfile(m).read()) for m in tar}  # type: ignore[union-attr]


@pytest.fixture
def hw_build(tmp_path: Path, fake_toolchain: Path) -> Path:
    """A build root holding one verified hardware artifact of attention/default."""
    root = tmp_path / "build"
    hw_artifact(root)
    return root


def test_publish_is_byte_for_byte_reproducible(hw_build: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = publish(["attention"], VERSION, tmp_path / "a", build_root=hw_build)
    for f in (hw_build / "attention" / "default").iterdir():
        os.utime(f, (1_800_000_000, 1_800_000_000))  # the files' own times must not leak in
    second = publish(["attention"], VERSION, tmp_path / "b", build_root=hw_build)
    again = publish(["attention"], VERSION, tmp_path / "a", build_root=hw_build)
    assert [p.path.name for p in first] == ["attention-default-1.2.3+gabcdef0.tar.gz"]
    data = first[0].path.read_bytes()
    assert second[0].path.read_bytes() == data == again[0].path.read_bytes()
    sums = [(tmp_path / d / "SHA256SUMS").read_bytes() for d in ("a", "b")]
    assert sums[0] == sums[1]

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = publish(["attention"], VERSION, tmp_path / "c", build_root=hw_build)[0].path
    assert dated.read_bytes() != data
    assert {m.mtime for m, _ in members(dated).values()} == {1700000000}


def test_archive_metadata_is_fixed(hw_build: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    path = publish([], VERSION, tmp_path / "dist", build_root=hw_build)[0].path
    data = path.read_bytes()
    assert data[:3] == b"\x1f\x8b\x08" and data[3] & 0x08 == 0  # gzip, no file name stored
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    assert gzip.decompress(data)  # and it is one valid gzip stream
    got = members(path)
    assert list(got) == sorted(got)
    for info, _ in got.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (
            0, 0, 0, "", "", 0o644)
        assert info.isreg()


def test_bundle_holds_the_artifact_manifest_report_and_bundle_json(hw_build: Path,
                                                                   tmp_path: Path) -> None:
    art = hw_build / "attention" / "default"
    manifest = load_manifest(art)
    pub = publish(["attention"], VERSION, tmp_path / "dist", build_root=hw_build)[0]
    top = "attention-default-1.2.3+gabcdef0"
    got = members(pub.path)
    names = {n.removeprefix(f"{top}/") for n in got}
    assert names == {*manifest.files, "manifest.json", "bundle.json", "test-hw.json"}
    assert {"final.xclbin", "insts.bin", "aie.mlir", "attention.cc"} <= names
    for name in [*manifest.files, "manifest.json"]:
        assert got[f"{top}/{name}"][1] == (art / name).read_bytes()
    assert got[f"{top}/test-hw.json"][1] == report_path(art).read_bytes()
    info = json.loads(got[f"{top}/bundle.json"][1])
    manifest_sha = hashlib.sha256((art / "manifest.json").read_bytes()).hexdigest()
    assert info == {
        "schema": 1, "kernel": "attention", "variant": "default", "version": VERSION,
        "manifest_sha256": manifest_sha,
        "verification": {"status": "verified", "reason": None, "report": "test-hw.json",
                         "summary": {"backend": "xrt", "passed": True, "reason": "",
                                     "timing": {"median_us": 120.0}, "cases": 3}},
    }
    assert (pub.status, pub.kernel, pub.variant) == ("verified", "attention", "default")


def test_sha256sums_lists_every_bundle(hw_build: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    first = publish(["attention"], VERSION, dist, build_root=hw_build)[0]
    hw_artifact(hw_build, {"tiles": "2"})
    second = publish(["attention"], "1.2.4", dist, build_root=hw_build)
    sums = read_sums(dist / "SHA256SUMS")
    bundles = sorted(p.name for p in dist.glob("*.tar.gz"))
    assert sorted(sums) == bundles and len(bundles) == 3
    for name, digest in sums.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest
    assert {p.sha256 for p in second} | {first.sha256} == set(sums.values())
    if subprocess.run(["sha256sum", "--version"], capture_output=True).returncode == 0:
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True)
        assert check.returncode == 0, check.stdout

    old = dist / first.path.name
    old.write_bytes(old.read_bytes()[:-1] + b"x")
    with pytest.raises(PublishError, match=r"no longer matches .*SHA256SUMS"):
        publish(["attention"], "1.2.5", dist, build_root=hw_build)


def test_emulation_only_artifacts_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "build"
    art = build(spec_from_params("attention"), root, target="emu").artifact_dir
    record(art, {"backend": "emu", "passed": True})
    dist = tmp_path / "dist"
    with pytest.raises(PublishError, match=r"default: emulation-only .*--allow-unverified"):
        publish(["attention"], VERSION, dist, build_root=root)
    assert not dist.exists()

    pub = publish(["attention"], VERSION, dist, build_root=root, allow_unverified=True)[0]
    info = verify_bundle(pub.path)
    assert info.status == pub.status == "unverified"
    assert "emulation-only" in info.info["verification"]["reason"]


def _failed(art: Path) -> None:
    record(art, {"backend": "xrt", "passed": False, "reason": "2/6 cases differ"})


def _emu(art: Path) -> None:
    record(art, {"backend": "emu", "passed": True})


def _stale(art: Path) -> None:
    path = record(art, dict(PASSED))
    data = json.loads(path.read_text())
    data["manifest_sha256"] = "0" * 64  # made for an earlier build of this variant
    path.write_text(json.dumps(data))


def _missing(art: Path) -> None:
    report_path(art).unlink()


@pytest.mark.parametrize(("spoil", "reason", "bundled"), [
    (_missing, r"no test-hw report", False),
    (_emu, r"test-hw ran on backend 'emu', not on the NPU", True),
    (_failed, r"test-hw failed \(2/6 cases differ\)", True),
    (_stale, r"test-hw report .*default\.test-hw\.json is stale", False),
], ids=["no-report", "emu-report", "failed-report", "stale-report"])
def test_unverified_artifacts_are_refused(hw_build: Path, tmp_path: Path, spoil: Any,
                                          reason: str, bundled: bool) -> None:
    spoil(hw_build / "attention" / "default")
    dist = tmp_path / "dist"
    with pytest.raises(PublishError, match=rf"refusing .*attention/default: {reason}"):
        publish(["attention"], VERSION, dist, build_root=hw_build)
    assert not dist.exists()

    pub = publish(["attention"], VERSION, dist, build_root=hw_build, allow_unverified=True)[0]
    info = verify_bundle(pub.path).info
    assert info["verification"]["status"] == "unverified"
    assert re.search(reason, info["verification"]["reason"])
    assert (info["verification"]["report"] == "test-hw.json") == bundled


def test_write_artifact_report_ties_the_report_to_the_manifest(hw_build: Path) -> None:
    art = hw_build / "attention" / "default"
    path = record(art, {"backend": "xrt", "passed": True})
    assert path == hw_build / "attention" / "default.test-hw.json"
    data = json.loads(path.read_text())
    assert data["manifest_sha256"] == hashlib.sha256(
        (art / "manifest.json").read_bytes()).hexdigest()


def test_unknown_kernel_and_bad_version_are_refused(hw_build: Path, tmp_path: Path) -> None:
    with pytest.raises(PublishError, match=r"no built artifact for nosuch"):
        publish(["nosuch"], VERSION, tmp_path / "dist", build_root=hw_build)
    with pytest.raises(PublishError, match=r"not a plain version"):
        publish(["attention"], "../1", tmp_path / "dist", build_root=hw_build)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=npukit-test",
                    "-c", "user.email=npukit-test@invalid", *args],
                   check=True, capture_output=True)


def test_version_is_the_project_version_plus_the_git_revision(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "npukit"\nversion = "9.8.7"\n')
    assert project_version(repo) == "9.8.7"  # not a git checkout
    _git(repo, "init", "-q")
    _git(repo, "add", "pyproject.toml")
    _git(repo, "commit", "-q", "-m", "init")
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert project_version(repo) == f"9.8.7+g{rev}"
    (repo / "untracked.txt").write_text("x")
    assert project_version(repo) == f"9.8.7+g{rev}"
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n")
    assert project_version(repo) == f"9.8.7+g{rev}-dirty"


def test_this_checkout_has_a_git_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\+g[0-9a-f]{7,}(-dirty)?", project_version())



def test_two_builds_of_the_same_source_publish_the_same_bytes(tmp_path: Path,
                                                             fake_toolchain: Path) -> None:
    """Nothing time-dependent is in a manifest, so a rebuild gives the same bundle."""
    digests = []
    for name in ("one", "two"):
        root = tmp_path / name
        hw_artifact(root)
        digests.append(publish(["attention"], "1.0", tmp_path / f"dist-{name}",
                               build_root=root)[0].sha256)
    assert digests[0] == digests[1]


def test_a_published_version_is_not_silently_replaced(hw_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    publish(["attention"], "1.0", out, build_root=hw_build)
    hw_artifact(hw_build, {"o_scale": "0.02"})
    publish(["attention"], "1.0", out, build_root=hw_build)  # a new variant: fine
    art = hw_build / "attention" / "default"
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["notes"] = ["rebuilt differently"]
    manifest[CONTENT_KEY] = content_digest(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))
    record(art, PASSED)
    with pytest.raises(PublishError, match=r"exists with other content: version 1\.0 was already"):
        publish(["attention"], "1.0", out, build_root=hw_build)


def test_a_failed_bundle_write_leaves_no_temporary_behind(hw_build: Path, tmp_path: Path) -> None:
    """A full disk (here: a file-size limit) fails publish, and no `*.tmp` stays in dist/."""
    from tests.conftest import run_with_file_size_limit

    dist = tmp_path / "dist"
    proc = run_with_file_size_limit(
        "from pathlib import Path\nfrom codegen.publish import publish\n"
        f"publish(['attention'], {VERSION!r}, Path({str(dist)!r}), "
        f"build_root=Path({str(hw_build)!r}))\n", limit=2000)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    assert [p.name for p in dist.iterdir() if not p.name.startswith(".npukit")] == []

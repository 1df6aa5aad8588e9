"""Consuming bundles: a good one verifies and loads; each tampered or malicious one is rejected
with its reason, and nothing is written outside the destination."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from codegen.publish import publish, write_artifact_report
from runtime import bundle as bundle_mod
from runtime.bundle import open_bundle, resolve_artifact, verify_bundle
from runtime.errors import ArtifactError
from runtime.kernel import NpuKernel
from runtime.manifest import CONTENT_KEY, content_digest, load_manifest

VERSION = "1.2.3+gabcdef0"
TOP = f"attention-default-{VERSION}"
Member = tuple[tarfile.TarInfo, bytes]


@pytest.fixture
def good(tmp_path: Path, fake_toolchain: Path) -> Path:
    """A verified hardware bundle in dist/, beside its SHA256SUMS."""
    root = tmp_path / "build"
    art = build(spec_from_params("attention"), root, target="hw").artifact_dir
    write_artifact_report(art, {"backend": "xrt", "passed": True, "reason": ""},
                          tested=load_manifest(art).sha256)
    return publish(["attention"], VERSION, tmp_path / "dist", build_root=root)[0].path


def read_members(path: Path) -> list[Member]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
                for m in tar]


def write_members(path: Path, members: list[Member]) -> Path:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.write_bytes(raw.getvalue())
    return path


def file_member(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def data_of(members: list[Member], name: str) -> bytes:
    return next(d for m, d in members if m.name == f"{TOP}/{name}")


def replace(members: list[Member], name: str, data: bytes) -> list[Member]:
    return [(m, data if m.name == f"{TOP}/{name}" else d) for m, d in members]


def edit_manifest(members: list[Member], edit: Callable[[dict], None]) -> list[Member]:
    """Rewrite manifest.json, keeping bundle.json and the report pointing at the new one."""
    manifest = json.loads(data_of(members, "manifest.json"))
    edit(manifest)
    manifest[CONTENT_KEY] = content_digest(manifest)  # a forger who re-seals it, too
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    sha = hashlib.sha256(text).hexdigest()
    members = replace(members, "manifest.json", text)
    for name in ("bundle.json", "test-hw.json"):
        doc = json.loads(data_of(members, name))
        doc["manifest_sha256"] = sha
        members = replace(members, name, json.dumps(doc).encode())
    return members


def flip_byte(members: list[Member]) -> list[Member]:
    data = bytearray(data_of(members, "final.xclbin"))
    data[len(data) // 2] ^= 0x01
    return replace(members, "final.xclbin", bytes(data))


def drop_insts(members: list[Member]) -> list[Member]:
    return [(m, d) for m, d in members if not m.name.endswith("/insts.bin")]


def add_extra(members: list[Member]) -> list[Member]:
    return [*members, file_member(f"{TOP}/run-me.sh", b"#!/bin/sh\necho owned\n")]


def traversal(members: list[Member]) -> list[Member]:
    return [file_member(f"{TOP}/../../escaped.txt", b"escaped"), *members]


def absolute(members: list[Member]) -> list[Member]:
    return [file_member("/tmp/npukit-absolute-escape.txt", b"escaped"), *members]


def symlink(members: list[Member]) -> list[Member]:
    link = tarfile.TarInfo(f"{TOP}/insts.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return [(link, b"") if m.name == f"{TOP}/insts.bin" else (m, d) for m, d in members]


def hardlink(members: list[Member]) -> list[Member]:
    link = tarfile.TarInfo(f"{TOP}/extra")
    link.type, link.linkname = tarfile.LNKTYPE, f"{TOP}/insts.bin"
    return [*members, (link, b"")]


def device(members: list[Member]) -> list[Member]:
    dev = tarfile.TarInfo(f"{TOP}/null")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    return [*members, (dev, b"")]


def nested(members: list[Member]) -> list[Member]:
    return [file_member(f"{TOP}/sub/final.xclbin", b"x"), *members]


def two_tops(members: list[Member]) -> list[Member]:
    return [*members, file_member("other/manifest.json", b"{}")]


def lying_manifest(members: list[Member]) -> list[Member]:
    def lie(m: dict) -> None:
        m["files"]["insts.bin"]["sha256"] = hashlib.sha256(b"what it should be").hexdigest()

    return edit_manifest(members, lie)


def consistent_bad_insts(members: list[Member]) -> list[Member]:
    """A bad insts.bin with a manifest re-hashed to match: only the lint can catch it."""
    insts = bytearray(data_of(members, "insts.bin"))
    insts[2] = 4  # header device generation 4 (Strix) in a Phoenix (npu1) bundle
    sha = hashlib.sha256(insts).hexdigest()

    def rehash(m: dict) -> None:
        m["files"]["insts.bin"]["sha256"] = sha

    return edit_manifest(replace(members, "insts.bin", bytes(insts)), rehash)


def other_manifest_in_bundle_json(members: list[Member]) -> list[Member]:
    info = json.loads(data_of(members, "bundle.json"))
    info["manifest_sha256"] = "0" * 64
    return replace(members, "bundle.json", json.dumps(info).encode())


def bad_schema(members: list[Member]) -> list[Member]:
    return edit_manifest(members, lambda m: m.update(schema=99))


def marked_verified_without_report(members: list[Member]) -> list[Member]:
    info = json.loads(data_of(members, "bundle.json"))
    info["verification"]["report"] = None
    members = replace(members, "bundle.json", json.dumps(info).encode())
    return [(m, d) for m, d in members if not m.name.endswith("/test-hw.json")]


def edit_report(members: list[Member], edit: Callable[[dict], None]) -> list[Member]:
    report = json.loads(data_of(members, "test-hw.json"))
    edit(report)
    return replace(members, "test-hw.json", json.dumps(report).encode())


def failing_report(members: list[Member]) -> list[Member]:
    return edit_report(members, lambda r: r.update(passed=False))


def emulator_report(members: list[Member]) -> list[Member]:
    return edit_report(members, lambda r: r.update(backend="emu"))


def report_for_another_manifest(members: list[Member]) -> list[Member]:
    return edit_report(members, lambda r: r.update(manifest_sha256="0" * 64))


def emulation_only_marked_verified(members: list[Member]) -> list[Member]:
    return edit_manifest(members, lambda m: m.update(emulation_only=True))


def duplicate_member(members: list[Member]) -> list[Member]:
    first = next((m, d) for m, d in members if m.name.endswith("/insts.bin"))
    return [*members, file_member(first[0].name, first[1])]


def report_not_named_in_bundle_json(members: list[Member]) -> list[Member]:
    info = json.loads(data_of(members, "bundle.json"))
    info["verification"]["report"] = None
    return replace(members, "bundle.json", json.dumps(info).encode())


def report_named_but_missing(members: list[Member]) -> list[Member]:
    return [(m, d) for m, d in members if not m.name.endswith("/test-hw.json")]


REJECTED = {
    "flipped-byte": (flip_byte, r"final\.xclbin does not match its manifest hash"),
    "missing-file": (drop_insts, r"insts\.bin is listed in the manifest but missing"),
    "extra-file": (add_extra, r"extra file 'run-me\.sh' is not listed in the manifest"),
    "path-traversal": (traversal, r"leaves the bundle with '\.\.'"),
    "absolute-path": (absolute, r"has an absolute path"),
    "symlink": (symlink, r"insts\.bin' is a symlink"),
    "hardlink": (hardlink, r"is a hard link"),
    "device": (device, r"is a device or fifo"),
    "nested": (nested, r"is not <directory>/<file>"),
    "two-tops": (two_tops, r"outside the top directory"),
    "lying-manifest": (lying_manifest, r"insts\.bin does not match its manifest hash"),
    "bad-insts": (consistent_bad_insts, r"lint failed: insts\.bin: header device generation 4"),
    "bundle-json": (other_manifest_in_bundle_json, r"bundle\.json describes another manifest"),
    "schema": (bad_schema, r"manifest\.json: schema 99 is not 1"),
    "no-report": (marked_verified_without_report, r"marked verified without a hardware report"),
    "failing-report": (failing_report, r"marked verified without a passing hardware report"),
    "emulator-report": (emulator_report, r"marked verified without a passing hardware report"),
    "report-other-manifest": (report_for_another_manifest,
                              r"test-hw\.json is for another manifest"),
    "emulation-only-verified": (emulation_only_marked_verified,
                                r"an emulation-only artifact is marked verified"),
    "duplicate-member": (duplicate_member, r"member 'insts\.bin' appears twice"),
    "report-unnamed": (report_not_named_in_bundle_json,
                       r"test-hw\.json presence disagrees with bundle\.json"),
    "report-missing": (report_named_but_missing,
                       r"test-hw\.json presence disagrees with bundle\.json"),
}


def assert_nothing_left(parent: Path, escapes: list[Path]) -> None:
    assert sorted(p.name for p in parent.iterdir()) == []
    for p in escapes:
        assert not p.exists()


def test_good_bundle_verifies_and_extracts(good: Path, tmp_path: Path) -> None:
    info = verify_bundle(good)
    assert (info.status, info.version, info.manifest.kernel) == ("verified", VERSION, "attention")
    assert info.directory is None and info.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "attention"
    kept = verify_bundle(good, dest)
    assert kept.directory == dest
    manifest = load_manifest(dest, verify=True)
    assert not manifest.emulation_only and manifest.file_for("xclbin") == "final.xclbin"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["attention"]  # no temp dirs left


def test_a_flipped_byte_in_the_download_fails_sha256sums(good: Path) -> None:
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    good.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"does not match SHA256SUMS"):
        verify_bundle(good)


def test_a_consistently_rewritten_bundle_still_fails_sha256sums(good: Path) -> None:
    """Hashes inside a bundle can be rewritten by whoever rewrites it; SHA256SUMS cannot."""
    write_members(good, lying_manifest(read_members(good)))
    with pytest.raises(ArtifactError, match=r"does not match SHA256SUMS"):
        verify_bundle(good)


def test_a_bundle_missing_from_sha256sums_is_rejected(good: Path) -> None:
    renamed = good.with_name("attention-default-9.9.9.tar.gz")
    shutil.copy(good, renamed)
    with pytest.raises(ArtifactError, match=r"not listed in .*SHA256SUMS"):
        verify_bundle(renamed)


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_tampered_or_malicious_bundles_are_rejected(good: Path, tmp_path: Path, case: str) -> None:
    spoil, reason = REJECTED[case]
    standalone = tmp_path / "downloads"  # no SHA256SUMS here: the bundle's own checks must hold
    standalone.mkdir()
    bad = write_members(standalone / good.name, spoil(read_members(good)))
    parent = tmp_path / "extract"
    parent.mkdir()
    with pytest.raises(ArtifactError, match=reason) as err:
        verify_bundle(bad, parent / "artifact")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    escapes = [tmp_path / "escaped.txt", tmp_path / "extract" / "escaped.txt",
               Path("/tmp/npukit-absolute-escape.txt")]
    assert_nothing_left(parent, escapes)


def test_the_good_bundle_repacked_is_accepted(good: Path, tmp_path: Path) -> None:
    """The repacking helper itself keeps a good bundle good, so each rejection is its case's."""
    standalone = tmp_path / "downloads"
    standalone.mkdir()
    repacked = write_members(standalone / good.name, read_members(good))
    assert verify_bundle(repacked).status == "verified"


@pytest.mark.parametrize(("limit", "value", "reason"), [
    ("MAX_MEMBER_BYTES", 1000, r"member '[\w.]+' is \d+ bytes, over the 1000-byte limit"),
    ("MAX_TOTAL_BYTES", 4000, r"members exceed 4000 bytes"),
    ("MAX_MEMBERS", 3, r"more than 3 members"),
])
def test_size_and_count_limits(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               limit: str, value: int, reason: str) -> None:
    monkeypatch.setattr(bundle_mod, limit, value)
    parent = tmp_path / "extract"
    parent.mkdir()
    with pytest.raises(ArtifactError, match=reason):
        verify_bundle(good, parent / "artifact")
    assert_nothing_left(parent, [])


def test_decompression_is_capped_whatever_the_headers_claim(
        good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_mod, "MAX_TOTAL_BYTES", 100_000)  # the members hold ~30 KB
    monkeypatch.setattr(bundle_mod, "MAX_HEADER_BYTES", 10_000)
    tar = gzip.decompress(good.read_bytes())
    bomb = tmp_path / "bomb.tar.gz"  # 1 MiB of zeros after the archive's end, tiny on disk
    bomb.write_bytes(gzip.compress(tar + bytes(1 << 20), mtime=0))
    assert bomb.stat().st_size < 64 << 10
    parent = tmp_path / "extract"
    parent.mkdir()
    with pytest.raises(ArtifactError, match=r"decompresses past \d+ bytes"):
        verify_bundle(bomb, parent / "artifact")
    assert_nothing_left(parent, [])


def test_a_huge_tar_header_is_refused_on_its_own(good: Path, tmp_path: Path) -> None:
    """Within the total limit, but one member's pax header is 8 MiB: tarfile would read it into
    memory whole (the probe's 250 MB header cost 884 MB), so headers have their own cap."""
    members = read_members(good)
    members[0][0].pax_headers = {"comment": "z" * (8 << 20)}
    bomb = write_members(tmp_path / "bomb.tar.gz", members)
    assert bomb.stat().st_size < 128 << 10
    parent = tmp_path / "extract"
    parent.mkdir()
    with pytest.raises(ArtifactError, match=r"a member's tar headers exceed 1048576 bytes"):
        verify_bundle(bomb, parent / "artifact")
    assert_nothing_left(parent, [])


def test_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all" * 10)
    with pytest.raises(ArtifactError, match=r"not a readable \.tar\.gz bundle"):
        verify_bundle(junk)
    with pytest.raises(ArtifactError, match=r"no such bundle file"):
        verify_bundle(tmp_path / "absent.tar.gz")


def test_an_occupied_destination_is_left_alone(good: Path, tmp_path: Path) -> None:
    dest = tmp_path / "extract" / "out"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(ArtifactError, match=r"out: already exists"):
        verify_bundle(good, dest)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]
    assert [p.name for p in dest.parent.iterdir()] == ["out"]


def test_open_bundle_caches_by_sha256_and_repairs_the_cache(good: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = open_bundle(good, cache)
    assert first == cache / hashlib.sha256(good.read_bytes()).hexdigest()
    assert open_bundle(good, cache) == first
    (first / "insts.bin").write_bytes(b"edited in the cache")
    assert open_bundle(good, cache) == first
    load_manifest(first, verify=True)  # re-extracted, whole again


def test_npu_kernel_loads_a_bundle_through_resolve_artifact(
        good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    directory = resolve_artifact(good)
    assert directory.parent == tmp_path / "cache"
    assert resolve_artifact(directory) == directory  # a directory passes through
    spec = spec_from_params("attention")
    with NpuKernel.load(directory, backend="emu") as kernel:
        inputs = spec.random_inputs(seed=7)
        (out,) = kernel(inputs)
    (want,) = spec.golden(inputs)
    np.testing.assert_array_equal(out, want)


def test_an_unverified_bundle_is_not_loaded_unless_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "build"
    build(spec_from_params("attention"), root, target="emu")
    (bundle,) = [b.path for b in publish(["attention"], VERSION, tmp_path / "dist",
                                         build_root=root, allow_unverified=True)]
    with pytest.raises(ArtifactError, match=r"intact but unverified .*emulation-only"):
        NpuKernel.load(bundle, backend="emu")
    spec = spec_from_params("attention")
    with NpuKernel.load(bundle, backend="emu", allow_unverified=True) as kernel:
        inputs = spec.random_inputs(seed=3)
        np.testing.assert_array_equal(kernel(inputs)[0], spec.golden(inputs)[0])


def test_refusing_an_unverified_bundle_extracts_nothing_and_open_bundle_checks_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "build"
    build(spec_from_params("gelu", {"length": "256"}), root, target="emu")
    (bundle,) = [b.path for b in publish(["gelu"], VERSION, tmp_path / "dist",
                                         build_root=root, allow_unverified=True)]
    dest = tmp_path / "out" / "artifact"
    with pytest.raises(ArtifactError, match="intact but unverified"):
        verify_bundle(bundle, dest, allow_unverified=False)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []
    for _ in range(2):  # a fresh extraction, then the cached one: both refuse
        with pytest.raises(ArtifactError, match="intact but unverified"):
            open_bundle(bundle)
        open_bundle(bundle, allow_unverified=True)


def test_an_existing_empty_destination_is_refused(good: Path, tmp_path: Path) -> None:
    """The destination must not exist at all: an empty directory is someone's too."""
    dest = tmp_path / "extract" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(ArtifactError, match=r"out: already exists; the bundle is extracted only"):
        verify_bundle(good, dest)
    assert list(dest.iterdir()) == [] and [p.name for p in dest.parent.iterdir()] == ["out"]


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_a_truncated_gzip_trailer_is_caught_without_sha256sums(good: Path, tmp_path: Path,
                                                               cut: int) -> None:
    """The gzip CRC and length trailer is read even when no SHA256SUMS sits beside the bundle."""
    alone = tmp_path / "alone" / good.name
    alone.parent.mkdir()
    alone.write_bytes(good.read_bytes()[:-cut])
    with pytest.raises(ArtifactError, match=r"not a readable \.tar\.gz bundle"):
        verify_bundle(alone)


def test_a_cached_extraction_is_reverified_against_the_bundle(
        tmp_path: Path, fake_toolchain: Path) -> None:
    """A cached bundle.json edited to "verified" does not let an unverified bundle load, and a
    corrupt one is extracted again rather than read."""
    root, cache = tmp_path / "build", tmp_path / "cache"
    build(spec_from_params("attention"), root, target="hw")
    (bundle,) = [b.path for b in publish(["attention"], VERSION, tmp_path / "dist",
                                         build_root=root, allow_unverified=True)]
    cached = open_bundle(bundle, cache, allow_unverified=True)
    info_path = cached / "bundle.json"
    info = json.loads(info_path.read_text())
    info["verification"] = {"status": "verified", "reason": None, "report": None, "summary": None}
    info_path.write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match=r"intact but unverified"):
        open_bundle(bundle, cache)

    assert open_bundle(bundle, cache, allow_unverified=True) == cached
    info_path.write_text("{ not json")
    assert open_bundle(bundle, cache, allow_unverified=True) == cached
    assert json.loads(info_path.read_text())["verification"]["status"] == "unverified"
    (cached / "stray.txt").write_text("not from the bundle")
    assert open_bundle(bundle, cache, allow_unverified=True) == cached
    assert not (cached / "stray.txt").exists()


def test_loading_a_bundle_without_home_is_one_line(good: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NPUKIT_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ArtifactError, match=r"HOME is not set; set NPUKIT_CACHE_DIR"):
        NpuKernel.load(good, backend="emu")


def test_loading_a_bundle_with_an_unwritable_home_is_one_line(
        good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import read_only

    monkeypatch.delenv("NPUKIT_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    not_a_dir = tmp_path / "home-file"
    not_a_dir.write_text("a file where HOME should be")
    monkeypatch.setenv("HOME", str(not_a_dir))
    with pytest.raises(ArtifactError, match=r"cannot create the bundle cache there .*set "
                                            r"NPUKIT_CACHE_DIR to a writable directory"):
        NpuKernel.load(good, backend="emu")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with read_only(home), pytest.raises(ArtifactError, match=r"cannot create the bundle cache"):
        NpuKernel.load(good, backend="emu")
    assert list(home.iterdir()) == []


def test_a_full_destination_is_not_blamed_on_the_bundle(good: Path, tmp_path: Path) -> None:
    from tests.conftest import run_with_file_size_limit

    dest = tmp_path / "extract" / "artifact"
    proc = run_with_file_size_limit(
        "from runtime.bundle import verify_bundle\n"
        "from runtime.errors import ArtifactError\n"
        f"try:\n    verify_bundle({str(good)!r}, {str(dest)!r})\n"
        "except ArtifactError as e:\n    print(e)\n", limit=2000)
    assert proc.returncode == 0, proc.stderr
    assert f"{dest.parent}/.bundle-" in proc.stdout
    assert "cannot write there (File too large); the bundle is not at fault" in proc.stdout
    assert "not a readable" not in proc.stdout
    assert list(dest.parent.iterdir()) == []


def test_a_member_longer_than_its_header_is_refused(tmp_path: Path) -> None:
    """The reader stops at the size the tar header declares: more data is refused, not kept."""

    class Tar:
        def __init__(self, extra: int) -> None:
            self.extra = extra

        def extractfile(self, member: tarfile.TarInfo) -> io.BytesIO:
            return io.BytesIO(b"x" * (member.size + self.extra))

    member = tarfile.TarInfo(f"{TOP}/insts.bin")
    member.size = 16
    bundle = tmp_path / "b.tar.gz"
    with pytest.raises(ArtifactError, match=r"'.*insts\.bin' is longer than declared"):
        b"".join(bundle_mod._chunks(bundle, Tar(1), member))  # type: ignore[arg-type]
    assert b"".join(bundle_mod._chunks(bundle, Tar(0), member)) == b"x" * 16  # type: ignore[arg-type]

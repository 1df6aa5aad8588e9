"""Published bundles on the consumer side: verify one, extract it safely, and cache it for loading.

A bundle (`<kernel>-<variant>-<version>.tar.gz`, made by `codegen.publish`) is one top-level
directory of plain files: the artifact's files, its `manifest.json`, a `bundle.json` and maybe the
`test-hw.json` report. A bundle comes from elsewhere, so nothing in it is trusted until checked:
the download against `SHA256SUMS`, each member's name, type and size before anything is written,
every file against the manifest's hashes, and the xclbin and insts.bin through their lints.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runtime.errors import ArtifactError
from runtime.insts import lint_insts
from runtime.loader import Schema, load_json
from runtime.manifest import MANIFEST_NAME, Manifest, sha256_file
from runtime.schemas import BUNDLE_INFO_SCHEMA, REPORT_SCHEMA
from runtime.xclbin import lint_xclbin

BUNDLE_SUFFIX = ".tar.gz"
BUNDLE_INFO_NAME = "bundle.json"
REPORT_NAME = "test-hw.json"
SUMS_NAME = "SHA256SUMS"
VERIFIED = "verified"
UNVERIFIED = "unverified"
# Far above any real kernel (an xclbin is tens of KiB), far below what could fill a disk.
MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 256 << 20
MAX_HEADER_BYTES = 1 << 20  # tar headers and pax records, on top of the members' data
_SUMS_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S(?:.*\S)?)$")


@dataclass(frozen=True)
class BundleInfo:
    """What a verified bundle holds: its digest, manifest and `bundle.json`, and where it went."""

    path: Path
    sha256: str
    manifest: Manifest
    info: dict[str, Any]
    directory: Path | None  # the extracted artifact directory, or None when not kept

    @property
    def version(self) -> str:
        return str(self.info["version"])

    @property
    def status(self) -> str:
        return str(self.info["verification"]["status"])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_sums(digests: dict[str, str]) -> str:
    """`SHA256SUMS` text in `sha256sum`'s format, one `<hex>  <name>` line per file, sorted."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))


def read_sums(path: Path) -> dict[str, str]:
    """Parse a `SHA256SUMS` file; a malformed line is an ArtifactError naming it."""
    sums: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _SUMS_LINE.match(line)
        if m is None:
            raise ArtifactError(f"{path}:{n}: not a `<sha256>  <file>` line: {line[:80]!r}")
        sums[m.group(2)] = m.group(1)
    return sums


def check_sums(path: Path, digest: str) -> None:
    """When `path` sits beside a `SHA256SUMS`, it must be listed there with `digest`."""
    sums_file = path.parent / SUMS_NAME
    if not sums_file.is_file():
        return
    want = read_sums(sums_file).get(path.name)
    if want is None:
        raise ArtifactError(f"{path}: not listed in {sums_file}; it is not part of this release")
    if want != digest:
        raise ArtifactError(
            f"{path}: sha256 {digest[:16]}... does not match {SUMS_NAME} ({want[:16]}...): "
            "the download is corrupt or the bundle was tampered with; download it again"
        )


def verify_bundle(path: str | Path, dest: str | Path | None = None, *,
                  allow_unverified: bool = True) -> BundleInfo:
    """Verify a bundle completely; with `dest` (which must not exist), leave the artifact
    directory there.

    Extraction goes to a temporary directory beside `dest` (or a scratch one) that is renamed to
    `dest` only once every check passed, so a rejected bundle leaves nothing behind. Without
    `allow_unverified`, a bundle not verified on an NPU is one of the rejected.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such bundle file")
    target = Path(dest) if dest is not None else None
    if target is not None:
        _require_new(target)
    digest = sha256_file(path)
    check_sums(path, digest)
    parent = target.parent if target is not None else None
    try:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=parent))
    except OSError as e:
        raise _write_error(parent or Path(tempfile.gettempdir()), e) from None
    try:
        _extract(path, tmp)
        manifest, info = _check_contents(path, tmp)
        _lint(path, tmp, manifest)
        if not allow_unverified:
            require_verified(path, info)
        if target is None:
            return BundleInfo(path, digest, manifest, info, None)
        _require_new(target)
        try:
            os.rename(tmp, target)
        except OSError as e:
            raise ArtifactError(f"{target}: cannot extract the bundle there ({e.strerror}); "
                                "remove it or choose another destination") from None
        return BundleInfo(path, digest, manifest, info, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _require_new(target: Path) -> None:
    """A destination must not exist, not even empty: nothing there is npukit's to replace."""
    if target.exists() or target.is_symlink():
        raise ArtifactError(f"{target}: already exists; the bundle is extracted only into a new "
                            "directory: remove it or choose another destination")


def _write_error(where: Path, e: OSError) -> ArtifactError:
    """A failure writing the destination (a full disk, no permission): not the bundle's fault."""
    return ArtifactError(f"{where}: cannot write there ({e.strerror or e}); the bundle is not "
                         "at fault: free some space or choose another destination")


def _member_name(bundle: Path, member: tarfile.TarInfo, top: str | None) -> tuple[str, str]:
    """A member's (top directory, file name), after refusing anything but `<top>/<file>`."""
    name = member.name
    if not member.isreg():
        kind = ("symlink" if member.issym() else "hard link" if member.islnk() else
                "directory" if member.isdir() else "device or fifo")
        raise ArtifactError(f"{bundle}: member {name!r} is a {kind}; a bundle holds plain "
                            "files only")
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise ArtifactError(f"{bundle}: member {name!r} has an absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise ArtifactError(f"{bundle}: member {name!r} leaves the bundle with '..'")
    if len(parts) != 2 or "." in parts or any(p.startswith(".") for p in parts):
        raise ArtifactError(f"{bundle}: member {name!r} is not <directory>/<file>")
    if top is not None and parts[0] != top:
        raise ArtifactError(f"{bundle}: member {name!r} is outside the top directory {top!r}")
    return parts[0], parts[1]


Chunks = Iterator[bytes]


def _walk(bundle: Path, consume: Callable[[str, Chunks], None]) -> None:
    """Check every member within the limits and hand its data to `consume(name, chunks)`.

    The whole gzip stream is read, to its end: its CRC and length trailer are checked even when
    no SHA256SUMS vouches for the download.
    """
    count, total, top = 0, 0, None
    seen: set[str] = set()
    try:
        with gzip.open(bundle, "rb") as gz:
            capped = _Capped(gz, bundle, MAX_TOTAL_BYTES + MAX_HEADER_BYTES, MAX_HEADER_BYTES)
            with tarfile.open(fileobj=capped, mode="r|") as tar:
                for member in tar:
                    capped.in_data()
                    count += 1
                    if count > MAX_MEMBERS:
                        raise ArtifactError(f"{bundle}: more than {MAX_MEMBERS} members")
                    top, name = _member_name(bundle, member, top)
                    if name in seen:
                        raise ArtifactError(f"{bundle}: member {name!r} appears twice")
                    seen.add(name)
                    if member.size > MAX_MEMBER_BYTES:
                        raise ArtifactError(f"{bundle}: member {name!r} is {member.size} bytes, "
                                            f"over the {MAX_MEMBER_BYTES}-byte limit")
                    total += member.size
                    if total > MAX_TOTAL_BYTES:
                        raise ArtifactError(f"{bundle}: members exceed {MAX_TOTAL_BYTES} bytes")
                    consume(name, _chunks(bundle, tar, member))
                    capped.in_headers()
                capped.in_data()
                while capped.read(1 << 16):  # the tar's end padding, then the gzip trailer
                    pass
    except ArtifactError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ArtifactError(f"{bundle}: not a readable .tar.gz bundle ({e})") from None
    if count == 0:
        raise ArtifactError(f"{bundle}: empty bundle")


def _extract(bundle: Path, into: Path) -> None:
    """Write each regular member as a plain file in `into`, within the limits, or raise."""
    _walk(bundle, lambda name, chunks: _write_member(into / name, chunks))


def _digests(bundle: Path) -> dict[str, str]:
    """Each member's sha256, read from the bundle itself (within the same limits), writing
    nothing."""
    digests: dict[str, str] = {}

    def digest(name: str, chunks: Chunks) -> None:
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        digests[name] = h.hexdigest()

    _walk(bundle, digest)
    return digests


# tarfile's stream reads ahead in records, so a header phase may also hold the padding of the
# previous member and the start of the next one's data.
_READ_AHEAD = 2 * tarfile.RECORDSIZE


class _Capped:
    """A reader that refuses to decompress past `limit` bytes, whatever the headers claim, and
    past `header_limit` bytes between one member's data and the next (its tar and pax headers,
    which tarfile would otherwise read into memory whole)."""

    def __init__(self, raw: gzip.GzipFile, bundle: Path, limit: int, header_limit: int) -> None:
        self.raw, self.bundle, self.limit, self.count = raw, bundle, limit, 0
        self.header_limit = header_limit
        self.headers_from: int | None = 0

    def in_headers(self) -> None:
        self.headers_from = self.count

    def in_data(self) -> None:
        self.headers_from = None

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise ArtifactError(f"{self.bundle}: decompresses past {self.limit} bytes")
        if (self.headers_from is not None
                and self.count - self.headers_from > self.header_limit + _READ_AHEAD):
            raise ArtifactError(f"{self.bundle}: a member's tar headers exceed "
                                f"{self.header_limit} bytes")
        return data


def _chunks(bundle: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> Chunks:
    src = tar.extractfile(member)
    if src is None:
        raise ArtifactError(f"{bundle}: member {member.name!r} has no data")
    with src:
        read = 0
        for chunk in iter(lambda: src.read(1 << 20), b""):
            read += len(chunk)
            if read > member.size:
                raise ArtifactError(f"{bundle}: member {member.name!r} is longer than declared")
            yield chunk


def _write_member(out: Path, chunks: Chunks) -> None:
    """Write a member as a new plain file; an error writing it names the destination."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(out, flags, 0o644)
    except OSError as e:
        raise _write_error(out.parent, e) from None
    try:
        for chunk in chunks:  # an error reading the bundle propagates as the bundle's
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(fd, view):]
                except OSError as e:
                    raise _write_error(out.parent, e) from None
    finally:
        os.close(fd)


def _check_contents(bundle: Path, root: Path) -> tuple[Manifest, dict[str, Any]]:
    """The files are exactly the manifest's plus bundle.json (and the report), hashes matching."""
    names = {p.name for p in root.iterdir()}
    for required in (MANIFEST_NAME, BUNDLE_INFO_NAME):
        if required not in names:
            raise ArtifactError(f"{bundle}: {required} is missing")
    manifest = Manifest.from_json(_read_json(bundle, root / MANIFEST_NAME, {"type": "object"}),
                                  where=f"{bundle}: {MANIFEST_NAME}")
    info = _read_json(bundle, root / BUNDLE_INFO_NAME, BUNDLE_INFO_SCHEMA)
    allowed = {*manifest.files, MANIFEST_NAME, BUNDLE_INFO_NAME, REPORT_NAME}
    extra = sorted(names - allowed)
    if extra:
        raise ArtifactError(f"{bundle}: extra file {extra[0]!r} is not listed in the manifest")
    for name, meta in sorted(manifest.files.items()):
        f = root / name
        if name not in names:
            raise ArtifactError(f"{bundle}: {name} is listed in the manifest but missing")
        if f.stat().st_size != int(meta["bytes"]) or sha256_file(f) != meta["sha256"]:
            raise ArtifactError(f"{bundle}: {name} does not match its manifest hash "
                                "(tampered or corrupt bundle)")
    _check_info(bundle, root, manifest, info, has_report=REPORT_NAME in names)
    return manifest, info


def _check_info(bundle: Path, root: Path, manifest: Manifest, info: dict[str, Any],
                has_report: bool) -> None:
    manifest_sha = sha256_file(root / MANIFEST_NAME)
    verification = info["verification"]  # BUNDLE_INFO_SCHEMA: an object with a known status
    status = verification["status"]
    described = (info.get("kernel"), info.get("variant"), info.get("manifest_sha256"))
    if described != (manifest.kernel, manifest.variant, manifest_sha):
        raise ArtifactError(f"{bundle}: {BUNDLE_INFO_NAME} describes another manifest "
                            "(kernel, variant or manifest_sha256 differ)")
    if has_report != (verification.get("report") == REPORT_NAME):
        raise ArtifactError(f"{bundle}: {REPORT_NAME} presence disagrees with {BUNDLE_INFO_NAME}")
    if has_report:
        report = _read_json(bundle, root / REPORT_NAME, REPORT_SCHEMA)
        if report.get("manifest_sha256") != manifest_sha:
            raise ArtifactError(f"{bundle}: {REPORT_NAME} is for another manifest")
        if status == VERIFIED and not (report.get("passed") is True
                                       and report.get("backend") == "xrt"):
            raise ArtifactError(f"{bundle}: marked verified without a passing hardware report")
    elif status == VERIFIED:
        raise ArtifactError(f"{bundle}: marked verified without a hardware report")
    if status == VERIFIED and manifest.emulation_only:
        raise ArtifactError(f"{bundle}: an emulation-only artifact is marked verified")


def _read_json(bundle: Path, path: Path, schema: Schema) -> dict[str, Any]:
    """A bundle member's JSON, named as `<bundle>: <member>` (not by its scratch path)."""
    data: dict[str, Any] = load_json(path, schema, name=f"{bundle}: {path.name}",
                                     fix="the bundle is corrupt or was not made by npukit publish")
    return data


def _lint(bundle: Path, root: Path, manifest: Manifest) -> None:
    """The xclbin and insts.bin must pass the same lints as at build time."""
    if manifest.emulation_only:
        return
    xclbin, insts = manifest.file_for("xclbin"), manifest.file_for("insts")
    assert xclbin and insts  # Manifest.from_json requires both for a hardware artifact
    try:
        lint_xclbin(root / xclbin, n_data_buffers=len(manifest.buffers), device=manifest.device,
                    kernel_name=manifest.kernel_name)
        lint_insts(root / insts, device=manifest.device,
                   bound_args=[b.arg_index for b in manifest.buffers])
    except ArtifactError as e:
        raise ArtifactError(f"{bundle}: lint failed: {str(e).replace(f'{root}/', '')}") from None


def default_cache_dir() -> Path:
    """Where loaded bundles are extracted: $NPUKIT_CACHE_DIR, else $XDG_CACHE_HOME/npukit/bundles,
    else $HOME/.cache/npukit/bundles (the XDG default); with none of them set, an ArtifactError."""
    env = os.environ.get("NPUKIT_CACHE_DIR")
    if env:
        return Path(env)
    home = os.environ.get("HOME")
    base = os.environ.get("XDG_CACHE_HOME") or (Path(home) / ".cache" if home else None)
    if not base:
        raise ArtifactError("no directory to extract bundles into: HOME is not set; set "
                            "NPUKIT_CACHE_DIR to a writable directory")
    return Path(base) / "npukit" / "bundles"


def open_bundle(path: str | Path, cache_dir: str | Path | None = None, *,
                allow_unverified: bool = False) -> Path:
    """A verified artifact directory for bundle `path`, extracted once per bundle sha256.

    A cached extraction is used only while it holds exactly the bundle's own members, byte for
    byte; anything else in its place is extracted again. A bundle not verified on an NPU is
    refused unless `allow_unverified`.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such bundle file")
    digest = sha256_file(path)
    check_sums(path, digest)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / digest
    if _holds_bundle(path, target):
        return _checked(path, target, allow_unverified)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtifactError(f"{cache}: cannot create the bundle cache there ({e.strerror or e}); "
                            "set NPUKIT_CACHE_DIR to a writable directory") from None
    shutil.rmtree(target, ignore_errors=True)
    try:
        verify_bundle(path, target, allow_unverified=allow_unverified)
    except ArtifactError:
        if _holds_bundle(path, target):  # another process extracted the same bundle meanwhile
            return _checked(path, target, allow_unverified)
        raise
    return target


def _holds_bundle(bundle: Path, directory: Path) -> bool:
    """Whether `directory` holds exactly `bundle`'s members, each with its sha256 in the bundle."""
    if not directory.is_dir():
        return False
    want = _digests(bundle)
    try:
        entries = list(directory.iterdir())
        if {p.name for p in entries} != set(want):
            return False
        return all(p.is_file() and not p.is_symlink() and sha256_file(p) == want[p.name]
                   for p in entries)
    except OSError:
        return False


def _checked(bundle: Path, directory: Path, allow_unverified: bool) -> Path:
    """The same checks as a fresh extraction, on the cached one; the verdict from its files."""
    manifest, info = _check_contents(bundle, directory)
    _lint(bundle, directory, manifest)
    if not allow_unverified:
        require_verified(bundle, info)
    return directory


def require_verified(path: Path, info: dict[str, Any]) -> None:
    """A bundle holds code that will run: one not verified on an NPU is refused."""
    verification = info["verification"]
    if verification["status"] != "verified":
        raise ArtifactError(
            f"{path}: the bundle is intact but {verification['status']} "
            f"({verification.get('reason') or 'no passing NPU report'}); "
            "pass --allow-unverified (allow_unverified=True from Python) to use it anyway"
        )


def resolve_artifact(path: str | Path, *, allow_unverified: bool = False) -> Path:
    """`path` itself for an artifact directory; the cached, verified extraction for a bundle.

    Checksums catch corruption, not a forger who rewrites them too: load bundles only from a
    source you trust.
    """
    path = Path(path)
    if not (path.is_file() and path.name.endswith(BUNDLE_SUFFIX)):
        return path
    return open_bundle(path, allow_unverified=allow_unverified)

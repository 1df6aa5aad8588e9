"""`invoke publish`: verified artifact directories into versioned, reproducible, checked bundles.

Each artifact `build/<kernel>/<variant>/` becomes `dist/<kernel>-<variant>-<version>.tar.gz`:
its files and manifest, a `bundle.json` (version, verification status, the report's summary) and
the latest `test-hw` report, under one top-level directory; `dist/SHA256SUMS` lists every bundle.
Only artifacts that passed on the NPU are published, unless the caller allows unverified ones.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import tarfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codegen.buildroot import artifact_lock, claim, list_artifacts
from runtime.atomic import write_atomic
from runtime.bundle import (
    BUNDLE_INFO_NAME,
    BUNDLE_SUFFIX,
    REPORT_NAME,
    SUMS_NAME,
    UNVERIFIED,
    VERIFIED,
    format_sums,
    read_sums,
)
from runtime.errors import ArtifactError, NpukitError
from runtime.loader import load_json
from runtime.manifest import MANIFEST_NAME, Manifest, load_manifest, sha256_file
from runtime.schemas import BUNDLE_SCHEMA, REPORT_SCHEMA

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORT_SUFFIX = ".test-hw.json"
HARDWARE_BACKEND = "xrt"
SUMMARY_KEYS = ("backend", "passed", "reason", "device", "timing", "tested_at")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")


class PublishError(NpukitError):
    """An artifact cannot be published as asked; the message names it and the way out."""


@dataclass(frozen=True)
class Published:
    """One bundle written by `publish`."""

    path: Path
    sha256: str
    kernel: str
    variant: str
    status: str
    reason: str


def report_path(artifact_dir: Path) -> Path:
    """Where an artifact's latest test-hw report lives: beside it, `<variant>.test-hw.json`."""
    artifact_dir = Path(artifact_dir)
    return artifact_dir.parent / f"{artifact_dir.name}{REPORT_SUFFIX}"


def write_artifact_report(artifact_dir: Path, report: dict[str, Any], *, tested: str) -> Path:
    """Record `report` as the artifact's latest test-hw result, bound to `tested`: the sha256 of
    the manifest.json that was loaded to test it (`Manifest.sha256`).

    Written under the artifact's lock, and only while `tested` is still its manifest: a rebuild
    during the run would otherwise receive a report made for the build it replaced.
    """
    artifact_dir = Path(artifact_dir)
    manifest = artifact_dir / MANIFEST_NAME
    with artifact_lock(artifact_dir):
        if not manifest.is_file():
            raise ArtifactError(f"{artifact_dir}: no {MANIFEST_NAME}; not an artifact directory")
        if sha256_file(manifest) != tested:
            raise ArtifactError(
                f"{artifact_dir}: rebuilt while it was tested ({MANIFEST_NAME} is not the one "
                "loaded), so its report is not recorded; run `invoke test-hw` again")
        data = {**report, "manifest_sha256": tested}
        return write_atomic(report_path(artifact_dir),
                            json.dumps(data, indent=2, sort_keys=True) + "\n")


def project_version(root: Path = PROJECT_ROOT) -> str:
    """The project version plus the git revision: `0.1.0+g1a2b3c4`, `-dirty` with local edits."""
    base = _base_version(root)
    rev = _git(root, "rev-parse", "--short=7", "HEAD")
    if rev is None:
        return base
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{base}+g{rev}{'-dirty' if dirty else ''}"


def _base_version(root: Path) -> str:
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    return importlib.metadata.version("npukit")


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def find_artifacts(build_root: Path, kernels: Iterable[str] = ()) -> list[Path]:
    """The artifact directories `build_root/<kernel>/<variant>/` of `kernels` (all if none)."""
    found = list_artifacts(build_root)
    wanted = list(kernels)
    missing = [k for k in wanted if not any(a.parent.name == k for a in found)]
    if missing:
        raise PublishError(f"no built artifact for {', '.join(missing)} under {build_root}; "
                           f"build it with `invoke build {missing[0]} --target hw`")
    chosen = [a for a in found if not wanted or a.parent.name in wanted]
    if not chosen:
        raise PublishError(f"no artifacts under {build_root}; build them with `invoke build`")
    return chosen


def verification(artifact_dir: Path, manifest: Manifest) -> tuple[str, str, dict[str, Any] | None]:
    """(status, why not verified, report to bundle) of one artifact.

    "verified" means a passing NPU (xrt) run of this very manifest; a stale report is not bundled.
    """
    name = f"{manifest.kernel}/{manifest.variant}"
    path = report_path(artifact_dir)
    report = _load_report(path)
    if report is not None and report.get("manifest_sha256") != manifest.sha256:
        return UNVERIFIED, f"{name}: test-hw report {path} is stale (made for another build)", None
    if manifest.emulation_only:
        return UNVERIFIED, f"{name}: emulation-only artifact (no xclbin)", report
    if report is None:
        return UNVERIFIED, f"{name}: no test-hw report ({path})", None
    if report.get("backend") != HARDWARE_BACKEND:
        return (UNVERIFIED, f"{name}: test-hw ran on backend {report.get('backend')!r}, "
                "not on the NPU (xrt)", report)
    if report.get("passed") is not True:
        return UNVERIFIED, f"{name}: test-hw failed ({report.get('reason') or 'see the report'})", \
            report
    return VERIFIED, "", report


def _load_report(path: Path) -> dict[str, Any] | None:
    if not (path.exists() or path.is_symlink()):
        return None
    report: dict[str, Any] = load_json(path, REPORT_SCHEMA, error=PublishError,
                                       fix="rerun `invoke test-hw` to write it again")
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few report fields worth reading without opening the report."""
    out = {k: report[k] for k in SUMMARY_KEYS if k in report}
    if isinstance(report.get("cases"), list):
        out["cases"] = len(report["cases"])
    return out


def bundle_info(manifest: Manifest, version: str, status: str, reason: str,
                report: dict[str, Any] | None) -> dict[str, Any]:
    """The `bundle.json` beside the (hashed, untouched) manifest."""
    return {
        "schema": BUNDLE_SCHEMA,
        "kernel": manifest.kernel,
        "variant": manifest.variant,
        "version": version,
        "manifest_sha256": manifest.sha256,
        "verification": {
            "status": status,
            "reason": reason or None,
            "report": REPORT_NAME if report is not None else None,
            "summary": summary(report) if report is not None else None,
        },
    }


def source_date_epoch() -> int:
    """The fixed member mtime: $SOURCE_DATE_EPOCH (reproducible-builds.org), else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not value.isdigit():
        raise PublishError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds")
    return int(value)


def bundle_bytes(top: str, files: dict[str, bytes], mtime: int) -> bytes:
    """A reproducible .tar.gz of `files` under `top/`: same files, same bytes."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(files[name]), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return raw.getvalue()


def publish(kernels: Iterable[str] = (), version: str | None = None, out: Path | None = None,
            *, allow_unverified: bool = False, build_root: Path | None = None) -> list[Published]:
    """Bundle every artifact of `kernels` (all if none) into `out` and update its SHA256SUMS.

    Refuses, before writing anything, when an artifact is not verified on the NPU, unless
    `allow_unverified`; such a bundle then says "unverified" and why in its bundle.json.
    """
    if build_root is None:
        from codegen.cli import BUILD_ROOT

        build_root = BUILD_ROOT
    out = Path(out) if out is not None else PROJECT_ROOT / "dist"
    version = version or project_version()
    if not _VERSION.match(version):
        raise PublishError(f"version {version!r} is not a plain version (letters, digits, .+_-)")
    plans = []
    for art in find_artifacts(Path(build_root), kernels):
        with artifact_lock(art):  # one consistent artifact: no rebuild between these reads
            manifest = load_manifest(art, verify=True)
            status, reason, report = verification(art, manifest)
            files = _bundle_files(art, manifest)
            if report is not None:
                files[REPORT_NAME] = report_path(art).read_bytes()
        plans.append((manifest, status, reason, report, files))
    refused = [reason for _, status, reason, _, _ in plans if status != VERIFIED]
    if refused and not allow_unverified:
        raise PublishError(
            f"refusing to publish {len(refused)} unverified artifact(s): {'; '.join(refused)}; "
            "run `invoke test-hw --backend xrt` on an NPU, or pass --allow-unverified")
    claim(out)
    out.mkdir(parents=True, exist_ok=True)
    sums = _kept_sums(out)
    mtime = source_date_epoch()
    bundles = []
    for manifest, status, reason, report, files in plans:
        stem = f"{manifest.kernel}-{manifest.variant}-{version}"
        info = bundle_info(manifest, version, status, reason, report)
        files[BUNDLE_INFO_NAME] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
        path = out / f"{stem}{BUNDLE_SUFFIX}"
        if path.resolve().parent != out.resolve():
            raise PublishError(f"{stem}: kernel and variant names must not leave {out}")
        data = bundle_bytes(stem, files, mtime)
        digest = hashlib.sha256(data).hexdigest()
        if path.exists() and sums.get(path.name, sha256_file(path)) != digest:
            raise PublishError(f"{path} exists with other content: version {version} was "
                               "already published; publish a new version instead")
        bundles.append((path, data, digest, manifest, status, reason))
    published = []
    for path, data, digest, manifest, status, reason in bundles:
        write_atomic(path, data)
        sums[path.name] = digest
        published.append(Published(path, digest, manifest.kernel, manifest.variant, status,
                                   reason))
    write_atomic(out / SUMS_NAME, format_sums(sums))
    return published


def _bundle_files(art: Path, manifest: Manifest) -> dict[str, bytes]:
    """The manifest and every file it lists, re-hashed as read so a concurrent rebuild shows."""
    files = {MANIFEST_NAME: (art / MANIFEST_NAME).read_bytes()}
    if hashlib.sha256(files[MANIFEST_NAME]).hexdigest() != manifest.sha256:
        raise ArtifactError(f"{art / MANIFEST_NAME}: changed while publishing; rebuild and retry")
    for name, meta in manifest.files.items():
        data = (art / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ArtifactError(f"{art / name}: changed while publishing; rebuild and retry")
        files[name] = data
    return files


def _kept_sums(out: Path) -> dict[str, str]:
    """The existing SHA256SUMS entries whose bundles are still there, each still matching."""
    path = out / SUMS_NAME
    if not path.is_file():
        return {}
    kept = {}
    for name, digest in read_sums(path).items():
        f = out / name
        if not f.is_file():
            continue
        if sha256_file(f) != digest:
            raise PublishError(f"{f} no longer matches {path}; remove it (or `invoke clean "
                               "--dist`) before publishing")
        kept[name] = digest
    return kept

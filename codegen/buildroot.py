"""What npukit owns in a build (or dist) directory: the marker, the artifacts, the leftovers.

npukit marks a directory it creates with `.npukit-build-root`; `clean` deletes only a marked one.
Artifacts are listed as `<kernel>/<variant>/manifest.json`, skipping dot-directories: those are
an interrupted build's temporaries (`.default.tmp-PID`, `.default.old-PID`), swept under the
variant's lock by the next build of that variant.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

from runtime.atomic import write_atomic
from runtime.errors import NpukitError
from runtime.manifest import MANIFEST_NAME

MARKER = ".npukit-build-root"
MARKER_TEXT = "Made by npukit; `invoke clean` may delete this directory and everything in it.\n"


class CleanError(NpukitError):
    """A directory `clean` must not or cannot delete; the message names it and the way out."""


def claim(root: Path) -> None:
    """Create `root` with npukit's marker if it does not exist; an existing one stays unmarked."""
    root = Path(root)
    if root.exists() or root.is_symlink():
        return
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / MARKER, MARKER_TEXT)


def owned(root: Path) -> bool:
    """True when `root` is a real directory npukit made (it holds the marker)."""
    root = Path(root)
    return root.is_dir() and not root.is_symlink() and (root / MARKER).is_file()


def clean(root: Path) -> bool:
    """Delete `root`, only if npukit made it; False when there was nothing to delete.

    The marker goes last, so a clean that fails halfway can be run again.
    """
    root = Path(root)
    if not (root.exists() or root.is_symlink()):
        return False
    if not owned(root):
        raise CleanError(f"{root}: not a directory npukit made (no {MARKER} in it); refusing to "
                         "delete it: remove it yourself if nothing in it is yours")
    try:
        for child in sorted(root.iterdir()):
            if child.name == MARKER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        (root / MARKER).unlink()
        root.rmdir()
    except OSError as e:
        raise CleanError(f"{root}: cannot delete {e.filename or root} ({e.strerror or e}); "
                         "make it writable (or remove it yourself) and run clean again") from None
    return True


def artifact_lock(artifact_dir: Path) -> FileLock:
    """The lock a build holds while it replaces `artifact_dir`; readers that must see one
    consistent artifact (a report's binding, publish) hold it too."""
    return FileLock(f"{artifact_dir}.lock")


def list_artifacts(build_root: Path, kernels: Iterable[str] = ()) -> list[Path]:
    """The artifact directories `build_root/<kernel>/<variant>/` of `kernels` (all if none),
    sorted; dot-directories (temporaries, .cache, .work) are never artifacts."""
    wanted = set(kernels)
    found = sorted(p.parent for p in Path(build_root).glob(f"[!.]*/[!.]*/{MANIFEST_NAME}"))
    return [a for a in found if not wanted or a.parent.name in wanted]


def leftover(name: str, variant: str) -> bool:
    """Whether `name`, beside variant `variant`'s directory, is one of its interrupted
    temporaries: an assembly dir, a displaced old dir, or a report being written."""
    v = re.escape(variant)
    return re.fullmatch(rf"\.{v}\.(tmp|old)-\d+|\.{v}\.test-hw\.json\.\d+-[0-9a-f]+\.tmp",
                        name) is not None


def sweep(artifact_dir: Path) -> list[Path]:
    """Remove `artifact_dir`'s leftovers; call it holding `artifact_lock(artifact_dir)`, when
    none can be in use. Returns what was removed."""
    artifact_dir = Path(artifact_dir)
    if not artifact_dir.parent.is_dir():
        return []
    removed = []
    for p in artifact_dir.parent.iterdir():
        if leftover(p.name, artifact_dir.name):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def sweep_entry_temps(entry: Path) -> None:
    """Remove a cache entry's interrupted temporaries (`.tmp-<key16>-PID`); call it holding the
    entry's lock."""
    prefix = f".tmp-{entry.name[:16]}-"
    for p in entry.parent.glob(f"{prefix}*"):
        if p.name[len(prefix):].isdigit():
            shutil.rmtree(p, ignore_errors=True)


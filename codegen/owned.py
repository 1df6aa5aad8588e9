"""Paths the build owns under its cache: whatever stands where one of them belongs is replaced.

Only for places npukit alone writes (build/.cache/...), so debris there (a file where a cache
entry or stage directory belongs, a directory where tools.json belongs) heals on the next build.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def clear(path: Path) -> None:
    """Remove whatever is at `path`: a file, a symlink (not its target) or a directory tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif path.exists():  # a fifo, a socket, a device node
        path.unlink()


def ensure_dir(path: Path, owned_root: Path) -> None:
    """`path` as a directory; anything else at it, or at a parent below `owned_root`, is cleared."""
    here = owned_root
    for part in path.relative_to(owned_root).parts:
        here = here / part
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            clear(here)
    path.mkdir(parents=True, exist_ok=True)

"""Atomic file writes: a unique temporary file beside the target, renamed over it when complete.

Readers see the old file or the new one, never half of either; writers in parallel never share a
temporary name; a write that fails (a full disk, an interrupt) removes its temporary file. The
temporary's name starts with a dot, so listings of artifacts never see it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path`, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Replace `path` with `data` (str is written as UTF-8) in one step; returns `path`."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

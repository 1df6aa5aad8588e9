"""Artifact directories the fake device accepts: an xclbin, an insts.bin and a manifest.

Tests and benchmarks build small hardware artifacts with these instead of running aiecc.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from runtime.manifest import BufferSpec, Manifest, file_entry, write_manifest

from . import axlf

NPU1_HEADER = 0x06030100  # NPU_FACTS 4: devGen 3 (Phoenix), rows 6, version 1.0
SYNC_OP = 0x80


def write_insts(path: Path, n_syncs: int = 2) -> Path:
    """A well-formed npu1 transaction stream: the 4-word header and `n_syncs` sync operations."""
    body = b"".join(struct.pack("<4I", SYNC_OP, 16, 0, 1) for _ in range(n_syncs))
    size = 16 + len(body)
    path.write_bytes(struct.pack("<4I", NPU1_HEADER, 0x0101, n_syncs, size) + body)
    return path


def make_artifact(
    directory: Path,
    buffers: list[BufferSpec],
    *,
    design: str = "module {}\n",
    host_libraries: dict[str, Path] | None = None,
    kernel: str = "standin",
    variant: str = "default",
    params: dict | None = None,
    emulation_only: bool = False,
    n_data_args: int | None = None,
    other_kernels: tuple[str, ...] = (),
    host_banks: int = 1,
    xclbin_tags: tuple[str, str] = ("HOST", "SRAM"),
) -> Path:
    """Write a complete artifact directory (design, host libraries, xclbin, insts, manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"aie.mlir": "design"}
    (directory / "aie.mlir").write_text(design)
    libs = {}
    for link_name, so in (host_libraries or {}).items():
        # a new file renamed into place, never rewritten in place: a process that has the old
        # library loaded (a kernel still open) keeps its mapping intact instead of crashing
        staged = directory / f".{so.name}.tmp"
        shutil.copy(so, staged)
        os.replace(staged, directory / so.name)
        libs[link_name] = so.name
        files[so.name] = "host_core"
    n_words = None
    if not emulation_only:
        axlf.write_xclbin(directory / "final.xclbin", n_data_args or len(buffers),
                          other_kernels=other_kernels, host_banks=host_banks,
                          tags=xclbin_tags)
        insts = write_insts(directory / "insts.bin")
        n_words = insts.stat().st_size // 4
        files.update({"final.xclbin": "xclbin", "insts.bin": "insts"})
    manifest = Manifest(
        kernel=kernel,
        variant=variant,
        device="npu1_1col",
        params=dict(params or {}),
        buffers=buffers,
        files={name: file_entry(directory / name, role) for name, role in files.items()},
        emulation_only=emulation_only,
        host_libraries=libs,
        n_insts_words=n_words,
    )
    write_manifest(directory, manifest)
    return directory

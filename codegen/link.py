"""Link kernel artifacts into one context artifact: one xclbin, one hardware context, N kernels.

A model chains many kernel variants; each `invoke build` artifact is its own xclbin, and XRT
opens one hardware context per xclbin (6 device-wide on Phoenix). A context artifact puts up to
16 of them into ONE `final.xclbin` (amdxdna takes at most XCLBIN_MAX_NUM_PDIS = 16 PDIs per
context), each member a kernel of its own name with its own PDI, and keeps each member's
insts.bin: the host opens one context and one `xrt::kernel(ctx, name)` per member.

The mechanism is mlir-aie's own: aiecc runs once per member, in order, each run extending the
previous run's xclbin (`--xclbin-input`) with this design's kernel (`--xclbin-kernel-name`,
`--xclbin-instance-name`, `--xclbin-kernel-id`; tools/aiecc/CommandLineOptions.h and
python/compiler/aiecc/cl_arguments.py). With an input xclbin, aiecc dumps its AIE_PARTITION,
appends the new PDI and re-packages the input with the new kernel added
(python/compiler/aiecc/main.py, the xclbin step); test/npu-xrt/add_one_two (run.lit, test.cpp)
builds two kernels so and runs both from one hw_context.

Layout: `context.json` (schema npukit-context/1), `final.xclbin` (hardware only) and
`members/<name>/`, each a copy of the member's artifact directory as `invoke build` made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from codegen.buildroot import sweep
from codegen.pipeline import INSTS_NAME, XCLBIN_NAME, BuildError, aiecc_command, code_digest
from codegen.toolchain import Toolchain, discover
from runtime.atomic import write_atomic
from runtime.context import (
    CONTEXT_NAME,
    CONTEXT_SCHEMA,
    MAX_MEMBERS,
    MEMBER_NAME,
    MEMBERS_DIR,
    read_context,
)
from runtime.errors import ArtifactError, NpukitError, ToolchainError
from runtime.loader import Schema, load_json
from runtime.manifest import MANIFEST_NAME, Manifest, content_digest, load_manifest, sha256_file
from runtime.xclbin import lint_xclbin, read_xclbin

LINK_VERSION = "1"
FIRST_KERNEL_ID = 0x901  # aiecc's default --xclbin-kernel-id; members count up from it
TARGETS = ("auto", "hw", "emu")
LINK_CODE = ("codegen/link.py", "runtime/context.py", "runtime/xclbin.py")

Log = Callable[[str, str], None]  # (step, status)
#: what makes a directory a context artifact link_context may replace
OURS: Schema = {"type": "object", "required": ["schema"],
                "properties": {"schema": {"const": CONTEXT_SCHEMA}}}


@dataclass(frozen=True)
class LinkResult:
    """What link_context produced: the directory, its members' names, and how it went."""

    directory: Path
    members: tuple[str, ...]
    emulation_only: bool
    up_to_date: bool
    missing_line: str | None = None


@dataclass(frozen=True)
class _Member:
    name: str
    source: Path
    manifest: Manifest

    @property
    def instance(self) -> str:
        return f"{self.name}_i"  # "name:instance" fits IP_LAYOUT's 64-byte name


def default_name(manifest: Manifest) -> str:
    """A member's default name: `<kernel>_<variant>` as an identifier, the variant replaced by
    8 hex digits of its hash when that is longer than a member name may be."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{manifest.kernel}_{manifest.variant}")
    if MEMBER_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(manifest.variant.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{manifest.kernel[:19]}_{digest}")


def link_context(
    artifacts: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    target: str = "auto",
    names: Sequence[str] | None = None,
    toolchain: Toolchain | None = None,
    peano: str | None = None,
    log: Log | None = None,
    force: bool = False,
) -> LinkResult:
    """Link the kernel artifact directories `artifacts` into the context artifact `out`.

    `names` are the members' kernel names (default `<kernel>_<variant>`). `target` "hw" needs
    aiecc and Peano and hardware members; "auto" makes the xclbin when it can, else an
    emulation-only context (saying why); "emu" never runs aiecc. A context whose members and
    tools are unchanged is up to date and not re-linked (unless `force`).
    """
    say: Log = log or (lambda step, status: None)
    if target not in TARGETS:
        raise BuildError(f"link: --target {target!r} is not one of: {', '.join(TARGETS)}")
    # absolute: aiecc runs in each member's own directory, and --xclbin-input names a path
    # under `out` (absolute(), not resolve(): a symlinked `out` must still be refused)
    out = Path(out).absolute()
    members = _members([Path(a).absolute() for a in artifacts], names)
    devices = sorted({m.manifest.device for m in members})
    if len(devices) > 1:
        raise BuildError(f"link: members target different devices ({', '.join(devices)}); one "
                         "hardware context is one partition: build every member for one device")
    tc = toolchain or discover(peano)
    hw, missing_line = _decide_hw(target, members, tc)
    key = _key(members, tc, hw)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{out}.lock"):
        sweep(out)
        _refuse_foreign(out)
        if not force and _current(out, key):
            say("link", "up to date")
            return LinkResult(out, tuple(m.name for m in members), not hw, True, missing_line)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            try:
                _assemble(tmp, members, tc, hw, key, missing_line, say)
            except NpukitError:
                # never leave the previous context where the failed link's would have been
                shutil.rmtree(out, ignore_errors=True)
                raise
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            if out.exists():
                os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    say("context", "written")
    return LinkResult(out, tuple(m.name for m in members), not hw, False, missing_line)


def _members(artifacts: list[Path], names: Sequence[str] | None) -> list[_Member]:
    if not artifacts:
        raise BuildError("link: no kernel artifacts given; pass at least one `invoke build` "
                         "artifact directory")
    if len(artifacts) > MAX_MEMBERS:
        raise BuildError(f"link: {len(artifacts)} kernels, more than the {MAX_MEMBERS} PDIs one "
                         "hardware context holds (amdxdna XCLBIN_MAX_NUM_PDIS); split them into "
                         "two contexts")
    if names is not None and len(names) != len(artifacts):
        raise BuildError(f"link: {len(names)} names for {len(artifacts)} artifacts; give one "
                         "name per artifact")
    members = []
    for i, art in enumerate(artifacts):
        m = load_manifest(art, verify=True)
        name = names[i] if names is not None else default_name(m)
        if not MEMBER_NAME.fullmatch(name):
            raise BuildError(f"link: member name {name!r} must be a letter then up to 27 "
                             "letters, digits or '_' (it is the xclbin kernel name)")
        members.append(_Member(name, art, m))
    seen: set[str] = set()
    for m in members:
        if m.name in seen:
            raise BuildError(f"link: two members are named {m.name!r}; pass distinct names")
        seen.add(m.name)
    return members


def _decide_hw(target: str, members: list[_Member], tc: Toolchain) -> tuple[bool, str | None]:
    """Whether the context gets an xclbin, and why not when it does not."""
    if target == "emu":
        return False, "no xclbin: emulation-only context requested (--target emu)"
    emu_only = [m.name for m in members if m.manifest.emulation_only]
    if emu_only:
        line = (f"no xclbin: member {emu_only[0]} is an emulation-only build; rebuild it with "
                "`invoke build --target hw` where aiecc and Peano are installed")
        if target == "hw":
            raise BuildError(f"link: {line}")
        return False, line
    if tc.missing_for_hw:
        if target == "hw":
            raise ToolchainError(f"link: {tc.hw_missing_line()}")
        return False, tc.hw_missing_line()
    return True, None


def _key(members: list[_Member], tc: Toolchain, hw: bool) -> str:
    h = hashlib.sha256()
    parts = [LINK_VERSION, str(hw), code_digest(LINK_CODE)]
    parts += [f"{m.name}={m.manifest.sha256}" for m in members]
    if hw:
        assert tc.aiecc and tc.peano
        parts += [tc.aiecc.identity, tc.peano.identity,
                  tc.bootgen.identity if tc.bootgen else "no bootgen"]
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()


def _refuse_foreign(out: Path) -> None:
    """`out` may be replaced only if it is missing, empty, or a context artifact."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BuildError(f"link: {out} exists and is not a context artifact directory; "
                         "refusing to overwrite it: choose another output or remove it")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:  # ours even when stale or edited: its schema says so
        load_json(out / CONTEXT_NAME, OURS, fix="not a context artifact")
    except NpukitError:
        raise BuildError(f"link: {out} exists and is not a context artifact (no valid "
                         f"{CONTEXT_NAME}); refusing to overwrite it: choose another output "
                         "or remove it") from None


def _current(out: Path, key: str) -> bool:
    try:
        return read_context(out, verify=True).get("cache_key") == key
    except NpukitError:
        return False


def _assemble(tmp: Path, members: list[_Member], tc: Toolchain, hw: bool, key: str,
              missing_line: str | None, say: Log) -> None:
    entries = []
    for i, m in enumerate(members):
        dest = tmp / MEMBERS_DIR / m.name
        dest.mkdir(parents=True)
        for name in [*sorted(m.manifest.files), MANIFEST_NAME]:
            shutil.copy2(m.source / name, dest / name)
        entry: dict[str, Any] = {
            "name": m.name, "dir": f"{MEMBERS_DIR}/{m.name}", "kernel": m.manifest.kernel,
            "variant": m.manifest.variant, "manifest_sha256": m.manifest.sha256,
        }
        if hw:
            entry.update(xclbin_kernel=m.name, instance=m.instance,
                         kernel_id=FIRST_KERNEL_ID + i)
        entries.append(entry)
        say(f"member {m.name}", f"copied ({i + 1}/{len(members)})")
    if hw:
        _chain_xclbins(tmp, members, tc, say)
    files = {
        p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    body: dict[str, Any] = {
        "schema": CONTEXT_SCHEMA,
        "device": members[0].manifest.device,
        "emulation_only": not hw,
        "xclbin": XCLBIN_NAME if hw else None,
        "members": entries,
        "files": files,
        "tools": tc.describe() if hw else {},
        "cache_key": key,
        "notes": [missing_line] if missing_line else [],
    }
    body["content_sha256"] = content_digest(body)
    write_atomic(tmp / CONTEXT_NAME, json.dumps(body, indent=2, sort_keys=True) + "\n")


def _chain_xclbins(tmp: Path, members: list[_Member], tc: Toolchain, say: Log) -> None:
    """Run aiecc once per member, each extending the previous xclbin; lint the last."""
    assert tc.aiecc and tc.peano
    work = tmp / ".work"
    previous: Path | None = None
    for i, m in enumerate(members):
        step = work / m.name
        step.mkdir(parents=True)
        src = tmp / MEMBERS_DIR / m.name
        design, core = m.manifest.file_for("design"), m.manifest.file_for("core_object")
        if design is None or core is None:
            raise ArtifactError(f"link: member {m.name} ({m.source}) lists no design or core "
                                "object; rebuild it with `invoke build --target hw`")
        shutil.copy2(src / design, step / "aie.mlir")
        shutil.copy2(src / core, step / core)  # aiecc finds link_with objects in its cwd
        if not m.manifest.alloc_scheme:
            raise ArtifactError(f"link: member {m.name} ({m.source}) records no alloc_scheme; "
                                "rebuild it with this npukit (`invoke build`)")
        cmd = aiecc_command(Path(tc.aiecc.path), Path(tc.peano.path), step / "aie.mlir.prj",
                            m.manifest.alloc_scheme)
        chain = [f"--xclbin-kernel-name={m.name}", f"--xclbin-instance-name={m.instance}",
                 f"--xclbin-kernel-id=0x{FIRST_KERNEL_ID + i:x}"]
        if previous is not None:
            chain.append(f"--xclbin-input={previous}")
        cmd[-1:-1] = chain
        proc = subprocess.run(cmd, cwd=step, capture_output=True, text=True)
        produced = step / XCLBIN_NAME
        if proc.returncode != 0 or not produced.is_file():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise BuildError(f"link: aiecc failed for member {m.name} (exit {proc.returncode}); "
                             f"nothing was written: {tail}")
        if (step / INSTS_NAME).read_bytes() != (src / INSTS_NAME).read_bytes():
            raise BuildError(f"link: aiecc made a different insts.bin for member {m.name} than "
                             f"its build did ({m.source}); rebuild it with this aiecc")
        previous = produced
        say(f"aiecc {m.name}", f"linked ({i + 1}/{len(members)})")
    assert previous is not None
    final = tmp / XCLBIN_NAME
    shutil.copy2(previous, final)
    shutil.rmtree(work)
    lint_context_xclbin(final, [(m.name, len(m.manifest.buffers)) for m in members],
                        members[0].manifest.device)
    say("lint", "ok")


def lint_context_xclbin(path: Path, kernels: Sequence[tuple[str, int]], device: str) -> None:
    """Every member's kernel is in the xclbin, well formed, with a kernel id the partition's
    PDIs list (runtime.xclbin.lint_xclbin); names and ids are distinct and nothing else is
    there."""
    wanted = [name for name, _ in kernels]
    info = read_xclbin(path)
    if sorted(info.kernel_names) != sorted(wanted) or len(set(info.kernel_names)) != len(wanted):
        raise ArtifactError(f"link: {path}: holds kernels {list(info.kernel_names)}, expected "
                            f"{wanted} once each")
    ids: list[int] = []
    for name, n_data in kernels:
        one = lint_xclbin(path, n_data_buffers=n_data, device=device, kernel_name=name)
        ids += one.ip_kernel_ids
    if len(set(ids)) != len(ids):
        raise ArtifactError(f"link: {path}: two kernels share a kernel id "
                            f"({', '.join(f'0x{i:x}' for i in ids)})")

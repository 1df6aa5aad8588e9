"""The build as named stages with a content-addressed cache, ending in an artifact directory.

validate -> render -> check -> host-core -> aie-core -> aiecc -> lint -> manifest. Each stage's
key hashes everything that can change its output (texts, flags, parameters, tool identities)
and chains the keys of the stages it consumes. A stage writes into a temporary directory that is
renamed into the cache only when complete, under a lock, so an interrupted or concurrent build
never leaves half an entry. The artifact directory is swapped in whole, or removed on failure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

if TYPE_CHECKING:  # the checks read designs with xDSL: imported only when a stage runs them
    from runtime.emulator.model import Design

from codegen.buildroot import artifact_lock, claim, sweep, sweep_entry_temps
from codegen.hostcore import HOST_FLAGS, compile_host_core, host_library_name
from codegen.owned import clear, ensure_dir
from codegen.render import DESIGN_NAME, HOST_AIE_API, Rendered, render, template_digest
from codegen.spec import KernelSpec
from codegen.toolchain import Toolchain, discover, require_cxx
from runtime.errors import ArtifactError, NpukitError, ToolchainError
from runtime.insts import lint_insts
from runtime.loader import Schema, load_json
from runtime.manifest import (
    MANIFEST_NAME,
    Manifest,
    file_entry,
    load_manifest,
    sha256_file,
    write_manifest,
)
from runtime.xclbin import lint_xclbin

PIPELINE_VERSION = "1"
STAGES = ("validate", "render", "check", "host-core", "aie-core", "aiecc", "lint", "manifest")
XCLBIN_NAME = "final.xclbin"
INSTS_NAME = "insts.bin"
TARGETS = ("auto", "hw", "emu")

Log = Callable[[str, str], None]  # (stage, status)


class BuildError(NpukitError):
    """A stage failed; the message names the stage and where to look."""


CODE_ROOT = Path(__file__).resolve().parent.parent
# The code whose verdicts are cached: a change to it re-runs the check and lint stages.
CHECK_CODE = ("codegen/checks.py", "codegen/spec.py", "codegen/banks.py", "runtime/emulator")
LINT_CODE = ("runtime/xclbin.py", "runtime/insts.py")
ENTRY_SUMS = ".sha256.json"
ENTRY_SUMS_SCHEMA: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
CALL_MARGIN = 256  # bytes of stack above the core code's own frames, for library calls


def code_digest(paths: tuple[str, ...], pattern: str = "*.py") -> str:
    """A hash of the sources under `paths` (files or folders of the project): the Python ones,
    or every file matching `pattern` (the kernels' C++ and templates: "*")."""
    h = hashlib.sha256()
    for rel in paths:
        root = CODE_ROOT / rel
        for f in sorted([root] if root.is_file() else
                        (x for x in root.rglob(pattern) if x.is_file())):
            h.update(str(f.relative_to(CODE_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _entry_sums(entry: Path) -> dict[str, str]:
    return {f.name: sha256_file(f) for f in sorted(entry.iterdir())
            if f.is_file() and f.name != ENTRY_SUMS}


def _entry_intact(entry: Path) -> bool:
    """A cache entry is trusted only if its files still have the hashes recorded at creation."""
    try:
        recorded = load_json(entry / ENTRY_SUMS, ENTRY_SUMS_SCHEMA, fix="the entry is rebuilt")
        return bool(recorded == _entry_sums(entry))
    except (OSError, NpukitError):
        return False


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()


def aie_api_missing_line(kernel: str) -> str:
    """Why a vector-path core cannot be compiled for the NPU here, and the fix."""
    return (f"{kernel} path=vector: Peano needs mlir-aie's aie_api headers and none were found; "
            "set MLIR_AIE_INSTALL_DIR to the mlir-aie install whose include/ holds aie_api, or "
            "install the pinned mlir_aie wheel")


def aie_triple(device: str) -> str:
    """Peano's target: aie2 for Phoenix (npu1*), aie2p for Strix (npu2*) (NPU_FACTS 3)."""
    return "aie2p-none-unknown-elf" if device.startswith("npu2") else "aie2-none-unknown-elf"


def aie_arch(device: str) -> str:
    return "aie2p" if device.startswith("npu2") else "aie2"


def core_defines(spec: KernelSpec) -> list[str]:
    """The core code's compile-time switches, the same for the host and Peano: NPUKIT_VECTOR
    selects the AIE API vector path over the scalar reference loops."""
    return [f"-DNPUKIT_VECTOR={int(spec.core_path == 'vector')}"]


def host_api_digest() -> str:
    """A hash of npukit's host AIE API subset: the host-core stage compiles against it."""
    h = hashlib.sha256()
    for f in sorted(p for p in HOST_AIE_API.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(HOST_AIE_API)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def host_core_flags(spec: KernelSpec) -> tuple[str, ...]:
    """Defines and include dirs of the host compile: the core switches, the architecture the host
    AIE API subset models (20 aie2, 21 aie2p) and the subset itself on the include path (only
    here: Peano builds include mlir-aie's real aie_api headers)."""
    arch = 21 if aie_arch(spec.device) == "aie2p" else 20
    return (*core_defines(spec), f"-DNPUKIT_AIE_ARCH={arch}", f"-I{HOST_AIE_API}")


def aie_core_command(peano: Path, include: str | None, src_dir: Path, source: str,
                     out: str, device: str, defines: list[str] | None = None) -> list[str]:
    cmd = [str(peano / "bin" / "clang++"), "-O2", "-std=c++20", f"--target={aie_triple(device)}",
           "-DNDEBUG", *(defines or [])]
    if include:
        cmd.append(f"-I{include}")
    return [*cmd, f"-I{src_dir}", "-c", source, "-o", out]


def aiecc_command(aiecc: Path, peano: Path, tmpdir: Path, alloc_scheme: str) -> list[str]:
    """The aiecc invocation of mlir-aie's own examples, on the open Peano path (NPU_FACTS 3),
    with the buffer allocation scheme the checks placed the design under (`codegen.banks`):
    explicit, so aiecc neither warns nor falls back on its own."""
    return [
        str(aiecc), "--aie-generate-xclbin", "--aie-generate-npu-insts", "--no-xchesscc",
        "--no-xbridge", "--peano", str(peano), f"--xclbin-name={XCLBIN_NAME}",
        f"--npu-insts-name={INSTS_NAME}", f"--alloc-scheme={alloc_scheme}",
        f"--tmpdir={tmpdir}", DESIGN_NAME,
    ]


@dataclass
class BuildResult:
    """What a build produced and how each stage went."""

    artifact_dir: Path
    manifest: Manifest
    stages: list[tuple[str, str]] = field(default_factory=list)
    up_to_date: bool = False
    missing_line: str | None = None


class _Cache:
    """Content-addressed stage outputs under build/.cache/<stage>/<key>/."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get_or_make(self, stage: str, key: str, make: Callable[[Path], None],
                    force: bool = False) -> tuple[Path, bool]:
        final = self.entry(stage, key)
        if final.is_dir() and not force and _entry_intact(final):
            return final, True
        ensure_dir(final.parent, self.root.parent)  # a file where build/.cache/<stage> belongs
        with FileLock(str(final) + ".lock"):
            if final.is_dir() and not force and _entry_intact(final):
                return final, True
            sweep_entry_temps(final)
            clear(final)  # a stale entry, or whatever replaced it
            tmp = final.parent / f".tmp-{key[:16]}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                make(tmp)
                (tmp / ENTRY_SUMS).write_text(json.dumps(_entry_sums(tmp), sort_keys=True))
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final, False


class Build:
    """One kernel variant's build: keys computed up front, stages run only where needed."""

    def __init__(self, spec: KernelSpec, build_root: Path, *, target: str = "auto",
                 peano: str | None = None, toolchain: Toolchain | None = None,
                 log: Log | None = None, force: bool = False) -> None:
        if target not in TARGETS:
            raise BuildError(f"--target {target!r} is not one of: {', '.join(TARGETS)}")
        self.spec = spec
        self.root = build_root
        self.cache = _Cache(build_root / ".cache")
        claim(build_root)
        self.tc = toolchain or discover(peano, build_root / ".cache" / "tools.json")
        self.log: Log = log or (lambda stage, status: None)
        self.force = force
        self.artifact_dir = build_root / spec.name / spec.variant
        self.work_dir = build_root / ".work" / spec.name / spec.variant
        self.hw = self._decide_hw(target)
        if self.hw and spec.core_path == "vector" and not self.tc.mlir_aie_include:
            raise ToolchainError(aie_api_missing_line(spec.name))
        self.rendered: Rendered = render(spec)
        self.keys = self._keys()

    def _decide_hw(self, target: str) -> bool:
        missing = self.tc.missing_for_hw
        if target == "hw" and missing:
            raise ToolchainError(self.tc.hw_missing_line())
        return target == "hw" or (target == "auto" and not missing)

    @functools.cached_property
    def design(self) -> Design:
        """The rendered design as the checks (and the emulator) read it; parsed once a build."""
        from codegen.checks import read_design

        return read_design(self.rendered.files[DESIGN_NAME])

    @property
    def note(self) -> str | None:
        """Why this artifact has no xclbin, or None when it has one."""
        if self.hw:
            return None
        if self.tc.missing_for_hw:
            return self.tc.hw_missing_line()
        return "no xclbin: emulation-only build requested (--target emu)"

    def _keys(self) -> dict[str, str]:
        spec = self.spec
        cxx = require_cxx(self.tc)
        k: dict[str, str] = {}
        k["render"] = _hash("render", PIPELINE_VERSION, self.rendered.digest)
        k["check"] = _hash("check", k["render"], code_digest(CHECK_CODE))
        k["host-core"] = _hash("host-core", k["render"], cxx.identity, *HOST_FLAGS,
                               *host_core_flags(spec)[:-1], host_api_digest())
        if self.hw:
            assert self.tc.peano and self.tc.aiecc
            k["aie-core"] = _hash("aie-core", k["render"], self.tc.peano.identity,
                                  self.tc.mlir_aie_include or "", aie_triple(spec.device),
                                  *core_defines(spec))
            k["aiecc"] = _hash("aiecc", k["aie-core"], self.tc.aiecc.identity,
                               self.tc.peano.identity, spec.alloc_scheme(),
                               self.tc.bootgen.identity if self.tc.bootgen else "no bootgen")
            k["lint"] = _hash("lint", k["aiecc"], json.dumps(spec.params, sort_keys=True),
                              code_digest(LINT_CODE))
        k["manifest"] = _hash("manifest", PIPELINE_VERSION, *sorted(k.values()),
                              json.dumps(spec.params, sort_keys=True), str(self.hw))
        return k

    # -- the run ----------------------------------------------------------------------
    def run(self) -> BuildResult:
        self.log("validate", "ok")
        ensure_dir(self.artifact_dir.parent, self.root)
        with artifact_lock(self.artifact_dir):
            sweep(self.artifact_dir)  # an interrupted build's temporaries, unused under the lock
            current = None if self.force else self._current()
            if current is not None:
                return BuildResult(self.artifact_dir, current,
                                   [(s, "up to date") for s in STAGES], up_to_date=True,
                                   missing_line=self.note)
            try:
                return self._run_stages()
            except NpukitError:
                # Never leave an older artifact where the failed build's would have been.
                shutil.rmtree(self.artifact_dir, ignore_errors=True)
                raise

    def _current(self) -> Manifest | None:
        if not (self.artifact_dir / MANIFEST_NAME).is_file():
            return None
        try:
            m = load_manifest(self.artifact_dir)
        except NpukitError:
            return None
        return m if m.cache_key == self.keys["manifest"] else None

    def _stage(self, name: str, make: Callable[[Path], None]) -> Path:
        entry, hit = self.cache.get_or_make(name, self.keys[name], make, self.force)
        status = "cached" if hit else "built"
        self.log(name, status)
        self.stages.append((name, status))
        return entry

    def _run_stages(self) -> BuildResult:
        self.stages: list[tuple[str, str]] = [("validate", "ok")]
        spec, files = self.spec, self.rendered.files

        def do_render(out: Path) -> None:
            for name, text in files.items():
                (out / name).write_text(text)

        src = self._stage("render", do_render)
        def do_check(out: Path) -> None:
            from codegen.checks import check_model

            (out / "ok").write_text("\n".join(check_model(spec, self.design)) + "\n")

        self._stage("check", do_check)

        cxx = require_cxx(self.tc)
        lib = host_library_name(spec.name)

        def do_host(out: Path) -> None:
            host = compile_host_core(cxx.command, src, list(spec.CORE_SOURCES), out / lib,
                                     host_core_flags(spec))
            self._check_stack(host.frames)
            (out / "command.json").write_text(json.dumps(host.commands))
            (out / "stack.json").write_text(json.dumps(host.frames, sort_keys=True))

        host = self._stage("host-core", do_host)
        hw_dirs: dict[str, Path] = {}
        if self.hw:
            hw_dirs["core"] = self._stage("aie-core", lambda out: self._aie_core(src, out))
            hw_dirs["aiecc"] = self._stage(
                "aiecc", lambda out: self._aiecc(src, hw_dirs["core"], out))
            try:
                self._stage("lint", lambda out: self._lint(hw_dirs["aiecc"], out))
            except ArtifactError as e:
                # A bad xclbin or insts.bin must not stay cached as aiecc's answer.
                shutil.rmtree(hw_dirs["aiecc"], ignore_errors=True)
                raise ArtifactError(f"lint of aiecc's output failed: {e}") from None
        else:
            for name in ("aie-core", "aiecc", "lint"):
                self.log(name, "skipped")
                self.stages.append((name, "skipped"))
        manifest = self._assemble(src, host / lib, hw_dirs)
        self.log("manifest", "written")
        self.stages.append(("manifest", "written"))
        return BuildResult(self.artifact_dir, manifest, self.stages,
                           missing_line=self.note)

    def _core_build(self) -> dict[str, Any]:
        """Which code path the core was built with and what compiled it, for each target."""
        spec, tc = self.spec, self.tc
        vector = spec.core_path == "vector"
        cxx = require_cxx(tc)
        host = f"{shlex.join(cxx.command)} ({cxx.version})"
        if vector:
            host += " with npukit's host AIE API subset"
        arch = aie_arch(spec.device)
        if self.hw:
            assert tc.peano
            aie = f"Peano {tc.peano.version} --target={aie_triple(spec.device)}"
            if vector:
                aie += f" with mlir-aie's aie_api headers ({tc.mlir_aie_include})"
        elif tc.peano is None:
            aie = f"not compiled for {arch}: Peano missing"
        elif tc.aiecc is None:
            aie = f"not compiled for {arch}: aiecc (mlir-aie) missing"
        else:
            aie = f"not compiled for {arch}: emulation-only build requested (--target emu)"
        return {"path": spec.core_path, "host": host, "aie": aie}

    def _check_stack(self, frames: dict[str, int]) -> None:
        """The core source's frames, all nested (a safe bound without a call graph) plus a
        margin for library calls, fit the core's stack."""
        stacks = [c.stack_size for c in self.design.cores if c.stack_size is not None]
        need = sum(frames.values()) + CALL_MARGIN
        if stacks and need > min(stacks):
            listed = ", ".join(f"{name} {size:,}" for name, size in sorted(frames.items()))
            raise BuildError(
                f"host-core: the core code's stack frames ({listed}; -fstack-usage) + "
                f"{CALL_MARGIN} for calls need {need:,} bytes, but the design gives its core "
                f"{min(stacks):,} (stack_size); raise {self.spec.name}'s frame estimate"
            )

    def _aie_core(self, src: Path, out: Path) -> None:
        assert self.tc.peano
        spec = self.spec
        if len(spec.CORE_SOURCES) != 1:
            raise BuildError(f"{spec.name}: one core source per object is supported")
        cmd = aie_core_command(Path(self.tc.peano.path), self.tc.mlir_aie_include, src,
                               str(src / spec.CORE_SOURCES[0]), str(out / spec.object_name),
                               spec.device, core_defines(spec))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not (out / spec.object_name).is_file():
            raise BuildError(f"aie-core: Peano failed (exit {proc.returncode}):\n"
                             f"{proc.stderr.strip()}\ncommand: {' '.join(cmd)}")

    def _aiecc(self, src: Path, core: Path, out: Path) -> None:
        assert self.tc.aiecc and self.tc.peano
        work = self.work_dir / "aiecc"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.copy2(src / DESIGN_NAME, work / DESIGN_NAME)
        shutil.copy2(core / self.spec.object_name, work / self.spec.object_name)
        # aiecc finds link_with objects in its current directory first (NPU_FACTS 3).
        cmd = aiecc_command(Path(self.tc.aiecc.path), Path(self.tc.peano.path),
                            work / "aie.mlir.prj", self.spec.alloc_scheme())
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        (work / "aiecc.log").write_text(proc.stdout + proc.stderr)
        produced = [work / XCLBIN_NAME, work / INSTS_NAME]
        if proc.returncode != 0 or not all(p.is_file() for p in produced):
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
            raise BuildError(
                f"aiecc failed (exit {proc.returncode}); its work directory is {work} "
                f"(log: {work / 'aiecc.log'}); no xclbin was kept:\n{tail}"
            )
        for p in produced:
            shutil.copy2(p, out / p.name)
        (out / "command.json").write_text(json.dumps(cmd))

    def _lint(self, aiecc_out: Path, out: Path) -> None:
        spec = self.spec
        buffers = spec.buffers()
        lint_xclbin(aiecc_out / XCLBIN_NAME, n_data_buffers=len(buffers), device=spec.device)
        info = lint_insts(aiecc_out / INSTS_NAME, device=spec.device,
                          bound_args=[b.arg_index for b in buffers])
        (out / "insts.json").write_text(json.dumps({"n_words": info.n_words}))

    def _assemble(self, src: Path, host_lib: Path, hw: dict[str, Path]) -> Manifest:
        spec = self.spec
        tmp = self.artifact_dir.parent / f".{spec.variant}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        roles: dict[str, str] = {}
        for name in sorted(self.rendered.files):
            shutil.copy2(src / name, tmp / name)
            roles[name] = "design" if name == DESIGN_NAME else "core_source"
        shutil.copy2(host_lib, tmp / host_lib.name)
        roles[host_lib.name] = "host_core"
        n_words = None
        if hw:
            shutil.copy2(hw["core"] / spec.object_name, tmp / spec.object_name)
            roles[spec.object_name] = "core_object"
            for name, role in ((XCLBIN_NAME, "xclbin"), (INSTS_NAME, "insts")):
                shutil.copy2(hw["aiecc"] / name, tmp / name)
                roles[name] = role
            n_words = (tmp / INSTS_NAME).stat().st_size // 4
        manifest = Manifest(
            kernel=spec.name,
            variant=spec.variant,
            device=spec.device,
            params=dict(spec.params),
            buffers=spec.buffers(),
            files={name: file_entry(tmp / name, role) for name, role in roles.items()},
            emulation_only=not hw,
            core_symbols=list(spec.CORE_SYMBOLS),
            host_libraries={spec.object_name: host_lib.name},
            n_insts_words=n_words,
            alloc_scheme=spec.alloc_scheme(),
            tools=self.tc.describe(),
            core_build=self._core_build(),
            source_hashes={"templates": template_digest(spec), "rendered": self.rendered.digest,
                           "host_aie_api": host_api_digest(),
                           **{f"param:{k}": v for k, v in spec.param_files().items()}},
            cache_key=self.keys["manifest"],
            notes=[*spec.notes(), *([self.note] if self.note else [])],
        )
        write_manifest(tmp, manifest)
        old = self.artifact_dir.parent / f".{spec.variant}.old-{os.getpid()}"
        if self.artifact_dir.exists() or self.artifact_dir.is_symlink():
            os.rename(self.artifact_dir, old)
        os.rename(tmp, self.artifact_dir)
        clear(old)
        return manifest


def build(spec: KernelSpec, build_root: Path, **kwargs: object) -> BuildResult:
    """Build one kernel variant into build_root/<kernel>/<variant>/."""
    return Build(spec, build_root, **kwargs).run()  # type: ignore[arg-type]

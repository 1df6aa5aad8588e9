"""npukit's front door: `invoke --list` is the menu. Logic lives in codegen/ and runtime/."""

from __future__ import annotations

import builtins
import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    """Ctrl-C: one line and the shell's status for SIGINT (128 + 2), never a traceback.

    Raised as SystemExit, so `finally` blocks still remove temporary directories, locks and
    child processes, and invoke (which turns KeyboardInterrupt into a silent exit 1) lets it by.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C during cleanup stays quiet
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


# First, before the imports below: a Ctrl-C from here on is one line, whatever is running.
signal.signal(signal.SIGINT, _interrupted)

import functools
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Argument, Exit, Task, task
from rich.console import Console

ROOT = Path(__file__).resolve().parent
console = Console()


class _RepeatableFlag(Argument):
    """A repeatable flag (`-p a=1 -p b=2`) that, unlike invoke's list flags, must have a value.

    invoke starts a list flag's raw value at [] rather than None, so its "needed value and was
    not given one" check never fires and a bare `-p` silently means no parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raw_value = None

    def __repr__(self) -> str:  # how invoke's parse errors name the flag
        return f"'--{self.name}'"


class _Task(Task):
    """An invoke task whose repeatable flags refuse to be given without a value."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        return [
            _RepeatableFlag(names=a.names, kind=builtins.list, default=a.default, help=a.help,
                            attr_name=a.attr_name)
            if a.kind is builtins.list else a  # `list` is a task in this module
            for a in super().get_arguments(ignore_unknown_help)
        ]


def _count(flag: str, text: Any, minimum: int, maximum: int = 1_000_000) -> int:
    """A whole-number flag, checked here so a typo is one line rather than invoke's traceback."""
    from runtime.errors import NpukitError

    try:
        value = int(str(text))
    except ValueError:
        raise NpukitError(f"--{flag} {text!r} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise NpukitError(f"--{flag} {value} is outside {minimum}..{maximum}")
    return value


def _kernel_name(kernel: str, task_name: str) -> str:
    """The kernel positional; invoke hands a required positional the next token, even --help."""
    from codegen.spec import SpecError

    if kernel.startswith("-"):
        raise SpecError(f"{kernel!r} is not a kernel name; for the task's flags, run "
                        f"`invoke --help {task_name}`")
    return kernel


def _output_file(flag: str, value: str) -> Path | None:
    """A file a task will write; its directory is made now, so a bad path fails before the work,
    in one line naming the flag."""
    from runtime.errors import NpukitError

    if not value:
        return None
    path = Path(value)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        shown = value if len(value) <= 80 else f"{value[:40]}...{value[-30:]}"
        raise NpukitError(f"--{flag} {shown}: {e.strerror or e}; give a writable path") from None
    return path


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become one red line and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from runtime.errors import NpukitError

        try:
            return fn(*args, **kwargs)
        except NpukitError as e:
            console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise Exit(code=1) from None
        except OSError as e:  # a path the user gave that cannot be written or read
            where = f"{e.filename}: " if e.filename else ""
            console.print(f"[red]error:[/red] {where}{e.strerror or e}", highlight=False,
                          soft_wrap=True)
            raise Exit(code=1) from None

    return wrapper


@task
@_friendly
def list(c):
    """List the kernels and their parameters."""
    from codegen.cli import list_kernels

    list_kernels(console)


@task(
    klass=_Task,
    iterable=["param"],
    positional=["kernel"],
    help={
        "kernel": "kernel to build (see `invoke list`)",
        "param": "key=value parameter, repeatable (e.g. --param tiles=4)",
        "target": "auto (xclbin when the toolchain is present), hw (require it) or emu",
        "peano": "Peano (llvm-aie) install directory",
        "force": "rerun every stage, ignoring the cache",
    },
)
@_friendly
def build(c, kernel, param=None, target="auto", peano="", force=False):
    """Render, check and build a kernel into build/<kernel>/<variant>/ (`invoke build-all`: all)."""
    from codegen.cli import build_kernels, parse_params

    build_kernels([_kernel_name(kernel, "build")], parse_params(param or []), target=target,
                  peano=peano or None, force=force, console=console)


@task(
    help={
        "target": "auto (xclbin when the toolchain is present), hw (require it) or emu",
        "peano": "Peano (llvm-aie) install directory",
        "force": "rerun every stage, ignoring the cache",
    },
)
@_friendly
def build_all(c, target="auto", peano="", force=False):
    """Build every kernel with its default parameters, with progress."""
    from codegen.cli import build_kernels
    from codegen.kernels import KERNELS

    build_kernels(sorted(KERNELS), {}, target=target, peano=peano or None, force=force,
                  console=console)


@task(
    klass=_Task,
    iterable=["param"],
    help={
        "kernel": "kernel whose design to cost (see `invoke list`)",
        "param": "key=value parameter of --kernel, repeatable (e.g. --param M=1536)",
        "model": "a built model artifact directory (build/models/<name>): every op, per block "
                 "and per window",
    },
)
@_friendly
def cost(c, kernel="", param=None, model=""):
    """The cost model: bytes per DMA channel, MACs per core, projected time on npu1 and npu2."""
    from codegen.cli import cost_report, model_cost_report, parse_params
    from runtime.errors import NpukitError

    if bool(kernel) == bool(model):
        raise NpukitError("give one of --kernel K [-p key=value ...] (one design) or --model "
                          "DIR (a built model artifact, build/models/<name>)")
    if model:
        if param:
            raise NpukitError("--param applies to --kernel; a model's ops take their own")
        model_cost_report(model, console)
        return
    cost_report(_kernel_name(kernel, "cost"), parse_params(param or []), console)


@task(help={"peano": "Peano (llvm-aie) install directory"})
@_friendly
def doctor(c, peano=""):
    """Show which tools are installed, which are missing, and how to install them."""
    from codegen.cli import doctor as run_doctor

    run_doctor(console, peano or None)


@task(help={"dist": "remove dist/ too"})
@_friendly
def clean(c, dist=False):
    """Remove build outputs (only directories npukit made: they hold its marker)."""
    from codegen.cli import clean as run_clean

    for path in run_clean(dist=dist):
        console.print(f"removed {path.name}/")


@task(help={"args": "extra pytest arguments, e.g. -k attention"})
def test(c, args=""):
    """Run the test suite (pytest)."""
    cmd = [sys.executable, "-m", "pytest", *shlex.split(args)]
    # pytest answers Ctrl-C itself (its summary, exit 2): this process only waits for it.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    code = subprocess.call(cmd, cwd=ROOT)
    if code:
        raise Exit(code=code)


@task(
    help={
        "kernel": "verify only this kernel's builds (default: every build)",
        "backend": "auto (NPU when present, else the emulator), xrt or emu",
        "seeds": "seeded random inputs per build (at least 2), besides the edge cases",
        "iterations": "timed calls per build",
        "report": "write a JSON report here",
        "junit": "write a JUnit XML file here",
        "strict": "fail a build whose int8 outputs saturate above the limit (default: warn)",
    },
)
@_friendly
def test_hw(c, kernel="", backend="auto", seeds="4", iterations="50", report="", junit="",
            strict=False):
    """Verify every build bit for bit against its golden model, on the NPU or the emulator."""
    from codegen.cli import BUILD_ROOT
    from codegen.testhw import run_test_hw

    n_seeds, n_iterations = _count("seeds", seeds, 2, 1000), _count("iterations", iterations, 0)
    code = run_test_hw(BUILD_ROOT, [kernel] if kernel else None, backend, n_seeds, n_iterations,
                       _output_file("report", report), _output_file("junit", junit),
                       isolate=True, strict=strict)
    if code:
        raise Exit(code=code)


@task(help={"calls": "timed calls per runtime pattern (the emulator bench uses a tenth)"})
@_friendly
def bench(c, calls="3000"):
    """Benchmarks as ratios measured in one run: runtime host overhead, emulator cost."""
    from bench.emulator_cost import main as emulator_cost
    from bench.runtime_overhead import main as runtime_overhead

    n = _count("calls", calls, 100)
    code = runtime_overhead(["--calls", str(n)]) or emulator_cost(["--calls", str(n // 10)])
    if code:
        raise Exit(code=code)


@task(help={"only": "comma-separated mutant ids or areas (keys, numerics, accuracy, manifest, "
                    "bundles, xrt)", "list_mutants": "list the mutants instead of running them"})
@_friendly
def mutate(c, only="", list_mutants=False):
    """The mutation sweep: each hand-picked bug applied to a copy of the tree, its tests run."""
    from devtools.mutation import main as sweep

    code = sweep([*(["--only", only] if only else []), *(["--list"] if list_mutants else [])])
    if code:
        raise Exit(code=code)


@task(
    help={
        "kernel": "publish only this kernel's builds (default: every build)",
        "version": "bundle version (default: project version + git revision, e.g. 0.1.0+g1a2b3c4)",
        "out": "directory for the bundles and SHA256SUMS",
        "allow_unverified": "also publish emulation-only or untested builds, marked unverified",
    },
)
@_friendly
def publish(c, kernel="", version="", out="dist", allow_unverified=False):
    """Bundle NPU-verified builds into dist/<kernel>-<variant>-<version>.tar.gz + SHA256SUMS."""
    from codegen.cli import BUILD_ROOT
    from codegen.publish import publish as run_publish

    for b in run_publish([kernel] if kernel else [], version or None, ROOT / out,
                         allow_unverified=allow_unverified, build_root=BUILD_ROOT):
        note = "" if b.status == "verified" else f" [yellow]unverified: {b.reason}[/yellow]"
        console.print(f"{b.path}  sha256 {b.sha256[:16]}...{note}", highlight=False)


@task(
    positional=["path"],
    help={
        "path": "the bundle (.tar.gz); its SHA256SUMS is checked when it sits beside it",
        "dest": "also extract the verified artifact directory here (must not exist)",
        "allow_unverified": "accept an intact bundle that was not verified on an NPU",
    },
)
@_friendly
def verify_bundle(c, path, dest="", allow_unverified=False):
    """Check a bundle: SHA256SUMS, manifest, file hashes, xclbin/insts lint, safe extraction."""
    from runtime.bundle import verify_bundle as run_verify

    info = run_verify(path, dest or None, allow_unverified=allow_unverified)
    where = f"; extracted to {info.directory}" if info.directory else ""
    what = f"{path}: {info.manifest.kernel}/{info.manifest.variant} {info.version}"
    if info.status != "verified":
        reason = info.info["verification"].get("reason") or "no passing NPU report"
        console.print(f"[yellow]intact, {info.status}[/yellow] {what} ({reason}){where}",
                      highlight=False, soft_wrap=True)
        return
    console.print(f"[green]ok[/green] {what}, verified{where}", highlight=False, soft_wrap=True)


@task(
    positional=["audio"],
    iterable=["calibrate"],
    help={
        "audio": "a 16 kHz mono 16-bit WAV file (one 30 s window is encoded: padded or trimmed)",
        "checkpoint": "an openai-whisper .pt checkpoint (nothing is downloaded)",
        "backend": "auto (the NPU when present, else the emulator), xrt or emu",
        "out": "write the features (float32 [n_audio_ctx, n_audio_state]) to this .npy",
        "report": "print the calibration, per-op and per-tensor accuracy reports",
        "calibrate": "a WAV clip to calibrate on, repeatable (default: espeak-ng speech)",
        "percentile": "calibration percentile of |x| per tensor (100 = the maximum)",
    },
)
@_friendly
def encode(c, audio, checkpoint="", backend="auto", out="", report=False, calibrate=None,
           percentile="100"):
    """Encode a clip with a Whisper checkpoint's encoder on the NPU or the emulator."""
    from codegen.cli import BUILD_ROOT
    from codegen.models.cli import encode as run_encode
    from runtime.errors import NpukitError

    if not checkpoint:
        raise NpukitError("give the checkpoint: --checkpoint PATH.pt (openai-whisper format)")
    try:
        pct = float(percentile)
    except ValueError:
        raise NpukitError(f"--percentile {percentile!r} is not a number") from None
    run_encode(audio, checkpoint, backend=backend, out=out, report=report,
               calibrate=calibrate or [], percentile=pct, build_root=BUILD_ROOT,
               console=console)

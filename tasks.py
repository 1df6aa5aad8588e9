"""npukit's front door: `invoke --list` is the menu. Logic lives in codegen/ and runtime/."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Argument, Exit, Task, task
from rich.console import Console

ROOT = Path(__file__).resolve().parent
console = Console()
ALL = "--all"


class _AllFlag(Argument):
    """`--all` stands in for the kernel positional, which invoke otherwise requires."""

    def __init__(self, kernel: Argument, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kernel = kernel

    def set_value(self, value: Any, cast: bool = True) -> None:
        super().set_value(value, cast)
        if self.value and self._kernel.value is None:
            self._kernel.set_value(ALL)


class _KernelTask(Task):
    """A task taking `<kernel>` or `--all`."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = super().get_arguments(ignore_unknown_help)
        kernel = next(a for a in args if a.name == "kernel")
        return [
            _AllFlag(kernel, names=a.names, kind=bool, default=False, help=a.help)
            if a.name == "all" else a
            for a in args
        ]


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become one red line and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from runtime.errors import NpukitError

        try:
            return fn(*args, **kwargs)
        except NpukitError as e:
            console.print(f"[red]error:[/red] {e}", highlight=False)
            raise Exit(code=1) from None

    return wrapper


@task
@_friendly
def list(c):
    """List the kernels and their parameters."""
    from codegen.cli import list_kernels

    list_kernels(console)


@task(
    klass=_KernelTask,
    iterable=["param"],
    positional=["kernel"],
    help={
        "kernel": "kernel to build (see `invoke list`)",
        "param": "key=value parameter, repeatable (e.g. --param tiles=4)",
        "target": "auto (xclbin when the toolchain is present), hw (require it) or emu",
        "all": "build every kernel with its default parameters",
        "peano": "Peano (llvm-aie) install directory",
        "force": "rerun every stage, ignoring the cache",
    },
)
@_friendly
def build(c, kernel=None, param=None, target="auto", all=False, peano="", force=False):
    """Render, check and build a kernel into build/<kernel>/<variant>/."""
    from codegen.cli import build_kernels, parse_params
    from codegen.kernels import KERNELS
    from codegen.spec import SpecError

    if all and kernel != ALL:
        raise SpecError("give a kernel or --all, not both")
    kernels = sorted(KERNELS) if all else [kernel]
    build_kernels(kernels, parse_params(param or []), target=target, peano=peano or None,
                  force=force, console=console)


@task(help={"peano": "Peano (llvm-aie) install directory"})
@_friendly
def doctor(c, peano=""):
    """Show which tools are installed, which are missing, and how to install them."""
    from codegen.cli import doctor as run_doctor

    run_doctor(console, peano or None)


@task(help={"dist": "remove dist/ too"})
def clean(c, dist=False):
    """Remove build outputs."""
    from codegen.cli import clean as run_clean

    for path in run_clean(dist=dist):
        console.print(f"removed {path.name}/")


@task(help={"args": "extra pytest arguments, e.g. -k attention"})
def test(c, args=""):
    """Run the test suite (pytest)."""
    cmd = [sys.executable, "-m", "pytest", *args.split()]
    code = subprocess.call(cmd, cwd=ROOT)
    if code:
        raise Exit(code=code)

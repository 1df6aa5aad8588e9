"""What the invoke tasks do, as plain functions a test can call: list, build, doctor, clean."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from codegen import buildroot
from codegen.cost import DEVICES, PATHS, PDI_SWITCH, Projection, project
from codegen.kernels import KERNELS, get_kernel
from codegen.models.cost import BUILT, ModelCost, model_cost
from codegen.pipeline import Build, BuildResult
from codegen.spec import SpecError
from codegen.toolchain import discover, doctor_rows

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where builds go: $NPUKIT_BUILD_DIR (e.g. a scratch disk, or a test's directory), else build/.
BUILD_ROOT = Path(os.environ.get("NPUKIT_BUILD_DIR") or PROJECT_ROOT / "build")
DIST_ROOT = PROJECT_ROOT / "dist"


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """`key=value` strings into a dict; a malformed pair is a SpecError naming it."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SpecError(f"--param {pair!r} is not key=value (e.g. --param tiles=4)")
        if key.strip() in params:
            raise SpecError(f"--param {key.strip()} is given twice; give it once")
        params[key.strip()] = value.strip()
    return params


def list_kernels(console: Console) -> None:
    """Print every kernel with its parameters, defaults and limits."""
    for name, cls in sorted(KERNELS.items()):
        table = Table(title=f"{name}: {cls.summary}", title_justify="left")
        for col in ("parameter", "type", "default", "limits", "help"):
            table.add_column(col)
        for p in cls.PARAMS:
            limits = []
            if p.minimum is not None or p.maximum is not None:
                limits.append(f"{p.minimum}..{p.maximum}")
            if p.multiple_of:
                limits.append(f"multiple of {p.multiple_of}")
            if p.choices:
                limits.append("|".join(map(str, p.choices)))
            table.add_row(p.name, p.type.__name__, str(p.default), ", ".join(limits), p.help)
        console.print(table)


def build_kernels(kernels: list[str], params: dict[str, str], *, target: str = "auto",
                  peano: str | None = None, build_root: Path = BUILD_ROOT,
                  force: bool = False, console: Console | None = None) -> list[BuildResult]:
    """Build each kernel (with `params` applied to a single kernel) and report every stage."""
    console = console or Console()
    if params and len(kernels) != 1:
        raise SpecError("--param applies to one kernel; name it instead of --all")
    specs = [get_kernel(k)(params) for k in kernels]
    buildroot.claim(build_root)
    tc = discover(peano, build_root / ".cache" / "tools.json")
    results = []
    with Progress(console=console, transient=True, disable=len(specs) < 2) as progress:
        task = progress.add_task("building", total=len(specs))
        for spec in specs:
            progress.update(task, description=f"building {spec.name}/{spec.variant}")

            def log(stage: str, status: str, _name: str = spec.name) -> None:
                console.print(f"  [dim]{_name}[/dim] {stage:<9} {status}", highlight=False)

            result = Build(spec, build_root, target=target, toolchain=tc, log=log,
                           force=force).run()
            results.append(result)
            kind = "emulation-only" if result.manifest.emulation_only else "hardware"
            state = "up to date" if result.up_to_date else "built"
            console.print(f"[green]{spec.name}[/green] {state}: "
                          f"{_rel(result.artifact_dir)} ({kind} artifact)")
            for note in spec.notes():
                console.print(f"[yellow]{spec.name}: {note}[/yellow]", soft_wrap=True)
            progress.advance(task)
    for note in sorted({r.missing_line for r in results if r.missing_line}):
        console.print(f"[yellow]{note}[/yellow]", soft_wrap=True)
    return results


def cost_report(kernel: str, params: dict[str, str], console: Console) -> list[Projection]:
    """Print one design's workload and its projections on npu1 and npu2, scalar and vector."""
    spec = get_kernel(kernel)(params)
    w = spec.workload()
    console.print(f"[bold]{spec.name}/{spec.variant}[/bold] on {w.device}, {w.cores} core(s), "
                  f"{w.path} path built; per invocation: {w.total_macs:,} MACs, {w.bds} shim "
                  f"BDs, {w.invocations} invocation(s)", highlight=False)
    channels = Table(title="bytes per DMA channel per invocation", title_justify="left")
    channels.add_column("channel")
    channels.add_column("bytes", justify="right")
    for name, nbytes in w.channels().items():
        channels.add_row(name, f"{nbytes:,}")
    console.print(channels)
    table = Table(title="projected time (cost model, not a measurement)", title_justify="left")
    for col in ("device", "path", "projected µs", "TOPS", "compute µs", "DMA µs",
                "dispatch µs", "bound by"):
        table.add_column(col)
    projections = []
    for family in DEVICES:
        for path in PATHS:
            # A spec with a `path` parameter has path-dependent core work (the vector path's
            # requantisation); others are projected with only the MAC rate changed.
            wp = (get_kernel(kernel)({**params, "path": path}).workload()
                  if "path" in spec.params else w)
            p = project(wp, family, path)
            projections.append(p)
            table.add_row(family, path, f"{p.seconds * 1e6:,.1f}", f"{p.tops:.2f}",
                          f"{p.compute_s * 1e6:,.1f}", f"{p.dma_s * 1e6:,.1f}",
                          f"{p.dispatch_s * 1e6:,.1f}", p.bound)
    console.print(table)
    seen = Table(title="assumptions", title_justify="left")
    for col in ("device", "assumption", "value", "source"):
        seen.add_column(col)
    for family, model in DEVICES.items():
        for a in {a.name: a for path in PATHS for a in model.assumptions(path)}.values():
            seen.add_row(family, a.name, f"{a.value:g} {a.unit}", a.source)
    console.print(seen)
    for note in w.notes:
        console.print(note, highlight=False)
    return projections


def model_cost_report(directory: str | Path, console: Console) -> ModelCost:
    """Print a built model's projection: per op, per block and for the window, with the
    per-call overheads and every assumption's source."""
    cost = model_cost(directory)
    dims = ", ".join(f"{k} {v}" for k, v in cost.dims.items())
    console.print(f"[bold]{cost.directory}[/bold]: {len(cost.kernel_ops)} kernel ops, "
                  f"{len(cost.host_ops)} host ops, {cost.contexts} hardware context(s); "
                  f"{dims}", highlight=False, soft_wrap=True)
    families = ", ".join(cost.families) or "-"
    ops = Table(title=f"projected time per op on {families} (cost model, not a measurement; "
                "kernel ops include their dispatch)", title_justify="left")
    for col in ("op", "kernel", "shape", "as built µs", "vector µs", "scalar µs", "bound"):
        ops.add_column(col, justify="right" if "µs" in col else "left")
    for o in cost.ops:
        p = o.projections
        if o.kind == "host":
            ops.add_row(o.name, f"host {o.fn}", o.shape, "-", "-", "-", "CPU")
        elif not p:
            ops.add_row(o.name, o.fn, o.shape, "-", "-", "-", "no cost model")
        else:
            ops.add_row(o.name, o.fn, o.shape, f"{o.seconds(BUILT) * 1e6:,.1f} ({o.built})",
                        f"{p['vector'].seconds * 1e6:,.1f}", f"{p['scalar'].seconds * 1e6:,.1f}",
                        p[o.built].bound.split(" (")[0])
    console.print(ops)
    blocks = Table(title="per group (projected)", title_justify="left")
    for col in ("group", "kernel ops", "host ops", "as built ms", "vector ms", "scalar ms"):
        blocks.add_column(col, justify="left" if col == "group" else "right")
    for group, members in cost.groups().items():
        kernels = [o for o in members if o.kind == "kernel"]
        blocks.add_row(group, str(len(kernels)), str(len(members) - len(kernels)),
                       f"{cost.seconds(BUILT, members) * 1e3:,.2f}",
                       f"{cost.seconds('vector', members) * 1e3:,.2f}",
                       f"{cost.seconds('scalar', members) * 1e3:,.2f}")
    console.print(blocks)
    switch = f"{cost.switches} x {PDI_SWITCH.value * 1e3:g} ms = {cost.switch_s() * 1e3:,.1f} ms"
    console.print(
        f"window (projected): {len(cost.kernel_ops)} kernel calls, "
        f"{cost.dispatch_s() * 1e3:,.2f} ms of it dispatch; {cost.switches} design (PDI) "
        f"switches between consecutive calls of different variants ({switch}, assumed: unknown "
        f"inside one context); {len(cost.host_ops)} host ops on the CPU, not projected",
        highlight=False, soft_wrap=True)
    for path in (BUILT, "vector", "scalar"):
        label = "each op as built" if path == BUILT else f"{path} path"
        console.print(f"window, {label}: {cost.window(path, False) * 1e3:,.1f} ms without "
                      f"PDI switches, {cost.window(path, True) * 1e3:,.1f} ms with them",
                      highlight=False)
    for o in cost.kernel_ops:
        if o.note:
            console.print(f"{o.name}: {o.note}", highlight=False, soft_wrap=True)
    if not cost.complete:
        console.print("[yellow]totals leave out the kernel ops without a cost model[/yellow]")
    seen = Table(title="assumptions", title_justify="left")
    for col in ("device", "assumption", "value", "source"):
        seen.add_column(col)
    for family in cost.families:
        for a in {a.name: a for path in PATHS for a in DEVICES[family].assumptions(path)}.values():
            seen.add_row(family, a.name, f"{a.value:g} {a.unit}", a.source)
    seen.add_row("all", PDI_SWITCH.name, f"{PDI_SWITCH.value:g} {PDI_SWITCH.unit}",
                 PDI_SWITCH.source)
    console.print(seen)
    return cost


def doctor(console: Console, peano: str | None = None) -> bool:
    """Print what is installed and what is missing; True when every build target is possible."""
    buildroot.claim(BUILD_ROOT)
    tc = discover(peano, BUILD_ROOT / ".cache" / "tools.json")
    table = Table(title="npukit doctor", title_justify="left")
    for col in ("tool", "status", "where / how to get it"):
        table.add_column(col)
    for name, status, detail in doctor_rows(tc):
        colour = "green" if status == "found" else "yellow"
        table.add_row(name, f"[{colour}]{status}[/{colour}]", detail)
    console.print(table)
    if tc.missing_for_hw:
        console.print(f"[yellow]{tc.hw_missing_line()}[/yellow]")
        console.print("`invoke build` still renders, checks and builds emulation artifacts.")
    return not tc.missing_for_hw


def clean(build_root: Path = BUILD_ROOT, dist: bool = False,
          dist_root: Path = DIST_ROOT) -> list[Path]:
    """Remove the build directory (and dist/ with `dist`), each only if npukit made it;
    returns what was removed."""
    return [path for path in [build_root] + ([dist_root] if dist else [])
            if buildroot.clean(path)]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)

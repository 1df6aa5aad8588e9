"""`invoke test-hw`: verify every built artifact bit for bit against its golden model, and time it.

"Verified" (KERNELS.md) means the backend returns the golden model's bytes for several seeded
inputs and the edge cases, with outputs that are neither constant nor independent of the input
(NPU_FACTS 6.1: validation that cannot fail is the commonest mistake).

Every int8 kernel saturates silently, so a calibration that pins most outputs to -128/127 would
still verify bit for bit: test-hw reports each int8 output's saturated fraction on the seeded
realistic inputs and warns above SATURATION_LIMIT (with `strict`, fails the build instead).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import signal
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from codegen.buildroot import list_artifacts
from codegen.publish import write_artifact_report
from runtime.atomic import write_atomic
from runtime.errors import ArtifactError, NpukitError
from runtime.kernel import NpuKernel
from runtime.manifest import MANIFEST_NAME, load_manifest, sha256_file

#: share of an int8 output at -128 or 127 on realistic inputs above which test-hw warns (one
#: output in 20: a calibrated int8 tensor clips a few in a thousand)
SATURATION_LIMIT = 0.05


@dataclass
class Mismatch:
    """Where one output differs from the golden model."""

    output: str
    count: int
    size: int
    first_index: list[int]
    got: float
    want: float
    max_abs_diff: float


@dataclass
class Case:
    """One input set: its name, and the outputs that disagreed (none when it passed)."""

    name: str
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass
class Result:
    """The verdict on one artifact directory."""

    kernel: str
    variant: str
    path: str
    backend: str = ""
    cases: list[Case] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # constant / input-independent outputs
    warnings: list[str] = field(default_factory=list)  # e.g. outputs that mostly saturate
    saturation: dict[str, float] = field(default_factory=dict)  # int8 output -> share at rails
    error: str = ""
    timing: dict[str, float] = field(default_factory=dict)
    # The cost model's projected NPU time for this design (codegen/cost.py), never a measurement.
    projection: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    manifest_sha256: str = ""  # the manifest.json loaded to test it ("" if none could be read)

    @property
    def passed(self) -> bool:
        return not self.error and not self.flags and bool(self.cases) and all(
            c.passed for c in self.cases
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for case, c in zip(data["cases"], self.cases, strict=True):
            case["passed"] = c.passed
        return {**data, "passed": self.passed, "reason": self.reason()}

    def reason(self) -> str:
        """One line saying why it failed (empty when it passed)."""
        if self.error:
            return self.error
        if not self.cases:
            return "no cases were run"
        failed = [c for c in self.cases if not c.passed]
        parts = list(self.flags)
        if failed:
            m = failed[0].mismatches[0]
            parts.append(
                f"{len(failed)}/{len(self.cases)} cases differ from the golden model; first: "
                f"{failed[0].name}, output {m.output!r}: {m.count}/{m.size} elements, first at "
                f"{tuple(m.first_index)} (got {m.got:g}, want {m.want:g}), "
                f"max abs diff {m.max_abs_diff:g}"
            )
        return "; ".join(parts)


def compare(name: str, got: np.ndarray, want: np.ndarray) -> Mismatch | None:
    """None if `got` has `want`'s dtype, shape and bytes; else where and how much they differ."""
    want = np.asarray(want)
    if got.dtype != want.dtype or got.shape != want.shape:
        return Mismatch(name, want.size, want.size, [], float("nan"), float("nan"), float("nan"))
    bits = f"u{got.dtype.itemsize}"
    differ = got.view(bits) != want.view(bits)  # bitwise, so NaN == NaN and -0 != +0
    count = int(differ.sum())
    if not count:
        return None
    first = [int(i) for i in np.unravel_index(int(np.argmax(differ)), differ.shape)]
    wide = np.float64 if got.dtype.kind == "f" else np.int64
    diff = np.abs(got.astype(wide) - want.astype(wide))
    return Mismatch(
        name, count, int(got.size), first, float(got[tuple(first)]), float(want[tuple(first)]),
        float(np.nanmax(diff)),
    )


def input_flags(
    cases: list[tuple[str, list[np.ndarray], list[np.ndarray]]], output_names: list[str]
) -> list[str]:
    """Flag outputs that are constant, or equal for inputs whose golden outputs differ.

    `cases` holds (name, outputs, golden outputs). A golden output that is itself constant (or
    itself repeats) excuses the kernel's, so a correct kernel is never flagged.
    """
    flags = []
    for k, out_name in enumerate(output_names):
        for name, got, want in cases:
            if _is_constant(got[k]) and not _is_constant(want[k]):
                flags.append(f"output {out_name!r} is constant (all {got[k].flat[0]} for {name})")
                break
        seen: dict[bytes, tuple[str, bytes]] = {}
        for name, got, want in cases:
            key, golden = got[k].tobytes(), want[k].tobytes()
            if key in seen and seen[key][1] != golden:
                flags.append(
                    f"output {out_name!r} does not depend on the input "
                    f"({seen[key][0]} and {name} give identical outputs, the golden model differs)"
                )
                break
            seen.setdefault(key, (name, golden))
    return flags


def _is_constant(a: np.ndarray) -> bool:
    flat = a.reshape(-1)
    return flat.size > 1 and bool((flat == flat[0]).all())


def saturation(outputs: list[list[np.ndarray]], names: list[str]) -> dict[str, float]:
    """Share of each int8 output's elements at -128 or 127, over the given cases' outputs."""
    shares = {}
    for k, name in enumerate(names):
        arrays = [case[k] for case in outputs if case[k].dtype == np.int8]
        if arrays:
            flat = np.concatenate([a.reshape(-1) for a in arrays])
            shares[name] = float(np.mean((flat == -128) | (flat == 127)))
    return shares


def saturation_problems(shares: dict[str, float]) -> list[str]:
    return [f"output {name!r} saturates: {share:.1%} of its values are -128 or 127 on realistic "
            f"inputs (limit {SATURATION_LIMIT:.0%}); the scales clip, recalibrate them"
            for name, share in shares.items() if share > SATURATION_LIMIT]


def timing_stats(samples: list[float], tiles: int | None) -> dict[str, float]:
    """Per-call statistics in microseconds, and per tile when the kernel has a `tiles` param."""
    us = np.asarray(samples) * 1e6
    stats = {
        "calls": float(len(us)),
        "mean_us": float(us.mean()),
        "std_us": float(us.std()),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
    }
    if tiles:
        stats["tiles"] = float(tiles)
        stats["mean_us_per_tile"] = stats["mean_us"] / tiles
        stats["p50_us_per_tile"] = stats["p50_us"] / tiles
    return stats


def verify(artifact: Path, backend: str, seeds: int, iterations: int,
           strict: bool = False) -> Result:
    """Load one artifact once, check it against its golden model, then time it; with `strict`,
    outputs that saturate above SATURATION_LIMIT fail it instead of warning."""
    from codegen.kernels import spec_from_params

    start = time.perf_counter()
    result = Result(kernel=artifact.parent.name, variant=artifact.name, path=str(artifact))
    try:
        manifest = load_manifest(artifact, verify=False)  # NpuKernel.load verifies the hashes
        result.kernel, result.variant = manifest.kernel, manifest.variant
        result.manifest_sha256 = manifest.sha256
        spec = spec_from_params(manifest.kernel, manifest.params)
        stale = spec.stale_param_files(manifest.source_hashes)
        if stale:
            raise ArtifactError(stale[0])
        with NpuKernel.load(artifact, backend=backend) as kernel:
            result.backend = kernel.backend_name
            if kernel.manifest.sha256 != manifest.sha256:
                raise ArtifactError(f"{artifact}: rebuilt while it was being loaded; run "
                                    "`invoke test-hw` again")
            named = [(f"seed{s}", spec.random_inputs(s)) for s in range(seeds)]
            named += list(spec.edge_inputs())
            kernel(named[0][1])  # warm-up
            runs = []
            for name, inputs in named:
                got, want = kernel(inputs), spec.golden(inputs)
                case = Case(name)
                for b, g, w in zip(manifest.outputs, got, want, strict=True):
                    m = compare(b.name, g, w)
                    if m is not None:
                        case.mismatches.append(m)
                result.cases.append(case)
                runs.append((name, got, want))
            result.flags = input_flags(runs, [b.name for b in manifest.outputs])
            result.saturation = saturation([got for _, got, _ in runs[:seeds]],
                                           [b.name for b in manifest.outputs])
            (result.flags if strict else result.warnings).extend(
                saturation_problems(result.saturation))
            # KERNELS.md "verified" 1: the golden model meets its targets for these parameters.
            for problem in spec.accuracy_problems(named[0][1]):
                result.flags.append(f"the golden model misses its accuracy target: {problem}")
            for _ in range(iterations):
                kernel(named[0][1], copy=False)
            if iterations:
                samples = list(kernel.timings)[-iterations:]
                result.timing = timing_stats(samples, spec.params.get("tiles"))
            result.projection = projection_of(spec)
    except NpukitError as e:
        result.error = str(e).splitlines()[0]
    result.seconds = time.perf_counter() - start
    return result


def projection_of(spec: Any) -> dict[str, Any]:
    """The cost model's projection for the spec's design on its device, or {} without a model."""
    from codegen.cost import project
    from codegen.spec import SpecError

    model = getattr(spec, "workload", None)  # test stand-ins are not KernelSpecs
    try:
        workload = model() if model else None
    except SpecError:
        return {}
    if workload is None:
        return {}
    p = project(workload, workload.device)
    return {"label": "cost-model projection, not a measurement", "device": p.family,
            "path": p.path, "projected_us": p.seconds * 1e6, "tops": p.tops, "bound": p.bound}


def _verify_child(conn: Connection, art: Path, backend: str, seeds: int, iterations: int,
                  strict: bool) -> None:
    result = verify(art, backend, seeds, iterations, strict)
    try:
        conn.send(result)
    except OSError:  # the parent is gone (killed): there is no one left to tell, so say nothing
        return
    conn.close()


def verify_isolated(artifact: Path, backend: str, seeds: int, iterations: int,
                    strict: bool = False) -> Result:
    """`verify` in a child process; a child that dies becomes a failed Result naming how.

    The child ignores Ctrl-C (the terminal sends it to both): the parent alone answers it, by
    stopping the child, so an interrupted run prints no child traceback.
    """
    # What a child that dies is reported against: the manifest as it stood when it started.
    manifest = artifact / MANIFEST_NAME
    tested = sha256_file(manifest) if manifest.is_file() else ""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_verify_child,
                        args=(sender, artifact, backend, seeds, iterations, strict), daemon=True)
    with _sigint_ignored():  # inherited by the child's Python, which then keeps ignoring it
        child.start()
    sender.close()
    try:
        result: Result = receiver.recv()
    except EOFError:
        child.join()
        code = child.exitcode or 0
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        why = ("killed from outside (out of memory?)" if code == -signal.SIGKILL
               else "the core code crashed")
        return Result(artifact.parent.name, artifact.name, str(artifact), backend,
                      error=f"the process running it died ({how}): {why}",
                      manifest_sha256=tested)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the child before going
        child.terminate()
        child.join()
        raise
    child.join()
    return result


def record(artifact: Path, result: Result) -> Result:
    """Write `result` as the artifact's report, bound to the manifest it tested; a report for a
    build that was replaced meanwhile is refused, and the result fails saying so."""
    if not result.manifest_sha256:
        return result  # no manifest could be read: nothing to bind a report to
    try:
        write_artifact_report(artifact, result.to_json(), tested=result.manifest_sha256)
    except ArtifactError as e:
        result.error = str(e)
    return result


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the block; only the main thread may change it (elsewhere, a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def probe_npu() -> str:
    """Empty if pyxrt imports and device 0 answers; else the one line saying why not."""
    from runtime.xrt import import_pyxrt, open_device

    try:
        open_device(import_pyxrt())
    except NpukitError as e:
        return str(e).splitlines()[0]
    return ""


def run_test_hw(
    build_dir: Path,
    kernels: list[str] | None,
    backend: str,
    seeds: int,
    iterations: int,
    report: Path | None,
    junit: Path | None,
    progress: bool = True,
    isolate: bool = False,
    strict: bool = False,
) -> int:
    """Verify every artifact under `build_dir`; exit status 0 iff every one verified.

    With `isolate`, each artifact runs in its own process, so a core that crashes (a bad
    pointer, a division by zero in host-compiled core code) fails that artifact, not the run.
    """
    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:
        out = Console(width=140)  # logs and CI: do not truncate kernel and variant names
    if seeds < 2:
        # KERNELS.md: verified means several seeded inputs, with outputs that follow them
        err.print(f"test-hw: --seeds {seeds} is too few; verification needs at least 2")
        return 1
    artifacts = list_artifacts(build_dir, kernels or ())
    built = {a.parent.name for a in artifacts}
    unbuilt = [k for k in kernels or [] if k not in built]
    if unbuilt or not artifacts:
        which = f" for {', '.join(unbuilt)}" if unbuilt else ""
        err.print(f"test-hw: no artifacts{which} under {build_dir}; build them with `invoke build`")
        return 1
    no_npu = probe_npu() if backend == "xrt" else ""
    if no_npu:
        err.print(f"test-hw: backend xrt needs an NPU: {no_npu}", soft_wrap=True, markup=False)
    results = []
    with Progress(console=err, disable=not progress, transient=True) as bar:
        task = bar.add_task("test-hw", total=len(artifacts))
        for art in artifacts:
            bar.update(task, description=f"{art.parent.name}/{art.name}")
            if no_npu:
                results.append(Result(art.parent.name, art.name, str(art), "xrt", error=no_npu))
            else:
                check = verify_isolated if isolate else verify
                results.append(record(art, check(art, backend, seeds, iterations, strict)))
            bar.advance(task)
    out.print(summary_table(results))
    for r in results:
        for warning in r.warnings:
            out.print(f"WARN {r.kernel}/{r.variant}: {warning}", soft_wrap=True, markup=False)
        if not r.passed:
            out.print(f"FAIL {r.kernel}/{r.variant}: {r.reason()}", soft_wrap=True, markup=False)
    settings = {"backend": backend, "seeds": seeds, "iterations": iterations, "strict": strict}
    if report:
        write_report(report, results, settings)
    if junit:
        write_junit(junit, results)
    return 0 if all(r.passed for r in results) else 1


def summary_table(results: list[Result]) -> Table:
    emulated = any(r.backend == "emu" for r in results)
    caption = ("emu rows: mean/p99 are the emulator's host time, not NPU time; "
               if emulated else "")
    table = Table(title="test-hw", caption=caption + "model µs: the cost model's projected NPU "
                  "time (invoke cost), a projection, not a measurement")
    for col in ("kernel", "variant", "backend", "result", "cases", "saturated", "mean µs",
                "p99 µs", "µs/tile", "model µs"):
        table.add_column(col)
    for r in results:
        t = r.timing
        sat = max(r.saturation.values(), default=None)
        table.add_row(
            r.kernel, r.variant, r.backend or "-",
            "[green]verified[/]" if r.passed else "[red]FAIL[/]",
            f"{sum(c.passed for c in r.cases)}/{len(r.cases)}",
            "-" if sat is None else f"{sat:.1%}" + (" !" if sat > SATURATION_LIMIT else ""),
            _us(t.get("mean_us")), _us(t.get("p99_us")), _us(t.get("mean_us_per_tile")),
            _us(r.projection.get("projected_us")),
        )
    return table


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def write_report(path: Path, results: list[Result], settings: dict[str, Any]) -> None:
    data = {
        **settings,
        "verified": all(r.passed for r in results),
        "results": [r.to_json() for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def write_junit(path: Path, results: list[Result]) -> None:
    """One testcase per artifact: <failure> for a wrong output, <error> when it could not run."""
    suite = ET.Element(
        "testsuite", name="npukit.test-hw", tests=str(len(results)),
        failures=str(sum(1 for r in results if not r.passed and not r.error)),
        errors=str(sum(1 for r in results if r.error)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite, "testcase", classname=f"test_hw.{r.kernel}", name=r.variant,
            time=f"{r.seconds:.3f}",
        )
        if not r.passed:
            ET.SubElement(case, "error" if r.error else "failure", message=r.reason()).text = (
                "\n".join(f"{c.name}: {[asdict(m) for m in c.mismatches]}"
                          for c in r.cases if not c.passed) or r.reason()
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites")
    root.append(suite)
    write_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))

"""The cost model over a built model artifact: each op projected, per block and per window.

The model manifest is read through runtime/model.py's validated reader; each kernel op's spec is
made again from its parameters and its workload projected (codegen/cost.py) on its variant's
device family, on the scalar and the vector MAC path. An op's projection includes its dispatch.
A window also switches designs (PDIs) whenever consecutive kernel ops run different variants:
what that costs inside one hardware context is unknown (`PDI_SWITCH`), so totals are given with
and without it. Host ops run on the CPU: they are counted here, not projected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codegen.cost import PATHS, PDI_SWITCH, Projection, device_family, project
from codegen.kernels import spec_from_params
from codegen.spec import KernelSpec, SpecError
from runtime.errors import ArtifactError, NpukitError

#: the pseudo-path of OpCost.seconds: each op on the path its variant is built with
BUILT = "built"

FRONT, FINAL = "front end", "final"
SHAPES = {  # how each kernel's shape is shown, from its parameters
    "matmul": "{M}x{K}x{N}",
    "mha": "{heads}h {seq_q}x{seq_k} d{head_dim}",
    "layernorm": "{rows}x{d}",
    "gelu": "{length:,}",
    "mel": "{frames}x{n_mels}",
    "attention": "{tiles} x {n_queries}x{n_keys} d{head_dim}",
}
_BLOCK = re.compile(r"^b(\d+)\.")


class ModelCostError(NpukitError):
    """The directory given is not a model artifact the cost model can read."""


@dataclass(frozen=True)
class OpCost:
    """One op of the model: a kernel op with its projection per MAC path, or a host op."""

    name: str
    kind: str  # "kernel" | "host"
    fn: str
    group: str  # FRONT, "block <i>" or FINAL
    shape: str
    variant: str  # "<context>/<member>" of a kernel op, "" for a host op
    projections: dict[str, Projection]  # path -> projection; empty when there is none
    missing: str = ""  # why a kernel op has no projection
    note: str = ""  # how its projection was made, where that differs from the rule
    built: str = "scalar"  # the path its core code has: a kernel's `path`, else scalar

    def seconds(self, path: str) -> float:
        """Projected seconds on `path`, or on the path the variant is built with ("built")."""
        p = self.projections.get(self.built if path == BUILT else path)
        return p.seconds if p else 0.0


@dataclass(frozen=True)
class ModelCost:
    """Every op of one model artifact, and the design switches between its kernel ops."""

    directory: Path
    dims: dict[str, Any]
    ops: list[OpCost]
    switches: int  # consecutive kernel ops on different variants, within one window
    contexts: int

    @property
    def kernel_ops(self) -> list[OpCost]:
        return [o for o in self.ops if o.kind == "kernel"]

    @property
    def host_ops(self) -> list[OpCost]:
        return [o for o in self.ops if o.kind == "host"]

    @property
    def families(self) -> list[str]:
        return sorted({p.family for o in self.ops for p in o.projections.values()})

    @property
    def complete(self) -> bool:
        """Every kernel op has a projection (otherwise totals leave some out)."""
        return all(o.projections for o in self.kernel_ops)

    def groups(self) -> dict[str, list[OpCost]]:
        """The ops by group, in execution order (front end, block 0, ..., final)."""
        out: dict[str, list[OpCost]] = {}
        for o in self.ops:
            out.setdefault(o.group, []).append(o)
        return out

    def seconds(self, path: str, ops: list[OpCost] | None = None) -> float:
        """The projected kernel time (each op's dispatch included) of `ops` (default: all)."""
        return sum(o.seconds(path) for o in (self.ops if ops is None else ops))

    def dispatch_s(self, ops: list[OpCost] | None = None) -> float:
        return sum(p.dispatch_s for o in (self.ops if ops is None else ops)
                   for p in o.projections.values() if p.path == PATHS[0])

    def switch_s(self) -> float:
        return self.switches * PDI_SWITCH.value

    def window(self, path: str, switches: bool) -> float:
        """The window's projected NPU time: every kernel op, and the PDI switches if asked."""
        return self.seconds(path) + (self.switch_s() if switches else 0.0)


def model_cost(directory: str | Path) -> ModelCost:
    """The projection of every op of the model artifact in `directory` (one line if it is not
    one, or if an op's parameters no longer make a kernel spec)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    tensors = {t["name"]: t for t in manifest["tensors"]}
    ops: list[OpCost] = []
    group = FRONT
    previous: tuple[str, str] | None = None
    switches = 0
    for op in manifest["ops"]:
        block = _BLOCK.match(op["name"])
        if block:
            group = f"block {block.group(1)}"
        elif group != FRONT:
            group = FINAL
        if op["kind"] != "kernel":
            shape = "x".join(map(str, tensors.get(op["outputs"][0], {}).get("shape", [])))
            ops.append(OpCost(op["name"], "host", op["fn"], group, shape, "", {}))
            continue
        variant = (str(op.get("context", "")), str(op.get("member", "")))
        switches += previous is not None and variant != previous
        previous = variant
        ops.append(_kernel_op(directory, op, group, "/".join(variant)))
    return ModelCost(directory, dict(manifest.get("dims", {})), ops, switches,
                     len(manifest["contexts"]))


def read_manifest(directory: Path) -> dict[str, Any]:
    """The model manifest, or one line naming what the directory is instead."""
    from runtime.model import read_model_manifest

    fix = "give a built model artifact, build/models/<name> (made by `invoke encode`)"
    if not directory.exists():
        raise ModelCostError(f"{directory}: no such directory; {fix}")
    if not directory.is_dir():
        raise ModelCostError(f"{directory}: a file, not a model artifact directory; {fix}")
    if not (directory / "manifest.json").is_file():
        raise ModelCostError(f"{directory}: not an npukit model artifact (no manifest.json); "
                             f"{fix}")
    try:
        return read_model_manifest(directory)
    except ArtifactError:
        kernel = _kernel_artifact(directory)
        if kernel:
            raise ModelCostError(
                f"{directory}: a kernel artifact ({kernel}), not a model; for one kernel run "
                f"`invoke cost --kernel {kernel} -p key=value ...`") from None
        raise


def _kernel_artifact(directory: Path) -> str:
    """The kernel name if `directory` holds a kernel build's manifest, else ""."""
    try:
        data = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return ""
    kernel = data.get("kernel") if isinstance(data, dict) else None
    return kernel if isinstance(kernel, str) else ""


def _kernel_op(directory: Path, op: dict[str, Any], group: str, variant: str) -> OpCost:
    params = dict(op.get("params", {}))
    try:
        spec = spec_from_params(op["fn"], params)
    except SpecError as e:
        raise ModelCostError(f"{directory}: op {op['name']}: {e}; rebuild the model "
                             "(`invoke encode ... --checkpoint CKPT`)") from None
    try:
        shape = SHAPES.get(op["fn"], "").format(**spec.params) or "-"
    except (KeyError, ValueError):
        shape = "-"
    try:
        projections, note = _projections(spec, op["fn"], params, directory)
    except SpecError as e:  # a kernel without workload(): shown, left out of the totals
        return OpCost(op["name"], "kernel", op["fn"], group, shape, variant, {}, str(e))
    # the MAC rate a variant's own core code runs at: a `path` parameter names it (matmul,
    # mha); the others (layernorm, gelu, mel) have scalar code only
    built = str(spec.params.get("path", "scalar"))
    return OpCost(op["name"], "kernel", op["fn"], group, shape, variant, projections,
                  note=note, built=built)


def _projections(spec: KernelSpec, fn: str, params: dict[str, Any], directory: Path
                 ) -> tuple[dict[str, Projection], str]:
    """The op's projection on its device's family, per path. A kernel with a `path` parameter
    (matmul, mha) is projected as that path's own variant (its core work differs), if it validates;
    others with only the MAC rate changed, as `invoke cost --kernel` does."""
    family = device_family(spec.device)
    built = spec.workload()
    out, note = {}, ""
    for path in PATHS:
        workload = built
        if "path" in spec.params and spec.params["path"] != path:
            try:
                other = spec_from_params(fn, {**params, "path": path})
                workload = other.workload()
            except SpecError as e:
                note = (f"its {path} variant does not validate ({e}): {path} is the built "
                        "variant's work at the other MAC rate")
        out[path] = project(workload, family, path)
    return out, note

"""The encoder's model artifact: graph, quantised weights, scales and its kernel builds, hashed.

Layout of `build/models/<name>/`:
  manifest.json      schema npukit-model/1: dims, tensors (dtype, shape, scale), ops in order
                     (kernel ops name their artifact), the hardware-context plan, and the size
                     and sha256 of every file below
  weights/<t>.npy    each constant tensor: int8 weights, positional embedding, packed
                     per-layer values (read back through runtime/loader.py)
  calibration.json   the calibration report (per tensor: range seen, range covered, clipped)
  contexts/<c>/      the kernel variants linked into one context artifact (one multi-kernel
                     xclbin, at most 16 kernels: codegen/link.py), as `link_context` makes it
The key (checkpoint, calibration audio and settings, this code) names the build: the same key
is a cache hit that runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codegen.link import link_context
from codegen.models import whisper as plan
from codegen.models.checkpoint import Checkpoint, load_checkpoint
from codegen.models.graph import Graph, Op
from codegen.models.quantise import TensorScale, report_lines
from codegen.pipeline import build, code_digest
from runtime.context import MAX_MEMBERS  # amdxdna's XCLBIN_MAX_NUM_PDIS
from runtime.errors import NpukitError
from runtime.manifest import sha256_file

SCHEMA = "npukit-model/1"
MANIFEST = "manifest.json"
Progress = Callable[[str], None]


class ModelBuildError(NpukitError):
    """The model artifact cannot be made (a kernel build failed, the output dir is not ours)."""


@dataclass
class ModelBuild:
    directory: Path
    up_to_date: bool
    graph: Graph
    scales: dict[str, TensorScale]
    contexts: list[dict[str, Any]]


def model_key(ckpt: Checkpoint, clips: Sequence[np.ndarray], settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(ckpt.sha256.encode())
    for clip in clips:
        h.update(hashlib.sha256(np.ascontiguousarray(clip).tobytes()).digest())
    h.update(json.dumps(settings, sort_keys=True).encode())
    # everything that shapes the artifact: the planner, the kernels' specs and sources, the
    # build pipeline and its checks, the linker, and the formats the runtime reads back
    h.update(code_digest(("codegen", "runtime/manifest.py", "runtime/context.py",
                          "runtime/model.py")).encode())
    h.update(code_digest(("mlir",), pattern="*").encode())  # the cores' C++ and templates
    return h.hexdigest()


def build_settings(target: str, percentile: float) -> dict[str, Any]:
    """What besides the checkpoint, clips and code decides the artifact: the effective target
    (auto is hw where aiecc and Peano are found, else emu: the same model as emu) and the tools
    that compile it (the host compiler always; the NPU toolchain and aie_api headers for hw),
    so a model built emulation-only is rebuilt, not "up to date", once they are installed."""
    from codegen.pipeline import host_api_digest
    from codegen.toolchain import discover

    tc = discover()
    hw = target == "hw" or (target == "auto" and not tc.missing_for_hw)
    tools = [tc.cxx.identity if tc.cxx else "missing", host_api_digest()]
    if hw:
        tools += [t.identity if t else "missing" for t in (tc.aiecc, tc.peano, tc.bootgen)]
        tools.append(tc.mlir_aie_include or "missing")
    return {"percentile": percentile, "target": "hw" if hw else "emu", "tools": tools}


def build_encoder(checkpoint: str | Path, build_root: Path, *, clips: Sequence[np.ndarray],
                  name: str | None = None, target: str = "emu", percentile: float = 100.0,
                  progress: Progress | None = None) -> ModelBuild:
    """Calibrate on `clips`, plan, build every kernel variant and write the model artifact."""
    say = progress or (lambda line: None)
    ckpt = load_checkpoint(checkpoint)
    settings = build_settings(target, percentile)
    key = model_key(ckpt, clips, settings)
    directory = build_root / "models" / (name or Path(checkpoint).stem)
    existing = _read(directory)
    if existing is not None and existing.get("key") == key:
        from runtime.model import verify_model

        verify_model(directory)
        say(f"model {directory}: up to date")
        scales = {s["name"]: TensorScale(**s) for s in existing["calibration"]}
        graph, _ = _graph_from(existing)
        return ModelBuild(directory, True, graph, scales, existing["contexts"])
    if directory.exists() and existing is None and any(directory.iterdir()):
        raise ModelBuildError(f"{directory} exists and is not an npukit model artifact; "
                              "choose another --name or move it away")
    say(f"calibrating on {len(clips)} clip(s)")
    scales = plan.calibrate_encoder(ckpt, clips, percentile=percentile)
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    graph, constants = plan.plan_encoder(ckpt, scales)
    (staging / "weights").mkdir()
    for tname, value in constants.items():
        np.save(staging / "weights" / f"{tname}.npy", np.ascontiguousarray(value))
    (staging / "calibration.json").write_text(json.dumps(
        {"tensors": [s.to_json() for s in scales.values()], "report": report_lines(scales)},
        indent=1) + "\n")
    artifacts = _build_kernels(graph, build_root, target, say)
    distinct = list(dict.fromkeys(artifacts.values()))
    contexts, members = _link_contexts(distinct, staging, target, say)
    ops = [op.to_json() | (members[artifacts[_op_id(op)]] if op.kind == "kernel" else {})
           for op in graph.ops]
    manifest = {
        "schema": SCHEMA, "model": "whisper-encoder", "key": key,
        "dims": ckpt.dims.__dict__, "checkpoint": {"name": Path(checkpoint).name,
                                                   "sha256": ckpt.sha256},
        "sample_rate": plan.SAMPLE_RATE, "input": graph.input, "output": graph.output,
        "tensors": graph.tensors_json(), "ops": ops, "contexts": contexts,
        "calibration": [s.to_json() for s in scales.values()],
        "files": _files(staging),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if existing is not None:
        shutil.rmtree(directory)  # an older build of ours (it has our manifest)
    os.replace(staging, directory)
    say(f"model {directory}: {len(graph.ops)} ops, {len(distinct)} kernel variants, "
        f"{len(contexts)} hardware context(s) planned")
    return ModelBuild(directory, False, graph, scales, contexts)


def _op_id(op: Op) -> str:
    return json.dumps([op.fn, op.params], sort_keys=True)


def _build_kernels(graph: Graph, build_root: Path, target: str,
                   say: Progress) -> dict[str, Path]:
    """Each distinct (kernel, params) built once: op identity -> its artifact directory."""
    done: dict[str, Path] = {}
    missing: str | None = None
    todo = [op for op in graph.ops if op.kind == "kernel"]
    for n, op in enumerate(todo, 1):
        ident = _op_id(op)
        if ident in done:
            continue
        say(f"[{n}/{len(todo)}] building {op.fn} for {op.name}")
        result = build(graph.spec(op), build_root, target=target)
        done[ident] = result.artifact_dir
        missing = missing or result.missing_line
    if missing and target != "emu":
        say(f"{missing} (so the model's kernels are emulation-only builds)")
    return done


def _link_contexts(artifacts: list[Path], staging: Path, target: str, say: Progress
                   ) -> tuple[list[dict[str, Any]], dict[Path, dict[str, str]]]:
    """The distinct variants linked, at most 16 at a time, into context artifacts under
    staging/contexts/ (one multi-kernel xclbin each: codegen/link.py); where each landed."""
    plan: list[dict[str, Any]] = []
    where: dict[Path, dict[str, str]] = {}
    for first in range(0, len(artifacts), MAX_MEMBERS):
        group = artifacts[first:first + MAX_MEMBERS]
        name = f"context{len(plan)}"
        out = staging / "contexts" / name
        say(f"linking {len(group)} kernel variant(s) into {name}")
        result = link_context(group, out, target=target)
        Path(f"{out}.lock").unlink(missing_ok=True)  # link_context's lock, ours
        plan.append({"name": name, "dir": f"contexts/{name}", "members": list(result.members)})
        for artifact, member in zip(group, result.members, strict=True):
            where[artifact] = {"context": name, "member": member}
    return plan, where


def _files(root: Path) -> dict[str, dict[str, Any]]:
    """Every file of the model's own (kernel artifacts: their manifest, which hashes the rest)."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel == MANIFEST:
            continue
        # a context artifact's context.json hashes every file of its own
        if (rel.startswith("contexts/") and rel.count("/") != 2) or path.suffix == ".lock":
            continue
        if rel.startswith("contexts/") and path.name != "context.json":
            continue
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def _read(directory: Path) -> dict[str, Any] | None:
    """The model manifest through the validated loader; None if there is none we made."""
    from runtime.errors import ArtifactError
    from runtime.model import read_model_manifest

    if not (directory / MANIFEST).is_file():
        return None
    try:
        return read_model_manifest(directory)
    except ArtifactError:
        return None


def _graph_from(manifest: dict[str, Any]) -> tuple[Graph, None]:
    from codegen.models.graph import Tensor

    tensors = {t["name"]: Tensor(t["name"], t["dtype"], tuple(t["shape"]), t["scale"])
               for t in manifest["tensors"]}
    constants = {t["name"] for t in manifest["tensors"] if t["constant"]}
    ops = [Op.from_json(o) for o in manifest["ops"]]
    return Graph(ops, tensors, constants, manifest["input"], manifest["output"]), None


def load_graph(directory: Path) -> tuple[Graph, dict[str, np.ndarray]]:
    """The graph and constants of a built model, for the golden encoder."""
    manifest = _read(directory)
    if manifest is None:
        raise ModelBuildError(f"{directory}: not an npukit model artifact")
    from runtime.model import load_constants

    graph, _ = _graph_from(manifest)
    return graph, load_constants(directory, manifest)

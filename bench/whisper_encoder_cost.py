"""The README's encoder time table: a Whisper encoder's ops projected by the cost model.

`python -m bench.whisper_encoder_cost [--dims tiny|base|small] [--emulate]` writes a checkpoint of
openai-whisper's format with seeded random weights and openai-whisper's own audio dims, builds
the emulated model artifact (calibrated on noise) and prints, as Markdown, the projection of
`invoke cost --model` on it: per op, per block, for the window, with and without the assumed
design (PDI) switches. Every NPU figure is a projection of `codegen/cost.py` from its stated
assumptions, not a measurement. The host ops are timed here with numpy (host-measured, this
machine). `--emulate` also runs one window on the emulator and prints its seconds per op
(emulated: the host-compiled core code, nothing like NPU time). Needs PyTorch and
openai-whisper (to write the checkpoint).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from codegen.cost import DEVICES, PDI_SWITCH
from codegen.models.cost import BUILT, ModelCost, OpCost, model_cost, read_manifest
from runtime import hostops

# whisper-xdna (npu1, bf16, whole-array GEMMs): encoder time per 30 s window (NPU_FACTS 8)
WHISPER_XDNA_MS = {"tiny": 484, "small": 1507}
REPEATS = 5


def build(dims: str, root: Path) -> Path:
    """The emulated model artifact of `dims` with seeded random weights; its directory."""
    from codegen.models.artifact import build_encoder
    from codegen.models.checkpoint import load_checkpoint
    from tests.encoder_support import noise
    from tests.whisper_checkpoints import WHISPER_DIMS, write_checkpoint

    ckpt = write_checkpoint(root / f"{dims}.pt", seed=0, **WHISPER_DIMS[dims])
    encoder_dims = load_checkpoint(ckpt).dims
    built = build_encoder(ckpt, root / "build", clips=[noise(encoder_dims, 1)], name=dims,
                          target="emu", progress=lambda line: print(line, file=sys.stderr))
    return built.directory


def host_seconds(directory: Path) -> dict[str, float]:
    """Each host op's median seconds over REPEATS runs on random inputs of its tensors' dtypes
    and shapes (host-measured here, numpy)."""
    manifest = read_manifest(directory)
    tensors = {t["name"]: t for t in manifest["tensors"]}
    rng = np.random.default_rng(0)
    out = {}
    for op in manifest["ops"]:
        if op["kind"] != "host":
            continue
        args = [_random(tensors[name], rng) for name in op["inputs"]]
        shapes = [tuple(tensors[name]["shape"]) for name in op["outputs"]]
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            hostops.run(op["fn"], args, op.get("attrs", {}), shapes)
            times.append(time.perf_counter() - start)
        out[op["name"]] = float(np.median(times))
    return out


def _random(tensor: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(tensor["dtype"])
    if dtype.kind == "f":
        return rng.standard_normal(tensor["shape"]).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=tensor["shape"], endpoint=True, dtype=dtype)


def emulated_seconds(directory: Path) -> dict[str, float]:
    """Seconds per op of one emulated window (noise in), from the runner's own report."""
    from runtime.model import ModelRunner

    with ModelRunner(directory, backend="emu") as runner:
        n = runner.tensors[runner.manifest["input"]]["shape"][0]
        pcm = np.clip(np.round(np.random.default_rng(2).standard_normal(n) * 3000),
                      -32768, 32767).astype(np.int16)
        runner.run(pcm)
        return {r.name: r.seconds for r in runner.last_report}


def _same_blocks(cost: ModelCost) -> bool:
    """Every block's ops project exactly as block 0's (the same shapes, one variant each)."""
    blocks = [ops for group, ops in cost.groups().items() if group.startswith("block")]
    key = [[(o.fn, o.shape, o.seconds("vector"), o.seconds("scalar")) for o in ops]
           for ops in blocks]
    return all(k == key[0] for k in key)


def _row(o: OpCost, host: dict[str, float], emulated: dict[str, float] | None) -> str:
    if o.kind == "host":
        cells = [o.name, f"host: {o.fn}", o.shape, "-", "-", "-", "CPU",
                 f"{host[o.name] * 1e3:,.2f}"]
    elif not o.projections:
        cells = [o.name, o.fn, o.shape, "-", "-", "-", "no cost model", "-"]
    else:
        v, s = o.projections["vector"], o.projections["scalar"]
        cells = [o.name, o.fn, o.shape, f"{o.seconds(BUILT) * 1e3:,.3f} ({o.built})",
                 f"{v.seconds * 1e3:,.3f}", f"{s.seconds * 1e3:,.3f}",
                 v.bound.split(" (")[0], "-"]
    if emulated is not None:
        cells.append(f"{emulated[o.name]:,.3f}")
    return "| " + " | ".join(cells) + " |"


def report(dims: str, cost: ModelCost, host: dict[str, float],
           emulated: dict[str, float] | None = None) -> list[str]:
    """The Markdown lines: per op (one block when all blocks are the same), per group, window."""
    families = ", ".join(cost.families)
    lines = [f"Whisper-{dims} dims encoder, {len(cost.kernel_ops)} kernel ops and "
             f"{len(cost.host_ops)} host ops, projected on {families} (cost model, not a "
             "measurement; each kernel op's time includes its dispatch). Host ops: host-"
             "measured here (numpy, median of 5)." + (" Emulated: seconds per op of one "
                                                       "emulated window." if emulated else ""),
             ""]
    head = ["op", "kernel", "shape", "as built ms", "vector ms", "scalar ms", "bound (vector)",
            "host-measured ms", *(["emulated s"] if emulated is not None else [])]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    same = _same_blocks(cost)
    shown_block = False
    for group, ops in cost.groups().items():
        if group.startswith("block") and same:
            if shown_block:
                continue
            shown_block = True
            n = sum(1 for g in cost.groups() if g.startswith("block"))
            lines.append(f"| **each of the {n} blocks** (block 0's ops; every block projects "
                         "the same) | | | | | | | |" + (" |" if emulated is not None else ""))
        for o in ops:
            lines.append(_row(o, host, emulated))
    lines += ["", "| group | kernel ops | host ops | as built ms | vector ms | scalar ms | "
              "host-measured ms |", "|---|---|---|---|---|---|---|"]
    for group, ops in cost.groups().items():
        kernels = sum(1 for o in ops if o.kind == "kernel")
        lines.append(f"| {group} | {kernels} | {len(ops) - kernels} | "
                     f"{cost.seconds(BUILT, ops) * 1e3:,.1f} | "
                     f"{cost.seconds('vector', ops) * 1e3:,.1f} | "
                     f"{cost.seconds('scalar', ops) * 1e3:,.1f} | "
                     f"{sum(host.get(o.name, 0.0) for o in ops) * 1e3:,.1f} |")
    mel = [o for o in cost.kernel_ops if o.fn == "mel"]
    dispatch = DEVICES[cost.families[0]].dispatch_s.value if cost.families else 0.0
    paths = (BUILT, "vector", "scalar")
    lines += ["", "| window (30 s) | as built | vector | scalar |", "|---|---|---|---|"]
    lines.append(f"| kernel ops: {len(cost.kernel_ops)} calls (each with its dispatch, "
                 f"{len(cost.kernel_ops)} x {dispatch * 1e6:g} µs = "
                 f"{cost.dispatch_s() * 1e3:,.1f} ms) | "
                 + " | ".join(f"{cost.seconds(p) * 1e3:,.1f} ms" for p in paths) + " |")
    lines.append("| of it the mel op (a direct DFT in scalar code) | "
                 + " | ".join(f"{cost.seconds(p, mel) * 1e3:,.1f} ms" for p in paths) + " |")
    lines.append(f"| + PDI switches: {cost.switches} x {PDI_SWITCH.value * 1e3:g} ms (assumed; "
                 "unknown inside one context) | "
                 + " | ".join(f"{cost.switch_s() * 1e3:,.1f} ms" for _ in paths) + " |")
    for label, switches in (("without PDI switches", False), ("with PDI switches", True)):
        lines.append(f"| **window, {label}** | "
                     + " | ".join(f"**{cost.window(p, switches) * 1e3:,.1f} ms**" for p in paths)
                     + " |")
    for label, switches in (("without", False), ("with", True)):
        lines.append(f"| window less the mel op, {label} PDI switches | "
                     + " | ".join(f"{(cost.window(p, switches) - cost.seconds(p, mel)) * 1e3:,.1f}"
                                  " ms" for p in paths) + " |")
    lines.append(f"| host ops: {len(cost.host_ops)} (CPU, host-measured here, not projected) | "
                 f"{sum(host.values()) * 1e3:,.1f} ms | same | same |")
    if emulated is not None:
        lines.append(f"| emulated window (this machine, all ops) | {sum(emulated.values()):,.1f} "
                     "s | | |")
    xdna = WHISPER_XDNA_MS.get(dims)
    if xdna:
        lines.append(f"| whisper-xdna, published (npu1, bf16; NPU_FACTS 8) | {xdna:,} ms | | |")
    if not cost.complete:
        lines.append("| (totals leave out the kernel ops without a cost model) | | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", choices=("tiny", "base", "small"), default="base",
                        help="openai-whisper's audio dims of this model size")
    parser.add_argument("--emulate", action="store_true",
                        help="also run one window on the emulator: seconds per op")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = build(args.dims, Path(tmp))
        cost = model_cost(directory)
        emulated = emulated_seconds(directory) if args.emulate else None
        print("\n".join(report(args.dims, cost, host_seconds(directory), emulated)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

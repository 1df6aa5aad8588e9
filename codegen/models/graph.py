"""A model as a graph of ops: kernel invocations and the host steps between them.

The same description goes into the model artifact's manifest (as JSON) and is executed by the
golden encoder here and by the graph runner in runtime/. Tensor names are the float reference's
(`codegen.models.reference`), so every int8 tensor can be compared with its float value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from codegen.kernels import spec_from_params
from codegen.spec import KernelSpec

#: host ops and what they do; runtime/hostops.py and codegen/models/golden.py each implement them
HOST_OPS = {
    "mel_pad": "reflect-pad the clip by 200 samples each side (needs the whole clip)",
    "mel_normalise": "clamp to max - 8 and (x + 4) / 4 over the whole window, quantise to int8",
    "windows": "im2col: rows of 3 neighbouring frames (kernel 3, padding 1, stride s) for conv",
    "add": "residual / positional add of two int8 tensors, requantised (multiplier and shift)",
    "dequantise": "int8 codes to float32 (the encoder's output)",
}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None = None  # real value = scale x integer; None for int16 PCM and mel codes


@dataclass(frozen=True)
class Op:
    """One step: a kernel invocation (`fn` = kernel name, `params` its parameters) or a host op."""

    name: str
    kind: str  # "kernel" | "host"
    fn: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)  # kernel parameters; .npy relative
    attrs: dict[str, Any] = field(default_factory=dict)  # host-op attributes

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"], d["outputs"] = list(self.inputs), list(self.outputs)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Op:
        return cls(d["name"], d["kind"], d["fn"], tuple(d["inputs"]), tuple(d["outputs"]),
                   dict(d.get("params", {})), dict(d.get("attrs", {})))


@dataclass
class Graph:
    """Ops in execution order, the tensors they pass, and the constant tensors (weights)."""

    ops: list[Op]
    tensors: dict[str, Tensor]
    constants: set[str]
    input: str
    output: str

    def spec(self, op: Op) -> KernelSpec:
        """The kernel spec of `op` (shape-only parameters: its values are constant inputs)."""
        return spec_from_params(op.fn, op.params)

    def tensors_json(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "scale": t.scale,
                 "constant": t.name in self.constants} for t in self.tensors.values()]

"""The kernel registry: one module per kernel, each with its spec, golden model and reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from codegen.kernels.attention import AttentionSpec
from codegen.kernels.gelu import GeluSpec
from codegen.kernels.layernorm import LayerNormSpec
from codegen.kernels.matmul import MatmulSpec
from codegen.kernels.mel import MelSpec
from codegen.kernels.mha import MhaSpec
from codegen.spec import KernelSpec, SpecError

KERNELS: dict[str, type[KernelSpec]] = {
    spec.name: spec
    for spec in (AttentionSpec, GeluSpec, LayerNormSpec, MatmulSpec, MelSpec, MhaSpec)
}


def get_kernel(name: str) -> type[KernelSpec]:
    """The spec class of kernel `name`, or a SpecError listing the known kernels."""
    try:
        return KERNELS[name]
    except KeyError:
        raise SpecError(
            f"unknown kernel {name!r}; known kernels: {', '.join(sorted(KERNELS))}"
        ) from None


def spec_from_params(name: str, params: Mapping[str, Any] | None = None) -> KernelSpec:
    """A validated spec of kernel `name` with `params` (strings or typed values)."""
    return get_kernel(name)(params)

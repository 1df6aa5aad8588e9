"""Static checks of a rendered design before any compiler runs; each failure names the limit."""

from __future__ import annotations

from codegen.spec import KernelSpec

CHECKS_VERSION = "1"


def check_design(spec: KernelSpec, design: str) -> list[str]:
    """Run every check on `spec` and its rendered `design`; return what passed, raise on failure."""
    passed = []
    spec.check_memory()
    passed.append("tile memory within budget (spec plan)")
    return passed

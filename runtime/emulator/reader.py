"""Parse `aie.mlir` text into an xDSL module whose every op carries its source line.

xDSL's parser keeps no location for ops written without `loc(...)`; the emulator needs one for
every message, so `_LocatingParser` records where each op starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin, FileLineColLoc, IntAttr, ModuleOp, StringAttr
from xdsl.dialects.func import Func
from xdsl.dialects.scf import Scf
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError

from runtime.emulator.dialect import AIE, AIEX
from runtime.emulator.faults import DesignSyntaxError, UnsupportedOpError

SOURCE_NAME = "aie.mlir"
_UNREGISTERED = re.compile(r"Operation (\S+) is not registered")


class _LocatingParser(Parser):
    """A Parser that stamps each op with the line and column it starts at."""

    def parse_operation(self) -> Operation:
        start = self._current_token.span.get_location()
        try:
            op = super().parse_operation()
        except ParseError as exc:
            unknown = _UNREGISTERED.match(exc.msg or "")
            if unknown is None:
                raise
            raise UnsupportedOpError(
                f"{start.file}:{start.line}: `{unknown.group(1)}` is not supported by the "
                "emulator (npukit models aie.device/tile/objectfifo/objectfifo.link/core, "
                "scf.for, arith, func.call and the aie.runtime_sequence DMA ops)"
            ) from None
        if not isinstance(op.location, FileLineColLoc):
            op.location = FileLineColLoc(
                StringAttr(start.file or SOURCE_NAME), IntAttr(start.line), IntAttr(start.col)
            )
        return op


def _context() -> Context:
    ctx = Context()
    for dialect in (Builtin, Func, Arith, Scf, AIE, AIEX):
        ctx.load_dialect(dialect)
    return ctx


def read_text(source: str | Path) -> tuple[str, str]:
    """(text, name) of a design given as a path, or as the MLIR text itself (has a `{`)."""
    if isinstance(source, str) and "{" in source:
        return source, SOURCE_NAME
    path = Path(source)
    try:
        return path.read_text(), path.name
    except OSError as exc:
        raise DesignSyntaxError(f"cannot read the design {path}: {exc.strerror}") from None


def parse_design(text: str, name: str = SOURCE_NAME) -> ModuleOp:
    """The parsed module; bad syntax or an unknown op is a DesignSyntaxError with its line."""
    try:
        module = _LocatingParser(_context(), text, name).parse_module()
    except ParseError as exc:
        where = exc.span.get_location()
        first = exc.msg.splitlines()[0] if exc.msg else "parse error"
        snippet = exc.span.text.strip() or text.splitlines()[where.line - 1].strip()
        raise DesignSyntaxError(
            f"{name}:{where.line}:{where.col}: {first} (at `{snippet[:60]}`)"
        ) from exc
    return module


def line_of(op: Operation) -> int:
    """The source line an op starts on (0 if unknown)."""
    loc = op.location
    return loc.line.data if isinstance(loc, FileLineColLoc) else 0

"""Bind `func.func` declarations to functions of host-compiled core libraries via ctypes.

A memref argument is passed as a pointer to its FIFO buffer. `index` is passed as a 32-bit int:
on the AIE2 target (32-bit addresses) that is the width the core code was written for.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from pathlib import Path

from runtime.emulator.faults import UnsupportedOpError
from runtime.emulator.model import FuncSpec

_CTYPES: dict[str, type] = {
    "ptr": ctypes.c_void_p,
    "index": ctypes.c_int32,
    "i8": ctypes.c_int8,
    "i16": ctypes.c_int16,
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "f32": ctypes.c_float,
}


def bind_functions(
    funcs: Mapping[str, FuncSpec],
    called: set[str],
    libraries: Mapping[str, Path | str],
    source: str,
) -> dict[str, Callable[..., None]]:
    """A ctypes function for each called declaration, from the library its link_with names.

    A declaration without link_with is looked up in every library, in the order given.
    """
    loaded: dict[str, ctypes.CDLL] = {}

    def library(key: str) -> ctypes.CDLL:
        if key not in loaded:
            try:
                loaded[key] = ctypes.CDLL(str(libraries[key]))
            except OSError as exc:
                raise UnsupportedOpError(
                    f"{source}: cannot load the host library for {key!r} ({libraries[key]}): {exc}"
                ) from None
        return loaded[key]

    bound: dict[str, Callable[..., None]] = {}
    for name in sorted(called):
        spec = funcs[name]
        where = f"{source}:{spec.line}: `func.func` @{name}"
        if spec.link_with is not None:
            if spec.link_with not in libraries:
                raise UnsupportedOpError(
                    f"{where} links with {spec.link_with!r}, but no host library was given "
                    f"for it (libraries has {sorted(libraries)})"
                )
            keys = [spec.link_with]
        else:
            keys = list(libraries)
        fn = None
        for key in keys:
            fn = getattr(library(key), name, None)
            if fn is not None:
                break
        if fn is None:
            raise UnsupportedOpError(
                f"{where}: symbol {name!r} not found in {', '.join(keys) or 'any library'} "
                '(compile the core source for the host with C linkage: extern "C")'
            )
        fn.argtypes = [_CTYPES[k] for k in spec.arg_kinds]
        fn.restype = None
        bound[name] = fn
    return bound

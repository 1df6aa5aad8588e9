"""The one loader for every file npukit reads: JSON checked against a schema, `.npy` arrays
checked before anything is allocated. A bad file is one error line naming the file and the fix.

The schemas are JSON Schema (draft 2020-12), restricted to the keywords `check` implements, so
the runtime needs numpy only; the tests check each schema, and `check`'s verdicts, against the
jsonschema library.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ArtifactError, NpukitError

Schema = dict[str, Any]
#: far above any file npukit writes (a manifest is a few KiB), far below what could exhaust memory
MAX_JSON_BYTES = 16 << 20
#: a parameter file holds one value per row or column: a few thousand numbers at most
MAX_NPY_BYTES = 64 << 20
KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "minimum", "maximum", "pattern", "minItems", "maxItems", "minLength",
})
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),),
}


def _type_name(value: Any) -> str:
    for name, types in _JSON_TYPES.items():
        if isinstance(value, types) and not (name != "boolean" and isinstance(value, bool)):
            return name
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer" and isinstance(value, float):
        return False  # 1.0 is a JSON Schema integer, but no file npukit writes holds one
    return isinstance(value, _JSON_TYPES[kind])


def check(value: Any, schema: Schema, at: str = "") -> str | None:
    """The first way `value` breaks `schema`, as "at <path>: <problem>", or None if it fits."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"schema keyword {sorted(unknown)[0]!r} is not implemented")
    where = f"at {at}: " if at else ""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return f"{where}expected {' or '.join(kinds)}, got {_type_name(value)}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"{where}expected {json.dumps(schema['const'])}, got {json.dumps(value)}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        choices = ", ".join(json.dumps(e) for e in schema["enum"])
        return f"{where}{json.dumps(value)[:60]} is not one of {choices}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}{value} is below the minimum {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}{value} is above the maximum {schema['maximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}{value!r} is shorter than {schema['minLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where}{value[:60]!r} does not match {schema['pattern']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where}expected at least {schema['minItems']} item(s), got {len(value)}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where}expected at most {schema['maxItems']} item(s), got {len(value)}"
        if "items" in schema:
            for i, item in enumerate(value):
                problem = check(item, schema["items"], f"{at}[{i}]")
                if problem:
                    return problem
    if isinstance(value, dict):
        return _check_object(value, schema, at)
    return None


def _check_object(value: dict[str, Any], schema: Schema, at: str) -> str | None:
    where = f"at {at}: " if at else ""
    missing = [k for k in schema.get("required", ()) if k not in value]
    if missing:
        return f"{where}missing key {missing[0]!r}"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = f"{at}.{key}" if at else key
        if key in properties:
            problem = check(item, properties[key], sub)
        elif extra is False:
            problem = f"{where}unexpected key {key!r}"
        elif isinstance(extra, dict):
            problem = check(item, extra, sub)
        else:
            problem = None
        if problem:
            return problem
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(path: str | os.PathLike[str], schema: Schema, *, fix: str,
              error: type[NpukitError] = ArtifactError, name: str | None = None) -> Any:
    """The JSON document at `path`, which must fit `schema`; anything else is one `error` line
    "<name>: <problem>; <fix>", `name` being the path unless given (e.g. a bundle member's)."""
    return parse_json(read_bytes(path, fix=fix, error=error, name=name), schema, fix=fix,
                      error=error, name=name or str(path))


def read_bytes(path: str | os.PathLike[str], *, fix: str,
               error: type[NpukitError] = ArtifactError, name: str | None = None,
               limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file `path` (at most `limit`), or one `error` line saying why."""
    path = Path(path)
    shown = name or str(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise error(f"{shown}: is a directory, not a file; {fix}")
        if size > limit:
            raise error(f"{shown}: {size:,} bytes, more than any npukit file ({limit:,}); {fix}")
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{shown}: missing; {fix}") from None
    except OSError as e:
        raise error(f"{shown}: cannot be read ({e.strerror or e}); {fix}") from None


def parse_json(raw: bytes, schema: Schema, *, fix: str, name: str,
               error: type[NpukitError] = ArtifactError) -> Any:
    """`raw` (the bytes of the file `name`) as a JSON document fitting `schema`, or one line."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise error(f"{name}: not UTF-8 text, so not JSON; {fix}") from None
    except ValueError as e:
        raise error(f"{name}: not valid JSON ({e}); {fix}") from None
    problem = check(data, schema)
    if problem:
        raise error(f"{name}: {problem}; {fix}")
    return data


def load_npy(path: str | os.PathLike[str], what: str, *, shape: Sequence[int] | None = None,
             kinds: str = "iuf", error: type[NpukitError] = ArtifactError,
             max_bytes: int = MAX_NPY_BYTES) -> np.ndarray:
    """The array in the `.npy` file `path` (the parameter `what`), checked before its data is read.

    The header's dtype (numbers of `kinds`, never Python objects), shape and size are checked
    against `shape` and the file's length first, so a header claiming 10^12 elements allocates
    nothing; float values must be finite.
    """
    shown = str(path) if len(str(path)) <= 120 else f"{str(path)[:60]}...{str(path)[-40:]}"
    head = f"{what} {shown}"
    p = Path(path)
    try:
        if not p.is_file():
            raise error(f"{what} {shown!r}: no such .npy file")
        size = p.stat().st_size
        if size == 0:
            raise error(f"{head}: the file is empty; write it with numpy.save")
        with open(p, "rb") as f:
            header = _npy_header(f, head, error)
            dtype, shape_found, fortran = header
            offset = f.tell()
            if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None:
                raise error(f"{head}: holds {dtype} values; expected real numbers "
                            f"({_kind_names(kinds)}) saved with numpy.save")
            if shape is not None and tuple(shape_found) != tuple(shape):
                want = (f"{shape[0]} values" if len(shape) == 1 else f"shape {tuple(shape)}")
                raise error(f"{head}: expected {want}, the file holds shape {tuple(shape_found)}")
            nbytes = math.prod(shape_found) * dtype.itemsize
            if nbytes > max_bytes:
                raise error(f"{head}: its header claims {nbytes:,} bytes of data, more than a "
                            f"parameter file may hold ({max_bytes:,})")
            if size - offset != nbytes:
                raise error(f"{head}: its header claims {nbytes:,} bytes of data, the file has "
                            f"{size - offset:,} (truncated or not written by numpy.save)")
            data = f.read(nbytes)
    except OSError as e:
        raise error(f"{head}: cannot be read ({e.strerror or e})") from None
    values = np.frombuffer(data, dtype=dtype).reshape(shape_found, order="F" if fortran else "C")
    if dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values.ravel(order="K")))[0])
        raise error(f"{head}: value {values.ravel(order='K')[bad]} at index {bad} is not finite")
    return values.copy()


def _npy_header(f: Any, head: str,
                error: type[NpukitError]) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    """(dtype, shape, fortran order) from an open .npy file, or one line saying why not."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError):
        raise error(f"{head}: not a .npy file (no valid numpy header); write it with "
                    "numpy.save") from None
    return dtype, tuple(int(n) for n in shape), bool(fortran)


def _kind_names(kinds: str) -> str:
    names = {"i": "integers", "u": "unsigned integers", "f": "floats"}
    return " or ".join(names[k] for k in kinds)

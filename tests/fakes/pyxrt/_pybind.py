"""What pybind11 does at the boundary of XRT's pyxrt: enum values and argument conversion.

pyxrt (XRT src/python/pybind11/src/pyxrt.cpp) binds every enum with `py::enum_` and every
method with fixed C++ parameter types, so a wrong Python type never reaches XRT: pybind11 raises
TypeError("incompatible function arguments"). The fake enforces the same, from pybind11's own
rules (pybind11.h enum_base, cast.h type_caster for integers).
"""

from __future__ import annotations

import operator
from typing import Any

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
SIZE_T = (0, 2**64 - 1)


class PybindEnum:
    """One value of a `py::enum_`: not an int, no ordering or arithmetic; int() gives the value.

    pybind11 makes `==` against a plain int true only for an unscoped C enum (`is_convertible`,
    e.g. ert_cmd_state, xclBOSyncDirection); a scoped `enum class` (xrt::bo::flags) compares
    equal to nothing but its own type's values.
    """

    __slots__ = ("name", "value")
    convertible = True  # overridden per enum type

    def __init__(self, name: str, value: int) -> None:
        self.name = name
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self.value == other.value  # type: ignore[attr-defined]
        if not type(self).convertible or other is None:
            return False
        return bool(self.value == other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {self.value}>"

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


def make_enum(name: str, members: dict[str, int], *, convertible: bool) -> type[PybindEnum]:
    """A `py::enum_` type named `name`, its values as class attributes."""
    cls = type(name, (PybindEnum,), {"__slots__": (), "convertible": convertible})
    values = {key: cls(key, value) for key, value in members.items()}
    for key, v in values.items():
        setattr(cls, key, v)
    cls.__members__ = values  # type: ignore[attr-defined]
    return cls


def incompatible(function: str, signatures: list[str], args: tuple[Any, ...]) -> TypeError:
    """The TypeError pybind11 raises when no overload accepts the arguments."""
    listed = "\n".join(f"    {i}. {s}" for i, s in enumerate(signatures, 1))
    shown = ", ".join(repr(a) for a in args)
    return TypeError(
        f"{function}(): incompatible function arguments. The following argument types are "
        f"supported:\n{listed}\n\nInvoked with: {shown}"
    )


def is_integer(value: Any, bounds: tuple[int, int]) -> bool:
    """True if pybind11's integer caster accepts `value` for a C integer within `bounds`.

    It refuses floats (even 68.0), None and strings, and anything out of range; it accepts
    Python ints (bool included) and objects with __index__ (numpy integers, enum values).
    """
    if isinstance(value, float):
        return False
    try:
        v = operator.index(value)
    except TypeError:
        return False
    return bounds[0] <= v <= bounds[1]

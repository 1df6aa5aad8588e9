"""The KernelSpec base: typed parameters, validation, derived sizes, host buffers, memory plan.

Every kernel is one subclass: it declares its parameters, checks their combinations, derives
the integer constants the core code needs, and owns its golden model and float reference.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from codegen import banks
from runtime.errors import NpukitError
from runtime.loader import load_npy
from runtime.manifest import BufferSpec

if TYPE_CHECKING:
    from codegen.cost import Workload

# NPU_FACTS 1 and 2: a compute tile has 64 KiB of data memory, a mem tile 512 KiB.
CORE_MEMORY = 64 * 1024
MEM_TILE_MEMORY = 512 * 1024
# NPU_FACTS 1: Phoenix gives a design at most 4 columns (column 0 is the driver's); Strix 8.
DEVICE_COLUMNS = {
    "npu1": 4, "npu1_1col": 1, "npu1_2col": 2, "npu1_3col": 3,
    "npu2": 8, **{f"npu2_{n}col": n for n in range(1, 8)},
}


class SpecError(NpukitError):
    """A parameter, or a combination of parameters, that no design can be rendered for."""


@dataclass(frozen=True)
class Param:
    """One typed kernel parameter with its default, limits and help text."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    choices: tuple[Any, ...] | None = None
    positive: bool = False

    def parse(self, raw: Any) -> Any:
        """Turn a command-line string (or a Python value) into a checked value of this type."""
        value = self._coerce(raw)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise SpecError(f"{self.name} {value} is not one of: {allowed}")
        if self.positive and not value > 0:
            raise SpecError(f"{self.name} {value} must be positive")
        if self.minimum is not None and value < self.minimum:
            raise SpecError(f"{self.name} {value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise SpecError(f"{self.name} {value} is above the maximum {self.maximum}")
        if self.multiple_of and value % self.multiple_of:
            raise SpecError(f"{self.name} {value} is not a multiple of {self.multiple_of}")
        return value

    def _coerce(self, raw: Any) -> Any:
        if isinstance(raw, self.type) and not (self.type is int and isinstance(raw, bool)):
            if self.type is float and not math.isfinite(raw):
                raise SpecError(f"{self.name}={raw!r} is not a finite float")
            return raw
        text = str(raw).strip()
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if self.type is int:
                return int(text, 0)
            if self.type is float:
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
                return value
            return self.type(text)
        except ValueError:
            raise SpecError(
                f"{self.name}={text!r} is not a valid {self.type.__name__}"
            ) from None


def fifo_depth_param() -> Param:
    return Param("fifo_depth", int, 2, "object FIFO depth (2 = double buffering)", 1, 4)


def scale_param(name: str, default: float, help: str) -> Param:
    """A quantisation scale: real value = scale x integer; positive and finite."""
    return Param(name, float, default, help, positive=True)


def runtime_params_param() -> Param:
    """RTPARAMS: 1 moves the per-layer values into an input buffer, one build for every layer."""
    return Param("runtime_params", int, 0, "1: per-layer values (scales, bias, ...) come in an "
                 "input buffer at run time, so one build serves every layer of this shape",
                 choices=(0, 1))


def refuse_runtime_values(spec: KernelSpec, names: tuple[str, ...], buffer: str) -> None:
    """With runtime_params=1 the value parameters `names` are per-call data in input `buffer`:
    one set away from its default is refused (the manifest records defaults, so those pass)."""
    if not spec.params.get("runtime_params"):
        return
    defaults = {p.name: p.default for p in spec.PARAMS}
    for name in names:
        if spec.params[name] != defaults[name]:
            raise SpecError(f"{name} is a per-call value with runtime_params=1: pass it in the "
                            f"{buffer} input (see spec.pack_params)")


def check_value_names(kernel: str, values: Mapping[str, Any], names: Sequence[str],
                      required: Sequence[str] | None = None, note: str = "") -> None:
    """pack_params' keyword values: every `required` one (default: all `names`) given and
    none unknown, else one SpecError line naming the first wrong one."""
    unknown = sorted(set(values) - set(names))
    missing = [n for n in (names if required is None else required) if n not in values]
    if unknown or missing:
        what = f"unknown value {unknown[0]!r}" if unknown else f"missing value {missing[0]!r}"
        raise SpecError(f"pack_params: {what}; {kernel} takes {', '.join(names)}"
                        + (f" ({note})" if note else ""))


CORE_PATHS = ("scalar", "vector")


def path_param() -> Param:
    """Which MAC code the core runs: the scalar reference loop or the AIE API vector path."""
    return Param("path", str, "scalar", "core code path: scalar (reference) or vector (AIE API "
                 "mmul)", choices=CORE_PATHS)


def device_param() -> Param:
    return Param("device", str, "npu1_1col", "target device", choices=tuple(DEVICE_COLUMNS))


@dataclass(frozen=True)
class Accuracy:
    """Targets of the golden model against the float reference (KERNELS.md).

    `min_pearson` None: Pearson is printed, never decisive (KERNELS.md, attention).
    `max_bias` bounds the mean signed error in LSB: a floor where the scheme rounds to nearest
    stays within 1 LSB everywhere, yet shifts every output by half an LSB on average."""

    min_pearson: float | None
    min_within_1: float
    max_diff: int
    max_bias: float | None = None

    def met(self, pearson: float, within_1: float, max_diff: float) -> bool:
        return ((self.min_pearson is None or pearson >= self.min_pearson)
                and within_1 >= self.min_within_1 and max_diff <= self.max_diff)


MEMORY_KINDS = ("buffer", "stack", "static")


@dataclass(frozen=True)
class MemoryItem:
    """One thing that lives in a tile's data memory, by how it gets its address: `count`
    buffers that aiecc places (FIFO elements, `aie.buffer`s), the stack (at address 0), or the
    core object's static data (tables: Peano's linker script puts them above the buffers)."""

    name: str
    bytes_each: int
    count: int = 1
    kind: str = "buffer"

    def __post_init__(self) -> None:
        if self.kind not in MEMORY_KINDS:
            raise ValueError(f"memory item kind {self.kind!r} is not one of {MEMORY_KINDS}")

    @property
    def total(self) -> int:
        return self.bytes_each * self.count


@dataclass
class TilePlan:
    """The data-memory budget of one tile: what it holds and what it may hold."""

    tile: tuple[int, int]
    capacity: int
    items: list[MemoryItem] = field(default_factory=list)

    @property
    def used(self) -> int:
        return sum(i.total for i in self.items)

    def of_kind(self, kind: str) -> int:
        return sum(i.total for i in self.items if i.kind == kind)

    def buffers(self) -> list[tuple[str, int]]:
        """(name, bytes) of each buffer aiecc places, one per FIFO element."""
        return [(f"{i.name}[{k}]" if i.count > 1 else i.name, i.bytes_each)
                for i in self.items if i.kind == "buffer" for k in range(i.count)]

    @property
    def banks(self) -> int:
        return banks.CORE_BANKS if self.capacity == CORE_MEMORY else banks.MEM_TILE_BANKS

    def place(self, scheme: str) -> list[banks.Placed] | None:
        return banks.place(scheme, self.buffers(), self.capacity, self.banks,
                           self.of_kind("stack"))

    def describe(self) -> str:
        parts = ", ".join(
            f"{i.name} {i.bytes_each:,}" + (f" x {i.count}" if i.count > 1 else "")
            for i in self.items
        )
        return f"tile{self.tile}: {parts}"


def quantize_multiplier(real: float, bits: int, what: str) -> tuple[int, int]:
    """Represent `real` > 0 as m * 2**-shift with m in [2**(bits-1), 2**bits)."""
    if not real > 0 or not math.isfinite(real):
        raise SpecError(f"{what} {real} must be a positive finite number")
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2**exponent, mantissa in [0.5, 1)
    m = round(mantissa * (1 << bits))
    shift = bits - exponent
    if m == 1 << bits:
        m //= 2
        shift -= 1
    return m, shift


class KernelSpec(ABC):
    """A kernel's parameters plus everything derived from them."""

    name: ClassVar[str]
    summary: ClassVar[str]
    PARAMS: ClassVar[tuple[Param, ...]]
    #: files of mlir/<name>/ that make up the core source (compiled for host and aie2)
    CORE_SOURCES: ClassVar[tuple[str, ...]]
    #: symbol of the core function each `func.call` reaches, and its object name
    CORE_SYMBOLS: ClassVar[tuple[str, ...]]
    #: what the golden model must reach against the float reference
    ACCURACY: ClassVar[Accuracy]

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        given = dict(params or {})
        known = {p.name: p for p in self.PARAMS}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise SpecError(
                f"unknown parameter {unknown[0]!r} for kernel {self.name}; "
                f"known: {', '.join(known)}"
            )
        self.params: dict[str, Any] = {
            p.name: p.parse(given[p.name]) if p.name in given else p.default for p in self.PARAMS
        }
        for name, value in self.params.items():
            # A data file is recorded by its absolute path, so the manifest works from anywhere.
            if is_data_file(value, name):
                self.params[name] = str(Path(value).resolve())
        self.validate()

    def __getattr__(self, item: str) -> Any:
        params = self.__dict__.get("params")
        if params is not None and item in params:
            return params[item]
        raise AttributeError(item)

    @property
    def variant(self) -> str:
        """A readable directory name: the parameters that differ from their defaults."""
        changed = [
            f"{p.name}{_slug(self.params[p.name])}"
            for p in self.PARAMS
            if self.params[p.name] != p.default
        ]
        return "_".join(changed) if changed else "default"

    @property
    def core_path(self) -> str:
        """scalar or vector: the `path` parameter where the kernel has one, else scalar."""
        return str(self.params.get("path", "scalar"))

    @property
    def object_name(self) -> str:
        return f"{self.name}.o"

    @abstractmethod
    def validate(self) -> None:
        """Check the parameter combination; raise SpecError naming the limit."""

    @abstractmethod
    def buffers(self) -> list[BufferSpec]:
        """The host buffers, in runtime-sequence (= XRT argument) order."""

    @abstractmethod
    def memory_plan(self) -> list[TilePlan]:
        """The data memory of every tile the design uses."""

    @abstractmethod
    def render_context(self) -> dict[str, Any]:
        """Everything the templates see."""

    @abstractmethod
    def random_inputs(self, seed: int) -> list[np.ndarray]:
        """Seeded, realistic inputs in input-buffer order."""

    @abstractmethod
    def golden(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The bit-exact model of the core code: outputs in output-buffer order."""

    @abstractmethod
    def reference(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The float64 reference on dequantised inputs, quantised once at the end."""

    def param_files(self) -> dict[str, str]:
        """sha256 of each data file a parameter names: its content is part of the build."""
        return {
            name: hashlib.sha256(Path(value).read_bytes()).hexdigest()
            for name, value in sorted(self.params.items())
            if is_data_file(value, name)
        }

    def stale_param_files(self, recorded: dict[str, str]) -> list[str]:
        """Parameters whose data file changed since a build recorded `recorded` (source_hashes)."""
        return [
            f"{name} {self.params[name]} changed since the build; rebuild"
            for name, digest in self.param_files().items()
            if recorded.get(f"param:{name}") != digest
        ]

    def accuracy_problems(self, inputs: list[np.ndarray]) -> list[str]:
        """How the golden model misses ACCURACY against the float reference (empty: it meets it)."""
        problems = []
        for k, (g, r) in enumerate(zip(self.golden(inputs), self.reference(inputs), strict=True)):
            pearson, within1, worst = accuracy_figures(g, r)
            target = self.ACCURACY
            if not target.met(pearson, within1, worst):
                problems.append(
                    f"output {k}: golden vs float reference pearson {pearson:.6f} "
                    f"(target {target.min_pearson or 'none'}), within 1 LSB {within1:.2%} "
                    f"(target {target.min_within_1:.1%}), max diff {worst} "
                    f"(target {target.max_diff})"
                )
            bias = mean_error(g, r)
            if target.max_bias is not None and abs(bias) > target.max_bias:
                problems.append(f"output {k}: golden vs float reference mean error {bias:+.3f} "
                                f"LSB (target within ±{target.max_bias})")
        return problems

    def workload(self) -> Workload:
        """The design's `codegen.cost.Workload`: what one invocation computes and moves."""
        raise SpecError(f"kernel {self.name} has no cost model yet (its spec has no workload())")

    def core_data(self) -> list[MemoryItem]:
        """Data the core code keeps in each core's memory that the design does not declare."""
        return []

    def notes(self) -> list[str]:
        """What the build should tell its user about these parameters (kept in the manifest)."""
        return []

    def edge_inputs(self) -> list[tuple[str, list[np.ndarray]]]:
        """Named edge cases: zeros and the int8 extremes, in input-buffer order."""
        cases = []
        for label, fill in (("zeros", 0), ("max", 127), ("min", -128)):
            cases.append(
                (label, [np.full(b.shape, fill, dtype=b.dtype) for b in self.inputs()])
            )
        rng = np.random.default_rng(0xE0)
        cases.append(
            ("extremes", [
                rng.choice(np.array([-128, 127], dtype=b.dtype), size=b.shape)
                for b in self.inputs()
            ])
        )
        return cases

    def inputs(self) -> list[BufferSpec]:
        return [b for b in self.buffers() if b.direction == "in"]

    def outputs(self) -> list[BufferSpec]:
        return [b for b in self.buffers() if b.direction == "out"]

    def alloc_scheme(self) -> str:
        """aiecc's `--alloc-scheme` for this design: bank-aware where it places every tile's
        buffers (a buffer above 16 KiB fits no core bank), else basic-sequential."""
        return alloc_scheme(self.memory_plan())

    def check_memory(self) -> None:
        """Every tile's data fits its memory, and the static data fits above the buffers
        (`codegen.banks`); the message names the tile, the sizes and the limit."""
        plans = self.memory_plan()
        for plan in plans:
            if plan.used > plan.capacity:
                raise SpecError(
                    f"tile buffers need {plan.used:,} bytes, a "
                    f"{'core' if plan.capacity == CORE_MEMORY else 'mem tile'} has "
                    f"{plan.capacity:,} ({plan.describe()})"
                )
        scheme = alloc_scheme(plans)
        for plan in plans:
            problem = static_data_problem(plan, scheme)
            if problem:
                raise SpecError(f"{problem}; lower fifo_depth or the tile sizes")


def alloc_scheme(plans: list[TilePlan]) -> str:
    """One scheme for the whole design (aiecc's option is global): bank-aware if it places
    every tile, else basic-sequential."""
    if all(plan.place(banks.BANK_AWARE) is not None for plan in plans):
        return banks.BANK_AWARE
    return banks.BASIC_SEQUENTIAL


def static_data_problem(plan: TilePlan, scheme: str) -> str:
    """Why the tile's buffers or static data do not fit under `scheme` (empty when they do)."""
    placed = plan.place(scheme)
    if placed is None:
        return (f"{plan.describe()}: the buffers do not fit the tile's {plan.capacity:,} bytes "
                f"under {scheme} allocation")
    static = plan.of_kind("static")
    end = banks.highest_end(placed, plan.of_kind("stack"))
    if static > plan.capacity - end:
        tables = ", ".join(f"{i.name} {i.total:,}" for i in plan.items if i.kind == "static")
        return (f"tile{plan.tile}: the core's static data ({tables}: {static:,} bytes) does not "
                f"fit above its buffers: with {scheme} allocation the highest buffer ends at "
                f"{end:,}, leaving {plan.capacity - end:,} of {plan.capacity:,} bytes (Peano's "
                "linker script places .data/.rodata/.bss from there)")
    return ""


def accuracy_figures(golden: np.ndarray, reference: np.ndarray) -> tuple[float, float, int]:
    """(Pearson, share within 1 LSB, max abs difference) of two integer outputs."""
    g = np.asarray(golden, dtype=np.float64).ravel()
    r = np.asarray(reference, dtype=np.float64).ravel()
    diff = np.abs(g - r)
    with np.errstate(invalid="ignore", divide="ignore"):
        pearson = float(np.corrcoef(g, r)[0, 1]) if g.size > 1 else float("nan")
    return pearson, float((diff <= 1).mean()), int(diff.max())


def mean_error(golden: np.ndarray, reference: np.ndarray) -> float:
    """The mean signed difference golden - reference, in LSB: a rounding bias shows here."""
    g = np.asarray(golden, dtype=np.float64).ravel()
    return float((g - np.asarray(reference, dtype=np.float64).ravel()).mean())


def load_vector(path: str, n: int, what: str) -> np.ndarray:
    """n finite float64 values from a .npy file; a SpecError names the parameter, the file and
    the problem (runtime.loader checks the header before any data is read)."""
    return load_npy(path, what, shape=(n,), error=SpecError).astype(np.float64)


def load_int_vector(path: str, n: int, what: str, bits: int) -> np.ndarray:
    """n signed `bits`-bit integers from a .npy file of integers (or of whole-number floats)."""
    values = load_npy(path, what, shape=(n,), error=SpecError)
    if values.dtype.kind == "f":
        fractional = np.flatnonzero(values != np.round(values))
        if fractional.size:
            i = int(fractional[0])
            raise SpecError(f"{what} {path}: value {values[i]} at index {i} is not a whole number")
    wide = values.astype(np.float64) if values.dtype.kind == "f" else values
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    outside = np.flatnonzero((wide < lo) | (wide > hi))
    if outside.size:
        i = int(outside[0])
        raise SpecError(f"{what} {path}: value {values[i]} at index {i} is outside int{bits} "
                        f"({lo}..{hi})")
    return values.astype(np.int64)


def is_data_file(value: Any, what: str) -> bool:
    """True when `value` names an existing .npy file; a name the OS refuses (too long) is a
    SpecError naming the parameter, not a bare OSError."""
    if not (isinstance(value, str) and value.endswith(".npy")):
        return False
    try:
        return Path(value).is_file()
    except OSError as e:
        shown = value if len(value) <= 80 else f"{value[:40]}...{value[-30:]}"
        raise SpecError(f"{what} {shown!r}: {e.strerror or e} ({len(value)} characters); "
                        "give a shorter path") from None


def _slug(value: Any) -> str:
    """A directory-safe rendering of a parameter value; paths and odd strings become a hash."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}".replace("-", "m").replace("+", "")
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9.]{1,24}", text):
        return text
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:8]


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (the rounding every npukit kernel uses)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def saturate_i8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -128, 127).astype(np.int8)

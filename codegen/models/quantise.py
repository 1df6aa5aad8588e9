"""Quantisation: per-output-channel int8 weights, per-tensor activation scales from audio.

Weights: scale_j = max|W[:, j]| / 127 per output channel j (a conv's or a linear layer's output),
so no weight saturates. Activations: each int8 tensor of the graph gets one scale from the float
encoder's values on the calibration clips: the `percentile` of |x| (100 = the maximum) over 127.
The report gives, per tensor, the range seen, the range the scale covers and the share of values
it clips; a scale that clips more than `max_clipped` of a tensor is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from codegen.spec import round_half_away, saturate_i8
from runtime.errors import NpukitError

QMAX = 127
DEFAULT_MAX_CLIPPED = 0.01  # refuse a scale that saturates more than 1% of a tensor
WARN_CLIPPED = 0.001


class CalibrationError(NpukitError):
    """A calibration that would saturate a tensor, or that has nothing to calibrate on."""


@dataclass(frozen=True)
class TensorScale:
    """One activation tensor's calibration: its scale and what the clips showed."""

    name: str
    scale: float
    seen_min: float
    seen_max: float
    covered: float  # the scale covers [-covered, covered]
    clipped: float  # share of the calibration values beyond `covered`

    def to_json(self) -> dict[str, float | str]:
        return asdict(self)


def weight_scales(w: np.ndarray) -> np.ndarray:
    """Per-output-channel scales of B [K, N]: column j's max |value| / 127 (a zero column: 1)."""
    peak = np.abs(w).max(axis=0)
    return np.where(peak > 0, peak / QMAX, 1.0)


def quantise(x: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """sat(round_half_away(x / scale)) as int8."""
    return saturate_i8(round_half_away(np.asarray(x, dtype=np.float64) / scale))


def calibrate(runs: Sequence[dict[str, np.ndarray]], names: Iterable[str], *,
              percentile: float = 100.0,
              max_clipped: float = DEFAULT_MAX_CLIPPED) -> dict[str, TensorScale]:
    """A scale per tensor in `names` from the float encoder's tensors on each calibration clip."""
    if not runs:
        raise CalibrationError("calibration needs at least one audio clip")
    if not 50.0 < percentile <= 100.0:
        raise CalibrationError(f"calibration percentile {percentile} must be in (50, 100]")
    out = {}
    for name in names:
        values = np.concatenate([np.abs(r[name]).ravel() for r in runs])
        covered = float(np.percentile(values, percentile)) if percentile < 100 else float(
            values.max())
        if not covered > 0:
            covered = 1.0  # an all-zero tensor: any scale represents it exactly
        clipped = float((values > covered * (1 + 1e-12)).mean())
        lo = min(float(r[name].min()) for r in runs)
        hi = max(float(r[name].max()) for r in runs)
        out[name] = TensorScale(name, covered / QMAX, lo, hi, covered, clipped)
        if clipped > max_clipped:
            raise CalibrationError(
                f"calibration of {name}: scale {covered / QMAX:.4g} (range ±{covered:.4g}) clips "
                f"{clipped:.2%} of its values (seen {lo:.4g}..{hi:.4g}), more than "
                f"{max_clipped:.2%}; raise the percentile"
            )
    return out


def report_lines(scales: dict[str, TensorScale]) -> list[str]:
    """The calibration report, one line per tensor, a warning mark where anything clips."""
    lines = [f"{'tensor':<14} {'seen min':>10} {'seen max':>10} {'covers ±':>10} "
             f"{'scale':>10} {'clipped':>8}"]
    for s in scales.values():
        mark = "  WARNING: clips" if s.clipped > WARN_CLIPPED else ""
        lines.append(f"{s.name:<14} {s.seen_min:>10.4g} {s.seen_max:>10.4g} {s.covered:>10.4g} "
                     f"{s.scale:>10.4g} {s.clipped:>8.3%}{mark}")
    return lines

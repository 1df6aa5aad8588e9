"""The runtime overhead benchmark runs end to end on the fake pyxrt (figures are not asserted)."""

from __future__ import annotations

import sys

import pytest

from bench import runtime_overhead
from tests.test_runtime_support import forget_pyxrt


def test_bench_runs_every_pattern(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    forget_pyxrt(monkeypatch)
    assert runtime_overhead.main(["--calls", "20"]) == 0
    out = capsys.readouterr().out
    for name in ("npukit (outputs copied)", "seed per-call pattern (BOs made once)",
                 "allocating per-call pattern (new BOs)",
                 "ratio seed per-call pattern (BOs made once) / npukit",
                 "ratio allocating per-call pattern (new BOs) / npukit"):
        assert name in out

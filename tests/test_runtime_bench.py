"""The runtime overhead benchmark runs end to end on the fake pyxrt (figures are not asserted)."""

from __future__ import annotations

import sys

import pytest

from bench import runtime_overhead
from tests.test_runtime_support import forget_pyxrt


def test_bench_runs_both_patterns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    forget_pyxrt(monkeypatch)
    assert runtime_overhead.main(["--calls", "20"]) == 0
    out = capsys.readouterr().out
    for name in ("npukit (outputs copied)", "original per-call pattern", "ratio original / npukit"):
        assert name in out

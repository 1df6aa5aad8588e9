"""The emulator-cost benchmark runs end to end (its figures are printed, not asserted)."""

from __future__ import annotations

import pytest

from bench import emulator_cost


def test_emulator_bench_reports_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert emulator_cost.main(["--calls", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "ratio" in line]
    assert len(lines) == len(emulator_cost.CASES)

"""The mutation sweep's own rules: its mutants still apply, and a stale one is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.mutants import MUTANTS
from devtools.mutation import ROOT, Mutant, apply


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_every_mutant_applies_to_this_tree_exactly_once(mutant: Mutant) -> None:
    """Code that moved on makes a mutant stale: update its text here, or the sweep says so."""
    for file, find, put in mutant.edits():
        text = (ROOT / file).read_text()
        assert text.count(find) == 1, f"{mutant.id}: {find!r} occurs {text.count(find)} times"
        assert find != put


def test_ids_are_unique_and_each_names_its_tests() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    assert all(m.tests and m.claim for m in MUTANTS)


def test_apply_edits_a_copy_and_names_what_does_not_apply(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")
    ok = Mutant("m", "t", "a.py", "x = 1", "x = 2", ("tests",), "claim",
                also=(("a.py", "y = 2", "y = 3"),))
    assert apply(ok, tmp_path) is None
    assert (tmp_path / "a.py").read_text() == "x = 2\ny = 3\n"
    gone = Mutant("g", "t", "a.py", "z = 9", "z = 0", ("tests",), "claim")
    assert apply(gone, tmp_path) == "its text occurs 0 times in a.py (expected once)"
    missing = Mutant("f", "t", "b.py", "x", "y", ("tests",), "claim")
    assert apply(missing, tmp_path) == "b.py does not exist"

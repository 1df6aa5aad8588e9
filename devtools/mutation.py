"""A mutation sweep: apply one hand-picked bug at a time to a copy of the tree, run the tests
that should catch it, and report which bugs the suite lets through.

The working tree is never touched: each mutant runs in its own temporary copy of the files git
knows (tracked and untracked-but-not-ignored). A mutant whose text is no longer in its file is
reported `stale` (the code moved on; edit the mutant), so a sweep never passes by not running.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: replace `find` (which must occur exactly once) in `file` by `put`.

    `also` holds further (file, find, put) edits of the same bug, e.g. the golden model and the
    core changed together, which only the accuracy targets can catch.
    """

    id: str
    area: str
    file: str
    find: str
    put: str
    tests: tuple[str, ...]  # pytest arguments: the tests that claim to catch it
    claim: str  # what the bug breaks, in the words of the README or a docstring
    also: tuple[tuple[str, str, str], ...] = ()

    def edits(self) -> list[tuple[str, str, str]]:
        return [(self.file, self.find, self.put), *self.also]


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    verdict: str  # killed | survived | stale
    seconds: float
    detail: str


def _tree_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                         check=True, capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f and (root / f).is_file()]


def copy_tree(root: Path, dest: Path) -> None:
    """The files git knows, as they are in the working tree (no build/, no caches)."""
    for rel in _tree_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def apply(mutant: Mutant, tree: Path) -> str | None:
    """Apply the mutant in `tree`; the reason it cannot be applied, or None."""
    for file, find, put in mutant.edits():
        path = tree / file
        if not path.is_file():
            return f"{file} does not exist"
        text = path.read_text()
        count = text.count(find)
        if count != 1:
            return f"its text occurs {count} times in {file} (expected once)"
        path.write_text(text.replace(find, put))
    return None


def run_one(mutant: Mutant, root: Path, timeout: float) -> Outcome:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="npukit-mutant-") as tmp:
        tree = Path(tmp)
        copy_tree(root, tree)
        problem = apply(mutant, tree)
        if problem:
            return Outcome(mutant, "stale", 0.0, problem)
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-o", "addopts=", *mutant.tests]
        try:
            proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(mutant, "killed", time.monotonic() - start, "timed out")
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    seconds = time.monotonic() - start
    if proc.returncode == 0:
        return Outcome(mutant, "survived", seconds, last)
    if proc.returncode in (4, 5):  # usage error / no tests collected: the selection is wrong
        return Outcome(mutant, "stale", seconds, f"pytest exit {proc.returncode}: {last}")
    return Outcome(mutant, "killed", seconds, last)


def sweep(mutants: list[Mutant], root: Path, timeout: float) -> list[Outcome]:
    outcomes = []
    with Progress(transient=True) as progress:
        job = progress.add_task("mutants", total=len(mutants))
        for m in mutants:
            progress.update(job, description=m.id)
            outcomes.append(run_one(m, root, timeout))
            progress.advance(job)
    return outcomes


def report(outcomes: list[Outcome], console: Console) -> int:
    table = Table("mutant", "area", "verdict", "s", "detail")
    for o in outcomes:
        colour = {"killed": "green", "survived": "red", "stale": "yellow"}[o.verdict]
        table.add_row(o.mutant.id, o.mutant.area, f"[{colour}]{o.verdict}[/]",
                      f"{o.seconds:.0f}", o.detail[:70])
    console.print(table)
    killed = sum(o.verdict == "killed" for o in outcomes)
    ran = sum(o.verdict != "stale" for o in outcomes)
    console.print(f"killed {killed} of {ran} mutants ({100 * killed / max(ran, 1):.0f}%); "
                  f"{len(outcomes) - ran} stale")
    return 0 if killed == len(outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    from devtools.mutants import MUTANTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutant ids or areas")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = parser.parse_args(argv)
    console = Console()
    chosen = MUTANTS
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        chosen = [m for m in MUTANTS if m.id in wanted or m.area in wanted]
        if not chosen:
            console.print(f"[red]no mutant or area named {args.only!r}; see --list[/]")
            return 2
    if args.list:
        for m in chosen:
            console.print(f"{m.id:28} {m.area:10} {m.file}: {m.claim}")
        return 0
    return report(sweep(chosen, ROOT, args.timeout), console)


if __name__ == "__main__":
    raise SystemExit(main())

"""Atomic writes: unique temporaries, whole files only, nothing left behind by a failed write."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from runtime.atomic import write_atomic


def _hammer(write: object, n_threads: int = 6, rounds: int = 150) -> list[str]:
    errors: list[str] = []

    def work(i: int) -> None:
        for n in range(rounds):
            try:
                write(i, n)  # type: ignore[operator]
            except OSError as e:
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_parallel_tool_cache_writers_do_not_collide(tmp_path: Path) -> None:
    """tools.json is saved by every build; parallel builds once shared `tools.tmp`."""
    from codegen.toolchain import _VersionCache

    path = tmp_path / ".cache" / "tools.json"

    def save(i: int, n: int) -> None:
        cache = _VersionCache(path)
        cache.data, cache.dirty = {"writer": f"{i}-{n}"}, True
        cache.save()

    assert _hammer(save) == []
    assert json.loads(path.read_text())["writer"]
    assert [p.name for p in path.parent.iterdir()] == ["tools.json"]


def test_write_atomic_keeps_readers_whole_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    bodies = {json.dumps({"n": n, "pad": "x" * (n * 97 % 5000)}) for n in range(50)}
    seen: set[str] = set()

    def write(i: int, n: int) -> None:
        write_atomic(path, sorted(bodies)[(i * 7 + n) % len(bodies)])
        seen.add(path.read_text())

    assert _hammer(write) == []
    assert seen <= bodies  # every read saw one whole file
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]

"""Run ``-m mxscan ...`` under tracemalloc and dump snapshots at domain counts (issue #17).

    python benchmarks/tracemem.py FOLDER 50000,150000 [--census-only] -m mxscan scan ... --out results.ndjson

Both scan processes are traced: a watcher thread in the scan process, and one started again
in the probe process, a fork of it (``os.register_at_fork``; threads do not survive a fork),
follow the results file the scan writes (``--out``; plain only) and count its domain lines.
Tracing starts at the first mark, so a snapshot at a later mark holds exactly the blocks
allocated since the first and still alive: what grew (plus what is in flight at that moment).
Each mark writes ``FOLDER/<pid>-<mark>.snap`` (``tracemalloc.Snapshot.dump``) and, before
tracing starts, ``<pid>-<mark>.census``: the collector's objects by type; ``memory.py
--trace`` runs this and prints what grew between the first and the last mark.

``--census-only``: the census alone, no tracing (cheap enough for a full-size run).

Tracing costs CPU and memory of its own (the traces), from the first mark on: run times and
RSS of a traced scan are not the scan's; only the allocation sites and their sizes are.
Started at the beginning instead, it slowed a loaded machine's scan to a few domains/s.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

#: Frames kept per allocation: enough to reach our code from inside the standard library.
FRAMES = 6
#: Seconds between looks at the results file.
POLL = 0.5


def domain_lines(path: Path, position: int) -> tuple[int, int]:
    """Domain lines (host lines, whose ``ref`` comes first, left out) after ``position``,
    and the position after the last whole line."""
    try:
        with path.open("rb") as stream:
            stream.seek(position)
            data = stream.read()
    except OSError:
        return 0, position
    whole = data.rfind(b"\n") + 1
    count = sum(1 for line in data[:whole].splitlines() if b'"ref":' not in line[:40])
    return count, position + whole


def census() -> dict[str, list[int]]:
    """Objects the collector tracks (containers, instances), by type: [count, bytes of the
    objects themselves].  Cheap beside tracing; strings and numbers are not counted."""
    found: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        entry = found.setdefault(f"{kind.__module__}.{kind.__qualname__}", [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(obj)
    return found


def watch(out: Path, folder: Path, marks: list[int], trace: bool) -> None:
    seen = position = 0
    pending = sorted(marks)
    while pending:
        more, position = domain_lines(out, position)
        seen += more
        while pending and seen >= pending[0]:
            (folder / f"{os.getpid()}-{pending[0]}.census").write_text(json.dumps(census()))
            if not trace:
                pending.pop(0)
                continue
            if not tracemalloc.is_tracing():
                tracemalloc.start(FRAMES)
            tracemalloc.take_snapshot().dump(str(folder / f"{os.getpid()}-{pending.pop(0)}.snap"))
        time.sleep(POLL)


def main() -> None:
    folder, marks = Path(sys.argv[1]), [int(m) for m in sys.argv[2].split(",")]
    rest = sys.argv[3:]
    trace = rest[:1] != ["--census-only"]
    rest = rest[0 if trace else 1 :]
    if rest[:2] != ["-m", "mxscan"] or "--out" not in rest:
        raise SystemExit("usage: tracemem.py FOLDER MARKS -m mxscan scan ... --out FILE")
    out = Path(rest[rest.index("--out") + 1])

    def start() -> None:
        threading.Thread(target=watch, args=(out, folder, marks, trace), daemon=True).start()

    os.register_at_fork(after_in_child=start)
    start()
    sys.argv = ["mxscan", *rest[2:]]
    runpy.run_module("mxscan", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""``--retry-unknown`` holds digests, not names, of the domains of a results file: its plan and
its merge cost tens of bytes per domain, so that a retry of a 1M- or 10M-domain scan does not
need more memory than the scan itself (issue #17 item 4: before, a dict and a frozenset of
every name, ~200 B per domain)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine.retrypass import side_path
from mxscan import __version__
from probes.rescan import RetryRun
from tests.unit.test_retry import crashed, domains_of, host, run_line, settled

DOMAINS = 20_000
#: Bytes per domain the plan or the merge may hold at its peak (digest tables at most half
#: full, 8 bytes a slot, twice while a table grows; one parsed line at a time).
BUDGET = 64

T = TypeVar("T")


def _write(path: Path) -> None:
    with path.open("wb") as out:
        for n in range(DOMAINS):
            out.write(crashed(f"d{n}.test") if n % 1000 == 0 else settled(f"d{n}.test"))
        out.write(run_line(DOMAINS))


def _peak_per_domain(work: Callable[[], T]) -> tuple[T, float]:
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / DOMAINS


def test_retry_plan_holds_digests_not_names(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    _write(path)
    with RetryRun(path, __version__) as retry:
        (kept, redo), per_domain = _peak_per_domain(retry.plan)
    assert redo == DOMAINS // 1000 and len(kept) == DOMAINS - redo
    assert "d1.test" in kept and "d0.test" not in kept and "d1000.test" not in kept
    assert per_domain < BUDGET, f"{per_domain:.0f} B per domain"


def test_retry_merge_holds_digests_not_names(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    _write(path)
    side_path(path).write_bytes(
        host("smtp:mx@1:25", "success")
        + settled("d0.test", ref="smtp:mx@1:25", measured="new")
        + settled("new.test", ref="smtp:mx@1:25", measured="new")
        + run_line(2)
    )
    with RetryRun(path, __version__) as retry:
        merged, per_domain = _peak_per_domain(retry.merge)
    assert merged is not None
    assert (merged.replaced, merged.added, merged.finished) == (1, 1, True)
    assert per_domain < BUDGET, f"{per_domain:.0f} B per domain"
    after = domains_of(path)
    assert len(after) == DOMAINS + 1 and after["d0.test"] == "new" and after["d1.test"] == "old"

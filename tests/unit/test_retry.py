"""``--retry-unknown``'s file work (engine.retrypass, probes.rescan): which domains it redoes, and the merge
that replaces their lines only once the replacements exist (issue #18 item 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.checkpoint import finished
from engine.retrypass import RetryError, side_path
from mxscan import __version__
from probes.rescan import RetryRun
from probes.results import read_domain_records


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema_version": 2, **record}) + b"\n"


def settled(domain: str, ref: str = "", measured: str = "old") -> bytes:
    transport = [{"host": "mx", "preference": 10, "provider": None, "smtp_refs": [ref], "dane": None}]
    return dumps(
        {
            "domain": domain,
            "status": "success",
            "measured_at": measured,
            "dns": {
                "has_mx": False,
                "null_mx": True,
                "mx": {"outcome": "ok", "dnssec": "insecure"},
                "mta_sts": {"outcome": "nxdomain"},
                "tlsrpt": {"outcome": "nxdomain"},
            },
            "mx_transport": transport if ref else [],
            "posture": None,
            "errors": [],
        }
    )


def crashed(domain: str) -> bytes:
    return dumps({"domain": domain, "status": "unknown-error", "measured_at": "old", "errors": []})


def host(ref: str, status: str) -> bytes:
    return dumps({"ref": ref, "smtp": {"status": status, "detail": ""}})


def run_line(domains: int = 0, started: str = "S") -> bytes:
    return dumps({"run": {"finished": True, "domains": domains, "started": started}})


def domains_of(path: Path) -> dict[str, str]:
    return {r["domain"]: r["measured_at"] for r in read_domain_records(path)}


def test_plan_redoes_crashes_and_domains_whose_smtp_result_is_unknown_error(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(
        settled("fine.test")
        + crashed("crash.test")
        + host("smtp:mx@1:25", "unknown-error")  # e.g. OffloadLost
        + settled("lost.test", ref="smtp:mx@1:25")
        + host("smtp:mx@1:25", "success")  # a later probe of the same address settled it
        + settled("later.test", ref="smtp:mx@1:25")
        + run_line(4)
    )
    with RetryRun(path, __version__) as retry:
        kept, redo = retry.plan()
    everyone = ("fine.test", "crash.test", "lost.test", "later.test")
    assert [d for d in everyone if d in kept] == ["fine.test", "later.test"] and len(kept) == 2 and redo == 2


def test_the_merge_replaces_only_retried_domains_and_keeps_the_file_finished(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    before = settled("a.test") + crashed("b.test") + crashed("c.test") + run_line(3)
    path.write_bytes(before)
    side_path(path).write_bytes(
        host("smtp:mx@1:25", "success") + settled("b.test", ref="smtp:mx@1:25", measured="new")
    )  # a pass that stopped before c.test: no run line of its own
    with RetryRun(path, __version__) as retry:
        merged = retry.merge()
    assert merged is not None and (merged.replaced, merged.added, merged.still_unknown) == (1, 0, 0)
    assert merged.finished and finished(path) and not side_path(path).exists()
    assert domains_of(path) == {"a.test": "old", "c.test": "old", "b.test": "new"}
    last = orjson.loads(path.read_bytes().splitlines()[-1])
    assert last["run"]["domains"] == 3 and last["run"]["started"] == "S"


def test_merging_into_an_unfinished_file_stays_unfinished_unless_the_pass_finished(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(settled("a.test"))  # a killed scan: no run line
    side_path(path).write_bytes(settled("b.test", measured="new"))
    with RetryRun(path, __version__) as retry:
        merged = retry.merge()
    assert merged is not None and merged.added == 1 and not merged.finished and not finished(path)
    side_path(path).write_bytes(settled("c.test", measured="new") + run_line(3, started="T"))
    with RetryRun(path, __version__) as retry:
        merged = retry.merge()
    assert merged is not None and merged.finished and finished(path)
    assert set(domains_of(path)) == {"a.test", "b.test", "c.test"}


def test_a_torn_side_file_merges_its_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(crashed("a.test") + crashed("b.test") + run_line(2))
    side_path(path).write_bytes(settled("a.test", measured="new") + b'{"schema_version":2,"domain":"b.te')
    with RetryRun(path, __version__) as retry:
        retry.merge()
    assert domains_of(path) == {"a.test": "new", "b.test": "old"} and finished(path)


def test_a_merge_redone_from_the_same_side_file_gives_the_same_file(tmp_path: Path) -> None:
    """Killed between its rename and removing the side file: the next merge repeats it."""
    path = tmp_path / "r.ndjson"
    path.write_bytes(settled("a.test") + crashed("b.test") + run_line(2))
    side = settled("b.test", measured="new")
    side_path(path).write_bytes(side)
    with RetryRun(path, __version__) as retry:
        retry.merge()
    once = path.read_bytes().splitlines()[:-1]  # the run line's end time differs
    side_path(path).write_bytes(side)
    with RetryRun(path, __version__) as retry:
        retry.merge()
    assert path.read_bytes().splitlines()[:-1] == once and finished(path)


def test_an_empty_side_file_leaves_the_results_file_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    before = settled("a.test") + crashed("b.test") + run_line(2)
    path.write_bytes(before)
    side_path(path).write_bytes(b"")
    with RetryRun(path, __version__) as retry:
        merged = retry.merge()
    assert merged is not None and merged.replaced == merged.added == 0
    assert path.read_bytes() == before and not side_path(path).exists()


def test_retry_refuses_a_missing_or_locked_or_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    with pytest.raises(RetryError, match="no results file"):
        RetryRun(path, __version__).__enter__()
    path.write_bytes(settled("a.test") + b"garbage\n" + settled("b.test"))
    with RetryRun(path, __version__) as retry:
        with pytest.raises(RetryError, match="in use"):
            RetryRun(path, __version__).__enter__()
        with pytest.raises(RetryError, match="corrupt line 2"):
            retry.plan()

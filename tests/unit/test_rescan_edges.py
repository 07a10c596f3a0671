"""Edges of the rescan rule (probes/rescan.py) that test_rescan_rule.py leaves open: records
lacking sections, the merge rules a retry pass ends its file with.  Found by mutation testing
(issue #19)."""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.retrypass import Merged, side_path
from mxscan import __version__
from probes.rescan import RescanRules, RetryRun, merged_text, needs_retry
from tests.unit.test_posture import record
from tests.unit.test_rescan_rule import REF, settled

SHARD = {"index": 2, "count": 4, "names": 1000, "list": "ab12", "options": "cd34"}


def test_a_record_without_any_section_is_kept_when_it_crashed_nowhere() -> None:
    # Nothing measured (no dns, no probes): nothing a retry could settle better.
    assert needs_retry({"domain": "a.example", "status": "success"}) is False
    assert needs_retry({"domain": "a.example", "status": "success"}, frozenset({REF})) is False


def test_an_empty_error_list_is_no_crash() -> None:
    assert needs_retry({**settled(), "errors": []}) is False


def test_a_policy_fetch_that_failed_definitely_is_kept() -> None:
    rec = settled()
    rec["mta_sts"]["fetch"] = {"status": "application-error", "http_status": 404}
    assert needs_retry(rec) is False


def test_a_crashed_ref_is_found_on_any_host_and_any_address() -> None:
    rec = settled()
    rec["mx_transport"] = [
        {"host": "mx1.example.com", "preference": 10, "smtp_refs": None},
        {"host": "mx2.example.com", "preference": 20},
        {"host": "mx3.example.com", "preference": 30, "smtp_refs": ["smtp:mx3@192.0.2.3:25", REF]},
    ]
    assert needs_retry(rec, frozenset({REF})) is True
    assert needs_retry(rec, frozenset({"smtp:mx9@192.0.2.9:25"})) is False
    assert needs_retry({**rec, "mx_transport": None}, frozenset({REF})) is False


def test_the_merge_rules_call_a_still_unknown_line_unsettled() -> None:
    rules = RescanRules(__version__)
    unknown = settled()
    unknown["posture"]["starttls"] = "unknown"
    assert (rules.unsettled(settled()), rules.unsettled(unknown)) == (False, True)
    assert rules.unsettled({**settled(), "status": "unknown-error"}) is True


def _run(line: bytes) -> dict[str, Any]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed: dict[str, Any] = orjson.loads(line)
    return parsed["run"]


def test_the_merged_files_run_line_says_who_finished_it_and_when() -> None:
    before = time.time()
    run = _run(RescanRules("9.9.9").run_line(7, {"started": "2026-01-01T00:00:00.000Z", "ended": "x"}))
    after = time.time()
    assert run["finished"] is True and run["domains"] == 7
    assert (run["tool"], run["version"], run["started"]) == ("mxscan", "9.9.9", "2026-01-01T00:00:00.000Z")
    assert run["shard"] is None and run.get("egress") is None
    # The format of every other timestamp of the file: UTC, milliseconds, a Z.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", run["ended"])
    ended = calendar.timegm(time.strptime(run["ended"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert int(before) - 1 <= ended + int(run["ended"][20:23]) / 1000 <= after + 1


def test_the_merged_run_line_ends_at_the_clocks_utc_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026-01-01T00:00:00 UTC and 1023/1024 s (exact in a float): 999 ms, never rounded up.
    monkeypatch.setattr(time, "time", lambda: 1767225600 + 1023 / 1024)
    assert _run(RescanRules(__version__).run_line(1, {}))["ended"] == "2026-01-01T00:00:00.999Z"


def test_the_merged_run_line_of_a_run_without_a_start_has_an_empty_start() -> None:
    assert _run(RescanRules(__version__).run_line(0, {}))["started"] == ""


def test_a_shards_merged_file_stays_that_shards() -> None:
    run = _run(RescanRules(__version__).run_line(3, {"started": "S", "shard": SHARD}))
    assert run["shard"] == SHARD


def test_plan_of_a_file_with_only_host_lines_and_a_run_line_redoes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    lines = [
        {"schema_version": 2, "ref": REF, "smtp": {"status": "unknown-error"}},
        {"schema_version": 2, "ref": REF},
        {"schema_version": 2, "run": {"finished": True, "domains": 0, "started": "S"}},
    ]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    with RetryRun(path, __version__) as run:
        kept, redo = run.plan()
    assert (len(kept), redo) == (0, 0)


def test_plan_a_host_line_without_an_smtp_result_clears_an_earlier_crash(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    lines = [
        {"ref": REF, "smtp": {"status": "unknown-error"}},
        {"ref": REF, "smtp": None},
        {**settled(domain="a.example")},
        {**record(domain="b.example", status="unknown-error")},
    ]
    path.write_bytes(b"".join(orjson.dumps({"schema_version": 2, **line}) + b"\n" for line in lines))
    with RetryRun(path, __version__) as run:
        kept, redo = run.plan()
    assert ("a.example" in kept, "b.example" in kept, redo) == (True, False, 1)


def test_a_merged_file_ends_with_the_retrying_versions_run_line(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    crashed = {"schema_version": 2, "domain": "a.example", "status": "unknown-error"}
    run = {"schema_version": 2, "run": {"finished": True, "domains": 1, "started": "S", "shard": SHARD}}
    path.write_bytes(orjson.dumps(crashed) + b"\n" + orjson.dumps(run) + b"\n")
    side_path(path).write_bytes(orjson.dumps({"schema_version": 2, **settled(domain="a.example")}) + b"\n")
    with RetryRun(path, "7.7.7") as retry:
        merged = retry.merge()
    assert merged is not None and (merged.replaced, merged.still_unknown, merged.finished) == (1, 0, True)
    last = _run(path.read_bytes().splitlines(keepends=True)[-1])
    assert (last["version"], last["tool"], last["domains"], last["shard"]) == ("7.7.7", "mxscan", 1, SHARD)


MERGES = [
    (None, False, None),
    (Merged(0, 0, 0, True), True, None),
    (Merged(0, 0, 0, True), False, "r.ndjson is unchanged (no domain was measured again)"),
    (Merged(3, 1, 1, True), False, "merged the retried domains into r.ndjson: 4 domains measured again, "
     "3 now settled, 1 still unknown"),
    (Merged(3, 1, 1, False), False, "merged the retried domains into r.ndjson: 4 domains measured again, "
     "3 now settled, 1 still unknown; the scan is not finished: run the same command again"),
    (Merged(2, 0, 2, False), True, "merged an interrupted --retry-unknown pass into r.ndjson: 2 domains "
     "measured again, 0 now settled, 2 still unknown"),
]  # fmt: skip


@pytest.mark.parametrize(("merged", "leftover", "text"), MERGES)
def test_a_merge_says_how_many_domains_were_measured_again_and_are_still_unknown(
    merged: Merged | None, leftover: bool, text: str | None
) -> None:
    """A pass an earlier scan left that changed nothing goes unsaid; this pass always says."""
    assert merged_text(Path("r.ndjson"), merged, leftover=leftover) == text

"""Results files with host lines: domain lines reference SMTP results by ``ref``.

What a reader must get right: the latest host line before a domain line wins,
a reference nothing defines is refused, version 1 lines (results embedded) pass
through, and resuming a file counts only domain lines as done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.checkpoint import ResultStore
from engine.status import Status
from probes.results import DanglingReference, domain_records, is_host_line, read_domain_records
from probes.smtp.records import Phase, SmtpResult, Starttls
from probes.transport import smtp_ref


def host_line(ref: str, status: str = "success", **smtp: Any) -> dict[str, Any]:
    return {"schema_version": 2, "ref": ref, "smtp": {"status": status, **smtp}}


def domain_line(domain: str, *refs: tuple[str, ...]) -> dict[str, Any]:
    transports = [{"host": f"mx{i}.{domain}", "smtp_refs": list(r)} for i, r in enumerate(refs)]
    return {"schema_version": 2, "domain": domain, "mx_transport": transports}


def addresses(record: dict[str, Any]) -> list[list[str]]:
    return [[a["status"] for a in t["addresses"]] for t in record["mx_transport"]]


def test_references_resolve_in_order_and_host_lines_are_not_domains() -> None:
    lines = [
        host_line("smtp:a@1:25"),
        host_line("smtp:b@2:25", "connection-timeout"),
        domain_line("one.test", ("smtp:a@1:25", "smtp:b@2:25")),
        domain_line("two.test", ("smtp:b@2:25",), ()),
    ]
    got = list(domain_records(lines))
    assert [r["domain"] for r in got] == ["one.test", "two.test"]
    assert addresses(got[0]) == [["success", "connection-timeout"]]
    assert addresses(got[1]) == [["connection-timeout"], []]


def test_the_latest_host_line_before_the_domain_line_wins() -> None:
    """A resumed or retried run probes a host again: earlier domains keep what they saw."""
    lines = [
        host_line("smtp:a@1:25", "io-timeout"),
        domain_line("before.test", ("smtp:a@1:25",)),
        host_line("smtp:a@1:25", "success"),
        domain_line("after.test", ("smtp:a@1:25",)),
    ]
    before, after = domain_records(lines)
    assert addresses(before) == [["io-timeout"]]
    assert addresses(after) == [["success"]]


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([domain_line("x.test", ("smtp:a@1:25",))], id="never-defined"),
        pytest.param(
            [domain_line("x.test", ("smtp:a@1:25",)), host_line("smtp:a@1:25")], id="defined-only-after"
        ),
    ],
)
def test_a_dangling_reference_is_refused_not_dropped(lines: list[dict[str, Any]]) -> None:
    with pytest.raises(DanglingReference, match="smtp:a@1:25"):
        list(domain_records(lines))


def test_schema_1_lines_with_embedded_results_pass_through() -> None:
    old = {
        "schema_version": 1,
        "domain": "old.test",
        "mx_transport": [{"host": "mx", "addresses": [{"x": 1}]}],
    }
    assert list(domain_records([old])) == [old]


def test_projection_keeps_only_what_the_reader_asks_for() -> None:
    lines = [host_line("smtp:a@1:25", banner="x" * 1000), domain_line("one.test", ("smtp:a@1:25",))]
    (got,) = domain_records(lines, project=lambda smtp: {"status": smtp["status"]})
    assert got["mx_transport"][0]["addresses"] == [{"status": "success"}]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 3)), max_size=30))
def test_any_ordered_file_resolves_each_reference_to_the_latest_definition(
    ops: list[tuple[bool, int, int]],
) -> None:
    """Model check: host lines (ref k, version v) and domain lines referencing ref k."""
    lines: list[dict[str, Any]] = []
    latest: dict[str, str] = {}
    expected: list[str | None] = []
    for is_host, k, v in ops:
        ref = f"smtp:h{k}@127.0.0.{k}:25"
        if is_host:
            lines.append(host_line(ref, f"v{v}"))
            latest[ref] = f"v{v}"
        else:
            lines.append(domain_line(f"d{len(lines)}.test", (ref,)))
            expected.append(latest.get(ref))
    if None in expected:
        with pytest.raises(DanglingReference):
            list(domain_records(lines))
        return
    assert [addresses(r)[0][0] for r in domain_records(lines)] == expected


def _smtp(host: str, address: str, port: int = 25) -> SmtpResult:
    return SmtpResult(
        host, address, port, Status.SUCCESS, Phase.DONE, Starttls.NO, 220, "", None, None, None, "", None,
        None, False, 1, "", 1.0, {},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("host", "address", "port", "ref"),
    [
        ("mx.example.com", "192.0.2.1", 25, "smtp:mx.example.com@192.0.2.1:25"),
        ("mx.example.com", "2001:db8::1", 25, "smtp:mx.example.com@[2001:db8::1]:25"),
        ("mx.example.com", "::1", 2525, "smtp:mx.example.com@[::1]:2525"),
    ],
)
def test_smtp_ref_names_host_address_and_port(host: str, address: str, port: int, ref: str) -> None:
    assert smtp_ref(_smtp(host, address, port)) == ref


def test_resume_counts_domain_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    lines = [host_line("smtp:a@1:25"), domain_line("one.test", ("smtp:a@1:25",)), host_line("smtp:b@2:25")]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    store = ResultStore(path)
    done = store.open()
    assert "one.test" in done and len(done) == 1
    assert store.side_records == 2
    store.close()
    assert [is_host_line(r) for r in map(orjson.loads, path.read_bytes().splitlines())] == [True, False, True]
    assert [r["domain"] for r in read_domain_records(path)] == ["one.test"]

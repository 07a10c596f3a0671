"""The report's reverse-DNS section (issue #16): PTR / FCrDNS of every distinct probed MX
address, overall and by provider, and the vantage with the egress verdicts at the top of
the report; read from a results file whose host lines carry ``ptr``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine.records import encode
from probes.dns.records import Outcome
from probes.dns.reverse import Fcrdns, PtrResult
from probes.domain import DomainRecord, host_line
from probes.egress import EgressVerdict, Reach
from probes.results import read_domain_records
from probes.smtp.records import SmtpResult
from probes.vantage import Vantage
from report.breakdowns import report_view_of_smtp
from report.render_text import render_text, sections
from report.summary import summarise
from tests.unit.test_report_figures import record, smtp

VANTAGE = Vantage(
    ("127.0.0.1",),
    (
        PtrResult(
            "127.0.0.1", Outcome.OK, ("scanner.mxscan.test",), Fcrdns.CONFIRMED, "scanner.mxscan.test", ""
        ),
    ),
    ("127.0.0.1",),
    True,
)
EGRESS = EgressVerdict(False, Reach.REACHABLE, Reach.BLOCKED, True)


def _ptr(address: str, fcrdns: Fcrdns, names: tuple[str, ...] = ("mx.example.net",)) -> PtrResult:
    outcome = {Fcrdns.NO_PTR: Outcome.NXDOMAIN}.get(fcrdns, Outcome.OK)
    if fcrdns is Fcrdns.UNKNOWN and not names:
        outcome = Outcome.TIMEOUT
    confirmed = names[0] if fcrdns is Fcrdns.CONFIRMED else ""
    return PtrResult(address, outcome, names if fcrdns is not Fcrdns.NO_PTR else (), fcrdns, confirmed, "")


def _write(path: Path, records: list[DomainRecord], ptrs: dict[str, PtrResult]) -> Path:
    """A results file: each host line (with its address's PTR, when given) before its first use."""
    lines: list[bytes] = []
    written: set[str] = set()
    for r in records:
        r = dataclasses.replace(r, scan=dataclasses.replace(r.scan, egress=EGRESS, vantage=VANTAGE))
        for transport, results in zip(r.mx_transport, _RESULTS[r.domain], strict=True):
            for ref, result in zip(transport.smtp_refs, results, strict=True):
                if ref not in written:
                    written.add(ref)
                    lines.append(host_line(result, ptrs.get(result.address)))
        lines.append(encode(r))
    path.write_bytes(b"".join(lines))
    return path


_RESULTS: dict[str, list[tuple[SmtpResult, ...]]] = {}


def _domain(domain: str, *hosts: tuple[str, str | None, tuple[str, ...]]) -> DomainRecord:
    """A domain whose MX hosts are (name, provider, addresses)."""
    mx = tuple((10 * i, name, prov, tuple(smtp(name, address=a) for a in addrs)) for i, (name, prov, addrs) in
               enumerate(hosts))  # fmt: skip
    _RESULTS[domain] = [probes for _, _, _, probes in mx]
    return record(domain, mx=mx)


def _world() -> tuple[list[DomainRecord], dict[str, PtrResult]]:
    google = ("aspmx.l.google.com", "google.com", ("192.0.2.1",))
    records = [
        _domain("a.example", google),
        _domain("b.example", google, ("alt.l.google.com", "google.com", ("192.0.2.2",))),
        _domain("c.example", ("mx.c.example", None, ("192.0.2.3",))),
        _domain("d.example", ("mx.d.example", None, ("192.0.2.4", "2001:db8::4"))),
        _domain("e.example", ("mx.e.example", "e-host.net", ("192.0.2.6",))),
    ]
    ptrs = {
        "192.0.2.1": _ptr("192.0.2.1", Fcrdns.CONFIRMED, ("aspmx.l.google.com",)),
        "192.0.2.2": _ptr("192.0.2.2", Fcrdns.MISMATCH),
        "192.0.2.3": _ptr("192.0.2.3", Fcrdns.NO_PTR),
        "192.0.2.4": _ptr("192.0.2.4", Fcrdns.UNKNOWN, ()),  # the PTR lookup timed out
        "2001:db8::4": _ptr("2001:db8::4", Fcrdns.UNKNOWN),  # names, forward lookup failed
        # 192.0.2.6: no ptr on its host line (not looked up)
    }
    return records, ptrs


def _summary(tmp_path: Path, top: int = 10) -> dict[str, Any]:
    records, ptrs = _world()
    path = _write(tmp_path / "r.ndjson", records, ptrs)
    return summarise(read_domain_records(path, report_view_of_smtp), top=top)


def test_ptr_verdicts_count_each_probed_address_once(tmp_path: Path) -> None:
    ptr = _summary(tmp_path)["ptr"]
    assert ptr["addresses"] == 6  # 192.0.2.1 is shared by two domains: once
    assert ptr["with_ptr"] == 3  # confirmed, mismatch, and names whose forward lookup failed
    assert ptr["labels"] == {
        "confirmed": 1,
        "mismatch": 1,
        "no-ptr": 1,
        "unknown: forward lookup failed": 1,
        "unknown: PTR lookup failed": 1,
        "not looked up": 1,
    }


def test_ptr_by_provider_ranks_providers_by_probed_addresses(tmp_path: Path) -> None:
    rows = _summary(tmp_path)["ptr"]["providers"]
    assert [(r["provider"], r["addresses"], r["with_ptr"], r["confirmed"]) for r in rows] == [
        ("(provider unknown)", 3, 1, 0),
        ("google.com", 2, 2, 1),
        ("e-host.net", 1, 0, 0),
    ]
    assert rows[1]["mismatch"] == 1 and rows[0]["no-ptr"] == 1 and rows[2]["not looked up"] == 1
    top1 = _summary(tmp_path, top=1)["ptr"]["providers"]
    assert [r["provider"] for r in top1] == ["(provider unknown)"]


def test_the_vantage_and_egress_verdicts_head_the_report(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    keys = [s.key for s in sections(summary)]
    assert keys[:2] == ["headline", "vantage"]
    text = render_text(summary)
    vantage = "127.0.0.1 (PTR scanner.mxscan.test; FCrDNS confirmed); EHLO name scanner.mxscan.test"
    assert f"{vantage} resolves to it: yes" in text
    assert "IPv4 reachable, IPv6 blocked (scanned IPv4 only)" in text
    assert "Reverse DNS (PTR / FCrDNS) of probed MX addresses" in text
    row = next(line for line in text.splitlines() if "with a PTR record" in line)
    assert row.split() == ["with", "a", "PTR", "record", "3", "50.0%"]


def test_a_file_without_ptr_reports_every_address_as_not_looked_up(tmp_path: Path) -> None:
    records, _ = _world()
    path = _write(tmp_path / "r.ndjson", records, {})
    ptr = summarise(read_domain_records(path, report_view_of_smtp))["ptr"]
    assert ptr["labels"] == {"not looked up": 6} and ptr["with_ptr"] == 0


def test_the_unprojected_reader_carries_the_host_lines_ptr_on_each_address(tmp_path: Path) -> None:
    records, ptrs = _world()
    path = _write(tmp_path / "r.ndjson", records, ptrs)
    first = next(read_domain_records(path))
    assert first["mx_transport"][0]["addresses"][0]["ptr"]["fcrdns"] == "confirmed"

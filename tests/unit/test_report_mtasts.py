"""The report's MTA-STS policy-fetch tables (issue 13, item 13): a fetch whose certificate
failed PKIX is not a success, and policy-host certificate failures are counted by reason.

Records are real DomainRecords, encoded and read back as the report commands read them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.records import encode
from engine.status import Status
from probes.dns.records import Answer, DnsResult, Dnssec, Outcome
from probes.domain import SCHEMA_VERSION, DomainRecord, ScanMeta
from probes.mtasts.match import Coverage
from probes.mtasts.policy import LineEndings, Mode, StsPolicy
from probes.mtasts.record import StsRecord
from probes.mtasts.records import MtaStsResult, PolicyFetch
from probes.tls.verify import PkixReason, PkixResult
from report.breakdowns import CERT_INVALID, STS_CERT_TITLE, STS_FETCH_TITLE
from report.render_html import render_html
from report.render_text import render_markdown, render_text
from report.summary import summarise


def _answer(name: str, rrtype: str, outcome: Outcome, data: tuple[str, ...] = ()) -> Answer:
    ttl = 300 if outcome is Outcome.OK else None
    return Answer(name, rrtype, outcome, Dnssec.INSECURE, False, ttl, (), data, "NOERROR", (), "")


def _domain(domain: str, status: Status, http_status: int | None, pkix: str | None) -> DomainRecord:
    """A domain with a valid STSv1 TXT record whose policy fetch ended with ``status`` and whose
    policy host's chain got the PKIX verdict ``pkix`` (None: no chain seen)."""
    verdict = None if pkix is None else PkixResult(pkix == "ok", PkixReason(pkix), f"{pkix} detail", "")
    fetch = PolicyFetch(
        url=f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
        address="192.0.2.9",
        status=status,
        http_status=http_status,
        content_type="text/plain" if http_status == 200 else "",
        location="",
        body_bytes=80 if http_status == 200 else 0,
        tls_version="TLSv1.3" if pkix is not None else "",
        chain=None,
        pkix=verdict,
        detail="" if status is Status.SUCCESS else f"HTTP {http_status}",
        duration_ms=1.0,
    )
    # RFC 8461 §3.3: only a 200 over a PKIX-valid chain gives a policy.
    usable = status is Status.SUCCESS and verdict is not None and verdict.valid
    policy = (
        StsPolicy(True, "STSv1", Mode.ENFORCE, (f"mx.{domain}",), 86400, LineEndings.CRLF, (), (), ())
        if usable
        else None
    )
    txt = ("v=STSv1; id=20240101",)
    mta_sts = MtaStsResult(
        record=StsRecord(present=True, valid=True, id="20240101", reasons=(), warnings=(), extensions=()),
        txt_cname=(),
        policy_host=f"mta-sts.{domain}",
        policy_host_cname=(),
        policy_host_provider=domain,
        fetch=fetch,
        policy=policy,
        coverage=Coverage((), (), (), True) if policy else None,
        mode="enforce" if policy else None,
        would_deliver=None,
        findings=(),
    )
    dns = DnsResult(
        mx=_answer(domain, "MX", Outcome.OK, (f"10 mx.{domain}",)),
        has_mx=True,
        null_mx=False,
        mx_hosts=(),
        implicit_mx=None,
        mta_sts=_answer(f"_mta-sts.{domain}", "TXT", Outcome.OK, txt),
        tlsrpt=_answer(f"_smtp._tls.{domain}", "TXT", Outcome.NXDOMAIN),
    )
    return DomainRecord(
        schema_version=SCHEMA_VERSION,
        domain=domain,
        input_line=1,
        status=Status.SUCCESS,
        reason="",
        scan=ScanMeta("mxscan", "0.1.0", "2026-11-29T00:00:00Z", "127.0.0.1:53", True, "s.test", ""),
        measured_at="2026-11-29T00:00:01.000Z",
        duration_ms=1.0,
        dns=dns,
        mx_transport=(),
        mta_sts=mta_sts,
        tlsrpt=None,
        posture=None,
        errors=(),
    )


#: name -> (fetch status, HTTP status, PKIX verdict of the policy host's chain)
WORLD = {
    "good.test": (Status.SUCCESS, 200, "ok"),
    "also-good.test": (Status.SUCCESS, 200, "ok"),
    "expired.test": (Status.SUCCESS, 200, "expired"),
    "wrong-name.test": (Status.SUCCESS, 200, "hostname-mismatch"),
    "self-signed.test": (Status.SUCCESS, 200, "self-signed"),
    "private-ca.test": (Status.SUCCESS, 200, "unknown-issuer"),
    "private-ca-404.test": (Status.APPLICATION_ERROR, 404, "unknown-issuer"),
    "good-404.test": (Status.APPLICATION_ERROR, 404, "ok"),
    "refused.test": (Status.CONNECTION_REFUSED, None, None),
}


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    records = [_domain(name, *spec) for name, spec in WORLD.items()]
    return summarise(orjson.loads(encode(r)) for r in records)


def test_a_fetch_whose_certificate_failed_is_not_counted_as_success(summary: dict[str, Any]) -> None:
    assert summary["failures"][STS_FETCH_TITLE] == {
        CERT_INVALID: 4,
        "success": 2,
        "application-error": 2,
        "connection-refused": 1,
    }


def test_policy_host_certificate_failures_are_counted_by_pkix_reason(summary: dict[str, Any]) -> None:
    # Counted per domain whatever HTTP gave after the handshake (private-ca-404 included).
    assert summary["failures"][STS_CERT_TITLE] == {
        "unknown-issuer": 2,
        "expired": 1,
        "hostname-mismatch": 1,
        "self-signed": 1,
    }


def test_the_certificate_tables_are_rendered_with_their_explanations(summary: dict[str, Any]) -> None:
    text = render_text(summary)
    for title in (STS_FETCH_TITLE, STS_CERT_TITLE):
        assert title in text and summary["failure_notes"][title] in text
    assert "certificate-invalid  4" in text and "hostname-mismatch  1" in text
    assert STS_CERT_TITLE in render_markdown(summary)
    html = render_html(summary)
    assert "policy-host certificate failures by PKIX reason" in html and "certificate-invalid" in html


def test_no_policy_host_certificate_failures_says_so() -> None:
    summary = summarise([orjson.loads(encode(_domain("good.test", Status.SUCCESS, 200, "ok")))])
    assert summary["failures"][STS_CERT_TITLE] == {}
    assert summary["failures"][STS_FETCH_TITLE] == {"success": 1}
    assert "none in this file" in render_text(summary).split(STS_CERT_TITLE)[1].split("\n\n")[0]

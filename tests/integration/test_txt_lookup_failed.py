"""A failed ``_smtp._tls`` or ``_mta-sts`` lookup is unknown, never "no record", from the
scan to the report (issue #13 item 9).

The real ``mxscan scan`` asks a tiny validating resolver on loopback
(``tests.integration.loopback_resolver``) about two domains whose MX host exists:

- ``txt-fail.test``: ``_smtp._tls`` answers SERVFAIL (also with CD=1: broken, not
  bogus) and ``_mta-sts`` never answers;
- ``txt-ok.test``: a valid TLS-RPT record and no ``_mta-sts`` name (NXDOMAIN).

Nothing listens on the SMTP port given, so the SMTP probes are refused quickly.
Then ``mxscan report --format json`` must count the first domain's TLS-RPT and
MTA-STS records as unknown, and the second's as yes and no.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import orjson
import pytest

from tests.integration.loopback_resolver import HOST, resolver

ROOT = Path(__file__).resolve().parents[2]
TLSRPT = "v=TLSRPTv1; rua=mailto:reports@txt-ok.test"

ZONE = {
    ".": {"SOA": ["a.root. n.root. 1 2 3 4 5"]},
    "txt-fail.test": {"MX": ["10 mx.txt-fail.test."]},
    "mx.txt-fail.test": {"A": [HOST]},
    "txt-ok.test": {"MX": ["10 mx.txt-ok.test."]},
    "mx.txt-ok.test": {"A": [HOST]},
    "_smtp._tls.txt-ok.test": {"TXT": [f'"{TLSRPT}"']},
}


def answer(wire: bytes) -> bytes | None:
    query = dns.message.from_wire(wire)
    question = query.question[0]
    name = question.name.to_text(omit_final_dot=True).lower() or "."
    rtype = dns.rdatatype.to_text(question.rdtype)
    if name == "_mta-sts.txt-fail.test":
        return None  # timeout
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    if name == "." and rtype == "SOA":
        reply.flags |= dns.flags.AD  # the pre-flight's signed name: a validating resolver
    if name in ("_smtp._tls.txt-fail.test", "dnssec-failed.org"):
        reply.set_rcode(dns.rcode.SERVFAIL)  # the bogus pre-flight name, and a broken TXT name
    elif name not in ZONE:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif rtype in ZONE[name]:
        owner = "." if name == "." else name + "."
        reply.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, *ZONE[name][rtype]))
    return reply.to_wire()


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("txt-fail")
    (tmp / "domains.txt").write_text("txt-fail.test\ntxt-ok.test\n")
    out = tmp / "results.ndjson"
    # The egress pre-flight's target: a loopback listener (the kernel completes the handshake),
    # so the default targets (real providers' MX hosts) are never asked for.
    with resolver(answer) as (host, port), socket.create_server((HOST, 0)) as egress:
        argv = [
            *(sys.executable, "-m", "mxscan", "scan", str(tmp / "domains.txt"), "--out", str(out)),
            *("--resolver", f"{host}:{port}", "--ehlo-name", "scanner.mxscan.test", "--inline-probes"),
            *("--egress-check", f"{HOST}:{egress.getsockname()[1]}"),
            *("--smtp-port", str(free_tcp_port()), "--smtp-retries", "0", "--smtp-connect-timeout", "2"),
            # 3 s: only the silent _mta-sts name may time out, never a late answer on a busy machine
            *("--dns-timeout", "3", "--dns-attempts", "1", "--progress", "off"),
        ]
        run = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=90, check=False)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    records = {r["domain"]: r for r in map(orjson.loads, out.read_bytes().splitlines()) if "domain" in r}
    assert {r["scan"]["egress"]["ipv4"] for r in records.values()} == {"reachable"}
    report = subprocess.run(
        [sys.executable, "-m", "mxscan", "report", str(out), "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return records, orjson.loads(report.stdout)


def test_failed_tlsrpt_lookup_is_recorded_unknown_with_the_dns_outcome(
    scanned: tuple[dict[str, dict[str, Any]], dict[str, Any]],
) -> None:
    record = scanned[0]["txt-fail.test"]
    assert record["dns"]["tlsrpt"]["outcome"] == "servfail"
    assert record["tlsrpt"] == {
        "present": None,
        "valid": None,
        "rua": [],
        "reasons": ["lookup-failed:servfail"],
        "warnings": [],
        "extensions": [],
    }
    assert record["posture"]["tlsrpt"] is None


def test_failed_mta_sts_lookup_is_recorded_unknown_with_the_dns_outcome(
    scanned: tuple[dict[str, dict[str, Any]], dict[str, Any]],
) -> None:
    record = scanned[0]["txt-fail.test"]
    assert record["dns"]["mta_sts"]["outcome"] == "timeout"
    sts = record["mta_sts"]["record"]
    assert (sts["present"], sts["valid"], sts["reasons"]) == (None, None, ["lookup-failed:timeout"])
    assert record["mta_sts"]["findings"] == []


def test_definite_answers_stay_yes_and_no(scanned: tuple[dict[str, dict[str, Any]], dict[str, Any]]) -> None:
    record = scanned[0]["txt-ok.test"]
    assert (record["tlsrpt"]["valid"], record["posture"]["tlsrpt"]) == (True, True)
    assert record["mta_sts"]["record"]["valid"] is False
    assert record["mta_sts"]["record"]["reasons"] == ["no-sts-record"]
    # A definite "no MTA-STS", a valid TLS-RPT record, no DANE (unsigned): the RFC 8460 finding.
    assert record["mta_sts"]["findings"] == ["tlsrpt-without-mta-sts-or-dane"]


@pytest.mark.parametrize(("key", "count", "unknown"), [("tlsrpt", 1, 1), ("mta_sts", 0, 1)])
def test_report_counts_failed_lookups_as_unknown_not_no(
    scanned: tuple[dict[str, dict[str, Any]], dict[str, Any]], key: str, count: int, unknown: int
) -> None:
    figure = next(f for f in scanned[1]["headline"] if f["key"] == key)
    assert (figure["base"], figure["count"], figure["unknown"]) == (2, count, unknown)

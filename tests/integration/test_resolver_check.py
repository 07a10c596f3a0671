"""The pre-flight resolver check against a real (tiny) resolver on loopback, and what
``mxscan scan`` does with an inconclusive check (issue #13 item 10).

The resolver here plays a validating resolver behind a private root: the signed
name (the root SOA) and every name of ``signed.test`` come back with AD=1, and
the default bogus probe name ``dnssec-failed.org`` does not exist (NXDOMAIN),
so there is nothing bogus for it to reject.  ``quiet-bogus.test`` is never
answered.  The server is ``tests.integration.loopback_resolver`` (a thread on a free
UDP port of 127.0.0.1); replies are built with dnspython.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import orjson
import pytest

from probes.dns.client import DnsClient
from probes.dns.preflight import PreflightResult, preflight
from probes.dns.records import ResolverCheck
from tests.integration.loopback_resolver import resolver

ROOT = Path(__file__).resolve().parents[2]

#: name -> {type: records} of the signed test zone; every answer gets AD=1.
ZONE = {
    ".": {"SOA": ["a.root. n.root. 1 2 3 4 5"]},
    "signed.test": {"MX": ["10 mx.signed.test."]},
    "mx.signed.test": {"A": ["127.0.0.1"]},
    "_25._tcp.mx.signed.test": {"TLSA": ["3 1 1 " + "ab" * 32]},
}


def answer(wire: bytes) -> bytes | None:
    query = dns.message.from_wire(wire)
    question = query.question[0]
    name = question.name.to_text(omit_final_dot=True).lower() or "."
    rtype = dns.rdatatype.to_text(question.rdtype)
    if name == "quiet-bogus.test":
        return None
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    if name.endswith("signed.test") or name == ".":
        reply.flags |= dns.flags.AD  # a signed zone: answers and denials validate
        records = ZONE.get(name)
        if records is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif rtype in records:
            owner = "." if name == "." else name + "."
            reply.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, *records[rtype]))
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)  # dnssec-failed.org and the rest: not in this world
    return reply.to_wire()


def check(server: tuple[str, int], bogus: str, *, client_timeout: float, budget: float) -> PreflightResult:
    async def main() -> PreflightResult:
        async with DnsClient(server, timeout=client_timeout, attempts=1) as client:
            return await preflight(client, bogus_name=bogus, timeout=budget)

    return asyncio.run(main())


def test_bogus_name_that_does_not_exist_is_inconclusive_not_not_validating() -> None:
    with resolver(answer) as server:
        result = check(server, "dnssec-failed.org", client_timeout=2.0, budget=5.0)
    assert (result.reachable, result.check, result.signed_ad, result.bogus_servfail) == (
        True,
        ResolverCheck.INCONCLUSIVE,
        True,
        False,
    )
    assert result.reads_ad and not result.validating
    assert "dnssec-failed.org" in result.detail and "NXDOMAIN" in result.detail


def test_unanswered_bogus_name_is_inconclusive_not_an_unreachable_resolver() -> None:
    """The deadline is per question: the signed name answered, so the resolver is reachable
    even when the bogus name's answer never comes (before: the whole check timed out)."""
    with resolver(answer) as server:
        result = check(server, "quiet-bogus.test", client_timeout=5.0, budget=1.0)
    assert (result.reachable, result.check) == (True, ResolverCheck.INCONCLUSIVE)
    assert "no answer (timeout)" in result.detail


def scan(server: tuple[str, int], tmp: Path, *extra: str) -> tuple[int, str, list[dict[str, object]]]:
    domains = tmp / "domains.txt"
    domains.write_text("signed.test\n")
    out = tmp / "results.ndjson"
    argv = [
        *(sys.executable, "-m", "mxscan", "scan", str(domains), "--out", str(out), "--dns-only"),
        *(
            "--resolver",
            f"{server[0]}:{server[1]}",
            "--progress",
            "off",
            "--dns-timeout",
            "2",
            "--dns-attempts",
            "1",
        ),
        *extra,
    ]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60, check=False)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    return run.returncode, run.stderr.decode(), lines


def test_inconclusive_check_keeps_dnssec_data_and_warns_loudly(tmp_path: Path) -> None:
    with resolver(answer) as server:
        code, stderr, lines = scan(server, tmp_path)
    assert code == 0, stderr
    assert "WARNING" in stderr and "INCONCLUSIVE" in stderr and "--preflight-bogus" in stderr
    (record,) = [line for line in lines if "domain" in line]  # domain lines only
    assert record["scan"]["dnssec_validating"] is True  # type: ignore[index]
    assert record["scan"]["dnssec_check"] == "inconclusive"  # type: ignore[index]
    dns = record["dns"]
    assert dns["mx"]["dnssec"] == "secure"  # type: ignore[index]
    (host,) = dns["mx_hosts"]  # type: ignore[index]
    assert host["tlsa_skipped"] is None and host["tlsa"]["dnssec"] == "secure"


@pytest.mark.parametrize("bogus", ["dnssec-failed.org", "quiet-bogus.test"])
def test_require_validation_refuses_an_inconclusive_check(tmp_path: Path, bogus: str) -> None:
    with resolver(answer) as server:
        code, stderr, lines = scan(server, tmp_path, "--require-validation", "--preflight-bogus", bogus)
    assert code == 2
    assert "INCONCLUSIVE" in stderr and "--require-validation" in stderr
    assert [line for line in lines if "domain" in line] == []

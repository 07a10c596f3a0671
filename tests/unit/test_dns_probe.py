"""The per-domain DNS plan, driven by a table of answers (no resolver needed:
the plan only sees a lookup function)."""

from __future__ import annotations

import asyncio

import pytest

from probes.dns.probe import parse_mx, probe_dns, tlsa_decision
from probes.dns.records import Answer, Dnssec, Outcome, TlsaSkip


def ans(
    name: str, rrtype: str, outcome: Outcome = Outcome.OK, *data: str, dnssec: Dnssec = Dnssec.INSECURE
) -> Answer:
    return Answer(
        name=name,
        rrtype=rrtype,
        outcome=outcome,
        dnssec=dnssec,
        ad=dnssec is Dnssec.SECURE,
        ttl=300 if outcome is Outcome.OK else None,
        cname_chain=(),
        data=tuple(data),
        rcode="NXDOMAIN" if outcome is Outcome.NXDOMAIN else "NOERROR",
        ede=(),
        detail="",
    )


@pytest.mark.parametrize(
    ("data", "null", "hosts"),
    [
        (("10 b.example", "5 a.example"), False, [(5, "a.example"), (10, "b.example")]),
        (("0 .",), True, []),
        (("0 .", "10 mx.example"), False, [(10, "mx.example")]),
        (("10 MX.Example.",), False, [(10, "mx.example")]),
        (("10 a.example", "10 a.example"), False, [(10, "a.example")]),
        (("x y",), False, []),
    ],
    ids=[
        "sorted-by-preference",
        "null-mx",
        "dot-among-others-is-not-null",
        "case-and-dot",
        "dupes",
        "garbage",
    ],
)
def test_parse_mx(data: tuple[str, ...], null: bool, hosts: list[tuple[int, str]]) -> None:
    assert parse_mx(ans("d.example", "MX", Outcome.OK, *data)) == (null, hosts)


def test_parse_mx_non_ok_is_empty() -> None:
    assert parse_mx(ans("d.example", "MX", Outcome.NXDOMAIN)) == (False, [])


SEC, INS = Dnssec.SECURE, Dnssec.INSECURE


@pytest.mark.parametrize(
    ("a", "aaaa", "validating", "expected"),
    [
        ((Outcome.OK, SEC), (Outcome.NODATA, SEC), True, None),
        ((Outcome.OK, SEC), (Outcome.OK, SEC), True, None),
        ((Outcome.OK, INS), (Outcome.NODATA, INS), True, TlsaSkip.ADDRESS_INSECURE),
        ((Outcome.OK, SEC), (Outcome.OK, INS), True, TlsaSkip.ADDRESS_INSECURE),
        ((Outcome.TIMEOUT, Dnssec.INDETERMINATE), (Outcome.OK, SEC), True, None),
        ((Outcome.NXDOMAIN, SEC), (Outcome.NXDOMAIN, SEC), True, TlsaSkip.ADDRESS_UNRESOLVED),
        (
            (Outcome.SERVFAIL, Dnssec.BOGUS),
            (Outcome.SERVFAIL, Dnssec.BOGUS),
            True,
            TlsaSkip.ADDRESS_UNRESOLVED,
        ),
        ((Outcome.OK, SEC), (Outcome.OK, SEC), False, TlsaSkip.RESOLVER_NOT_VALIDATING),
    ],
    ids=[
        "v4-secure",
        "both-secure",
        "insecure",
        "mixed",
        "one-failed-other-secure",
        "nxdomain",
        "bogus",
        "not-validating",
    ],
)
def test_tlsa_decision(a, aaaa, validating, expected) -> None:
    got = tlsa_decision(
        ans("h", "A", a[0], dnssec=a[1]), ans("h", "AAAA", aaaa[0], dnssec=aaaa[1]), validating=validating
    )
    assert got == expected


def _lookup(table: dict[tuple[str, str], Answer], log: list[tuple[str, str]]):
    async def lookup(name: str, rrtype: str) -> Answer:
        log.append((name, rrtype))
        await asyncio.sleep(0)
        return table.get((name, rrtype)) or ans(name, rrtype, Outcome.NXDOMAIN)

    return lookup


def test_full_plan_for_a_signed_domain() -> None:
    table = {
        ("d.test", "MX"): ans("d.test", "MX", Outcome.OK, "20 mx2.d.test", "10 mx1.d.test", dnssec=SEC),
        ("mx1.d.test", "A"): ans("mx1.d.test", "A", Outcome.OK, "127.1.0.1", dnssec=SEC),
        ("mx1.d.test", "AAAA"): ans("mx1.d.test", "AAAA", Outcome.NODATA, dnssec=SEC),
        ("mx2.d.test", "A"): ans("mx2.d.test", "A", Outcome.OK, "127.1.0.2", dnssec=INS),
        ("mx2.d.test", "AAAA"): ans("mx2.d.test", "AAAA", Outcome.NODATA, dnssec=INS),
        ("_25._tcp.mx1.d.test", "TLSA"): ans(
            "_25._tcp.mx1.d.test", "TLSA", Outcome.OK, "3 1 1 aa", dnssec=SEC
        ),
        ("_mta-sts.d.test", "TXT"): ans("_mta-sts.d.test", "TXT", Outcome.OK, "v=STSv1; id=1"),
    }
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    result = asyncio.run(
        probe_dns(
            "d.test", lookup_domain=_lookup(table, own), lookup_host=_lookup(table, shared), validating=True
        )
    )
    assert result.has_mx and not result.null_mx and result.implicit_mx is None
    assert [h.host for h in result.mx_hosts] == ["mx1.d.test", "mx2.d.test"]
    assert result.mx_hosts[0].tlsa is not None and result.mx_hosts[0].tlsa.data == ("3 1 1 aa",)
    assert result.mx_hosts[1].tlsa is None and result.mx_hosts[1].tlsa_skipped is TlsaSkip.ADDRESS_INSECURE
    assert result.mta_sts.data == ("v=STSv1; id=1",) and result.tlsrpt.outcome is Outcome.NXDOMAIN
    assert set(own) == {("d.test", "MX"), ("_mta-sts.d.test", "TXT"), ("_smtp._tls.d.test", "TXT")}
    assert ("_25._tcp.mx2.d.test", "TLSA") not in shared  # asked only where it can matter


def test_nodata_mx_records_implicit_mx_but_no_mail_server() -> None:
    table = {
        ("d.test", "MX"): ans("d.test", "MX", Outcome.NODATA),
        ("d.test", "A"): ans("d.test", "A", Outcome.OK, "127.1.0.9"),
    }
    log: list[tuple[str, str]] = []
    result = asyncio.run(
        probe_dns(
            "d.test", lookup_domain=_lookup(table, log), lookup_host=_lookup(table, log), validating=True
        )
    )
    assert not result.has_mx and result.mx_hosts == ()
    assert result.implicit_mx is not None and result.implicit_mx.a.data == ("127.1.0.9",)


@pytest.mark.parametrize("outcome", [Outcome.NXDOMAIN, Outcome.TIMEOUT, Outcome.SERVFAIL])
def test_no_implicit_mx_without_a_definite_nodata(outcome: Outcome) -> None:
    table = {("d.test", "MX"): ans("d.test", "MX", outcome)}
    log: list[tuple[str, str]] = []
    result = asyncio.run(
        probe_dns(
            "d.test", lookup_domain=_lookup(table, log), lookup_host=_lookup(table, log), validating=True
        )
    )
    assert result.implicit_mx is None and not result.has_mx
    assert ("d.test", "A") not in log


def test_null_mx_accepts_no_mail() -> None:
    table = {("d.test", "MX"): ans("d.test", "MX", Outcome.OK, "0 .")}
    log: list[tuple[str, str]] = []
    result = asyncio.run(
        probe_dns(
            "d.test", lookup_domain=_lookup(table, log), lookup_host=_lookup(table, log), validating=True
        )
    )
    assert result.null_mx and not result.has_mx and result.mx_hosts == () and result.implicit_mx is None

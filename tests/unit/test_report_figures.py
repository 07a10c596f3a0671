"""Headline figures, provider tables and breakdowns over real, encoded DomainRecords."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import encode
from engine.status import Status
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.dns.records import Answer, DnsResult, Dnssec, ImplicitMx, MxHost, Outcome, TlsaSkip
from probes.domain import SCHEMA_VERSION, DomainRecord, HostRecord, ScanMeta
from probes.mtasts.match import Coverage
from probes.mtasts.policy import LineEndings, Mode, StsPolicy
from probes.mtasts.record import StsRecord
from probes.mtasts.records import Finding, MtaStsResult, PolicyFetch
from probes.results import domain_records
from probes.smtp.ehlo import EhloInfo
from probes.smtp.records import Phase, SmtpResult, Starttls, TlsSession
from probes.tls.certs import CertFacts, ChainFacts
from probes.tls.verify import PkixReason, PkixResult
from probes.tlsrpt.record import TlsRptRecord
from probes.transport import MxTransport, dane_published, posture, smtp_ref
from report.summary import summarise

# ---------------------------------------------------------------- factories


def answer(
    name: str,
    rrtype: str,
    outcome: str = "ok",
    dnssec: str = "insecure",
    data: tuple[str, ...] = (),
    cname: tuple[str, ...] = (),
) -> Answer:
    return Answer(
        name=name,
        rrtype=rrtype,
        outcome=Outcome(outcome),
        dnssec=Dnssec(dnssec),
        ad=dnssec == "secure",
        ttl=300 if outcome == "ok" else None,
        cname_chain=cname,
        data=data,
        rcode="NOERROR" if outcome in ("ok", "nodata") else outcome.upper(),
        ede=(),
        detail="",
    )


def cert(not_after: str = "2030-01-01T00:00:00Z") -> ChainFacts:
    facts = CertFacts(
        subject="CN=mx",
        issuer="CN=ca",
        serial="01",
        not_before="2020-01-01T00:00:00Z",
        not_after=not_after,
        san_dns=("mx",),
        san_ip=(),
        key_type="ec",
        key_bits=256,
        curve="secp256r1",
        signature_algorithm="ecdsa-with-SHA256",
        sha256="00" * 32,
        spki_sha256="11" * 32,
        is_ca=False,
        self_issued=False,
        parse_issue="",
    )
    return ChainFacts(certs=(facts,), presented=1, truncated=False, errors=())


def smtp(
    host: str,
    *,
    starttls: str = "yes",
    pkix: str | None = "ok",
    status: str = "success",
    address: str = "192.0.2.1",
    banner: str = "mx ESMTP",
    ehlo_name: str = "mx",
    detail: str = "",
    not_after: str = "2030-01-01T00:00:00Z",
) -> SmtpResult:
    """One SMTP probe; ``pkix`` is a PkixReason value or None (no chain)."""
    ehlo = EhloInfo(250, ehlo_name, "hi", ("STARTTLS",), {}, starttls == "yes", 0, False)
    tls = None if pkix is None else TlsSession("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, cert(not_after), ())
    return SmtpResult(
        host=host,
        address=address,
        port=25,
        status=Status(status),
        phase=Phase.DONE if status == "success" else Phase.CONNECT,
        starttls=Starttls(starttls),
        banner_code=220,
        banner=banner,
        ehlo=ehlo,
        ehlo_tls=None,
        last_code=250,
        last_text="ok",
        tls=tls,
        pkix=None if pkix is None else PkixResult(pkix == "ok", PkixReason(pkix), detail, ""),
        plaintext_injection=False,
        attempts=1,
        detail=detail,
        duration_ms=1.0,
        phase_ms={"connect": 0.2, "banner": 0.8},
    )


def sts_result(
    domain: str,
    *,
    valid: bool = True,
    mode: str | None = "enforce",
    sts_id: str = "20240101",
    cname: tuple[str, ...] = (),
    findings: tuple[Finding, ...] = (),
    provider: str | None = None,
    fetched: bool = True,
    mx: tuple[str, ...] = ("*.example.net",),
) -> MtaStsResult:
    record = StsRecord(True, valid, sts_id if valid else "", () if valid else ("missing-id",), (), ())
    fetch = PolicyFetch(
        url=f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
        address="192.0.2.9",
        status=Status.SUCCESS if fetched else Status.CONNECTION_TIMEOUT,
        http_status=200 if fetched else None,
        content_type="text/plain",
        location="",
        body_bytes=80,
        tls_version="TLSv1.3",
        chain=None,
        pkix=None,
        detail="",
        duration_ms=1.0,
    )
    policy = None
    if fetched and mode is not None:
        policy = StsPolicy(True, "STSv1", Mode(mode), mx, 86400, LineEndings.CRLF, (), (), ())
    return MtaStsResult(
        record=record,
        txt_cname=cname,
        policy_host=f"mta-sts.{domain}",
        policy_host_cname=(),
        policy_host_provider=provider or domain,
        fetch=fetch if valid else None,
        policy=policy,
        coverage=Coverage((), (), (), True) if policy else None,
        mode=mode if valid and policy else None,
        would_deliver=True,
        findings=findings,
    )


def mx_host(
    host: str, pref: int = 10, tlsa: tuple[str, ...] | None = None, tlsa_dnssec: str = "secure"
) -> MxHost:
    return MxHost(
        preference=pref,
        host=host,
        a=answer(host, "A", data=("192.0.2.1",)),
        aaaa=answer(host, "AAAA", outcome="nodata"),
        tlsa=None
        if tlsa is None
        else answer(f"_25._tcp.{host}", "TLSA", "ok" if tlsa else "nodata", tlsa_dnssec, tlsa),
        tlsa_skipped=TlsaSkip.ADDRESS_INSECURE if tlsa is None else None,
    )


def record(
    domain: str,
    *,
    mx: tuple[tuple[int, str, str | None, tuple[SmtpResult, ...]], ...] = (),
    mx_outcome: str = "ok",
    dnssec: str = "insecure",
    null_mx: bool = False,
    implicit: bool = False,
    tlsa: dict[str, tuple[str, ...]] | None = None,
    dane: dict[str, DaneStatus] | None = None,
    mta_sts: MtaStsResult | None = None,
    sts_txt: tuple[str, ...] = (),
    sts_cname: tuple[str, ...] = (),
    tlsrpt: bool = False,
    status: str = "success",
    reason: str = "",
    dns_only: bool = False,
    started: str = "2024-11-04T00:00:00.000Z",
) -> DomainRecord:
    """A DomainRecord; ``mx`` is (preference, host, provider, SMTP probes) per MX host."""
    meta = ScanMeta("mxscan", "0.1.0", started, "127.0.0.1:53", True, "scanner.mxscan.test", "")
    base: dict[str, Any] = dict(
        schema_version=SCHEMA_VERSION,
        domain=domain,
        input_line=1,
        status=Status(status),
        reason=reason,
        scan=meta,
        measured_at=started,
        duration_ms=1.0,
        dns=None,
        mx_transport=(),
        mta_sts=None,
        tlsrpt=None,
        posture=None,
        errors=(),
    )
    if status != "success":
        return DomainRecord(**base)
    tlsa = tlsa or {}
    hosts = tuple(mx_host(h, p, tlsa.get(h)) for p, h, _, _ in mx)
    mx_data = ("0 .",) if null_mx else tuple(f"{p} {h}" for p, h, _, _ in mx)
    mx_answer = answer(
        domain, "MX", mx_outcome if (mx or null_mx or mx_outcome != "ok") else "nodata", dnssec, mx_data
    )
    implicit_mx = None
    if not mx and not null_mx and mx_outcome in ("ok", "nodata", "nxdomain"):
        implicit_mx = ImplicitMx(
            a=answer(domain, "A", "ok" if implicit else "nodata", data=("192.0.2.7",) if implicit else ()),
            aaaa=answer(domain, "AAAA", "nodata"),
        )
    rpt_txt = ("v=TLSRPTv1; rua=mailto:r@example.org",) if tlsrpt else ()
    dns = DnsResult(
        mx=mx_answer,
        has_mx=bool(mx),
        null_mx=null_mx,
        mx_hosts=hosts,
        implicit_mx=implicit_mx,
        mta_sts=answer(
            f"_mta-sts.{domain}", "TXT", "ok" if sts_txt else "nxdomain", data=sts_txt, cname=sts_cname
        ),
        tlsrpt=answer(f"_smtp._tls.{domain}", "TXT", "ok" if rpt_txt else "nxdomain", data=rpt_txt),
    )
    base["dns"] = dns
    if dns_only:
        return DomainRecord(**base)
    dane = dane or {}
    transports = tuple(
        MxTransport(
            h,
            p,
            prov,
            tuple(smtp_ref(r) for r in probes),
            DaneResult(dane[h], None, 1, "d") if h in dane else None,
        )
        for p, h, prov, probes in mx
    )
    for _, _, _, probes in mx:
        _SMTP_RESULTS.update((smtp_ref(r), r) for r in probes)
    rpt = TlsRptRecord(
        tlsrpt,
        tlsrpt,
        ("mailto:r@example.org",) if tlsrpt else (),
        () if tlsrpt else ("no-tlsrpt-record",),
        (),
        (),
    )
    base.update(
        mx_transport=transports,
        mta_sts=mta_sts,
        tlsrpt=rpt,
        posture=posture(
            [(probes, t.dane) for t, (_, _, _, probes) in zip(transports, mx, strict=True)],
            dnssec_mx=dnssec,
            dane_published=dane_published(mx_answer, hosts),
            mta_sts_mode=mta_sts.mode if mta_sts else None,
            tlsrpt=tlsrpt,
        ),
    )
    return DomainRecord(**base)


#: Every SMTP result a test record referenced, by ref: ``as_dicts`` writes their host lines.
_SMTP_RESULTS: dict[str, SmtpResult] = {}


def host_lines(r: DomainRecord, written: dict[str, SmtpResult]) -> list[bytes]:
    """The host lines ``r`` references that ``written`` (ref -> result written) lacks; updates it."""
    lines = []
    for t in r.mx_transport:
        for ref in t.smtp_refs:
            result = _SMTP_RESULTS[ref]
            if written.get(ref) is not result:
                written[ref] = result
                lines.append(encode(HostRecord(SCHEMA_VERSION, ref, result)))
    return lines


def as_lines(*records: DomainRecord) -> list[bytes]:
    """The records as a results file holds them: each referenced host line before its first use."""
    lines: list[bytes] = []
    written: dict[str, SmtpResult] = {}
    for r in records:
        lines += host_lines(r, written)
        lines.append(encode(r))
    return lines


def as_dicts(*records: DomainRecord) -> list[dict[str, Any]]:
    """The records read back with the references resolved, as the report commands read them."""
    return list(domain_records(orjson.loads(line) for line in as_lines(*records)))


def figures_of(*records: DomainRecord) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in summarise(as_dicts(*records))["headline"]}


def good(domain: str, provider: str = "example.net", **kw: Any) -> DomainRecord:
    host = f"mx.{provider}"
    return record(domain, mx=((10, host, provider, (smtp(host),)),), **kw)


# ---------------------------------------------------------------- headline definitions


def test_with_mx_counts_mx_records_only() -> None:
    figs = figures_of(
        good("a.test"),
        record("nullmx.test", null_mx=True),
        record("implicit.test", implicit=True),
        record("nothing.test", mx_outcome="nxdomain"),
        record("timeout.test", mx_outcome="timeout"),
        record("bad input", status="invalid-input", reason="bad-label:x"),
    )
    assert figs["scanned"]["count"] == 5
    assert figs["with_mx"]["count"] == 1
    assert figs["with_mx"]["extras"] == {"null MX": 1, "implicit MX only": 1, "MX lookup unknown": 1}
    assert figs["with_mx"]["percent"] == 20.0


def test_unknown_error_record_is_scanned_but_not_with_mx() -> None:
    s = summarise(
        as_dicts(good("a.test"), record("crash.test", status="unknown-error", reason="KeyError: x"))
    )
    figs = {f["key"]: f for f in s["headline"]}
    assert figs["scanned"]["count"] == 2 and figs["with_mx"]["count"] == 1
    assert s["meta"]["statuses"] == {"success": 1, "unknown-error": 1}
    assert s["failures"]["records: unknown-error (by reason)"] == {"KeyError": 1}


@pytest.mark.parametrize(
    ("probes", "yes", "all_mx", "unknown"),
    [
        pytest.param(("yes", "yes"), 1, 1, 0, id="all-mx-starttls"),
        pytest.param(("yes", "no"), 1, 0, 0, id="some-mx-starttls-counts-as-support"),
        pytest.param(("no", "no"), 0, 0, 0, id="no-mx-starttls"),
        pytest.param(("no", "unknown"), 0, 0, 1, id="unknown-is-not-no"),
        pytest.param(("yes", "unknown"), 1, 0, 0, id="one-yes-settles-support"),
    ],
)
def test_starttls_support(probes: tuple[str, str], yes: int, all_mx: int, unknown: int) -> None:
    mx = tuple(
        (
            10 + i,
            f"mx{i}.p.test",
            "p.test",
            (smtp(f"mx{i}.p.test", starttls=s, pkix=None if s != "yes" else "ok"),),
        )
        for i, s in enumerate(probes)
    )
    fig = figures_of(record("d.test", mx=mx))["starttls"]
    assert (fig["count"], fig["extras"]["all MX"], fig["unknown"]) == (yes, all_mx, unknown)


@pytest.mark.parametrize(
    ("reasons", "yes", "all_mx"),
    [
        pytest.param(("ok", "ok"), 1, 1, id="all-valid"),
        pytest.param(("ok", "hostname-mismatch"), 1, 0, id="some-valid"),
        pytest.param(("self-signed", "expired"), 0, 0, id="none-valid"),
    ],
)
def test_valid_certificates(reasons: tuple[str, str], yes: int, all_mx: int) -> None:
    mx = tuple(
        (10, f"mx{i}.p.test", "p.test", (smtp(f"mx{i}.p.test", pkix=r),)) for i, r in enumerate(reasons)
    )
    fig = figures_of(record("d.test", mx=mx))["pkix"]
    assert (fig["count"], fig["extras"]["all MX"]) == (yes, all_mx)


@pytest.mark.parametrize(
    ("dnssec", "yes", "unknown"),
    [("secure", 1, 0), ("insecure", 0, 0), ("bogus", 0, 0), ("indeterminate", 0, 1), ("unknown", 0, 1)],
)
def test_dnssec_of_mx_answer(dnssec: str, yes: int, unknown: int) -> None:
    fig = figures_of(good("d.test", dnssec=dnssec))["dnssec"]
    assert (fig["count"], fig["unknown"]) == (yes, unknown)


def test_dane_published_counts_mismatching_tlsa() -> None:
    host = "mx.p.test"
    r = record(
        "d.test",
        mx=((10, host, "p.test", (smtp(host),)),),
        dnssec="secure",
        tlsa={host: ("3 1 1 " + "ab" * 32,)},
        dane={host: DaneStatus.MISMATCH},
    )
    figs = figures_of(r)
    assert figs["dane"]["count"] == 1
    s = summarise(as_dicts(r))
    listing = s["misconfigurations"]["DANE mismatches that would bounce mail"]
    assert listing["total"] == 1 and listing["rows"][0][:2] == ["d.test", host]


def _customer(domain: str, dnssec: str, host: str = "route1.mx.dane-provider.test") -> DomainRecord:
    """A domain hosted by a DANE provider: its MX host publishes TLSA in a secure answer."""
    return record(
        domain,
        mx=((10, host, "dane-provider.test", (smtp(host),)),),
        dnssec=dnssec,
        tlsa={host: ("3 1 1 " + "ab" * 32,)},
        dane={host: DaneStatus.VALID if dnssec == "secure" else DaneStatus.INSECURE},
    )


def test_dane_headline_excludes_domains_whose_mx_answer_is_insecure() -> None:
    """Issue 13 item 8: RFC 7672 §2.2.1, an insecure MX RRset means DANE does not apply, so a
    DANE provider's unsigned customers do not count (the study's cloudflare.net row)."""
    figs = figures_of(_customer("signed.test", "secure"), _customer("unsigned.test", "insecure"))
    assert (figs["dane"]["count"], figs["dane"]["unknown"]) == (1, 0)
    assert "RFC 7672 §2.2.1" in figs["dane"]["footnote"]


def test_dane_headline_ignores_old_posture_that_counted_an_insecure_mx() -> None:
    """Files written before the fix carry posture.dane_published true for insecure MX answers."""
    (old,) = as_dicts(_customer("unsigned.test", "insecure"))
    old["posture"]["dane_published"] = True
    fig = {f["key"]: f for f in summarise([old])["headline"]}["dane"]
    assert (fig["count"], fig["unknown"]) == (0, 0)


def test_dane_headline_unknown_when_the_mx_dnssec_status_is() -> None:
    s = summarise(as_dicts(_customer("d.test", "indeterminate")))
    fig = {f["key"]: f for f in s["headline"]}["dane"]
    assert (fig["count"], fig["unknown"]) == (0, 1)
    assert s["unknown_why"]["dane"] == {"MX dnssec indeterminate": 1}


def test_provider_inbound_dane_is_a_property_of_its_mx_hosts() -> None:
    """Issue 13 item 8: "Inbound DANE" says whether the provider's MX hosts publish secure
    TLSA; "DANE domains" counts the customers that count as DANE (few, when most are unsigned)."""
    customers = [_customer(f"u{i}.test", "insecure") for i in range(3)] + [_customer("s.test", "secure")]
    s = summarise(as_dicts(*customers))
    row = {r["provider"]: r for r in s["providers"]["rows"]}["dane-provider.test"]
    assert (row["dane"], row["hosts_dane"], row["hosts"], row["dane_domains"]) == ("yes", 1, 1, 1)
    assert "property of the provider's MX hosts" in s["footnotes"]["provider_dane"]
    assert "headline figure" in s["footnotes"]["provider_dane"]


def test_dns_only_file_derives_dane_and_sts_and_says_the_rest_is_not_measured() -> None:
    host = "mx.p.test"
    r = record(
        "d.test",
        mx=((10, host, "p.test", ()),),
        dnssec="secure",
        tlsa={host: ("3 1 1 " + "ab" * 32,)},
        sts_txt=("v=STSv1; id=1;",),
        dns_only=True,
    )
    figs = figures_of(r)
    assert figs["dane"]["count"] == 1 and figs["dane"]["derived_from_dns"] == 1
    assert figs["mta_sts"]["count"] == 1
    assert figs["starttls"]["measured"] is False and figs["starttls"]["count"] is None
    assert figs["mta_sts_enforce"]["measured"] is False
    s = summarise(as_dicts(r))
    assert s["providers"]["rows"] == []


def test_mta_sts_delegated_cname_counts_and_enforce() -> None:
    figs = figures_of(
        good("a.test", mta_sts=sts_result("a.test", cname=("a.test.sts.host.test",))),
        good("b.test", mta_sts=sts_result("b.test", mode="testing")),
        good("c.test", mta_sts=sts_result("c.test", valid=False)),
        good("d.test", mta_sts=sts_result("d.test", fetched=False, mode=None)),
    )
    sts = figs["mta_sts"]
    assert sts["count"] == 3  # a, b and the unfetched d: the record is what counts
    assert sts["extras"]["delegated (CNAME)"] == 1
    assert sts["extras"]["usable policy"] == 2
    assert figs["mta_sts_enforce"]["count"] == 1
    assert figs["mta_sts_enforce"]["extras"]["testing"] == 1
    assert figs["mta_sts_enforce"]["unknown"] == 1  # d: record valid, policy fetch timed out


def test_enforce_would_fail_listed() -> None:
    r = good("a.test", mta_sts=sts_result("a.test", findings=(Finding.ENFORCE_WOULD_FAIL,)))
    s = summarise(as_dicts(r))
    listing = s["misconfigurations"]["MTA-STS enforce that would fail delivery"]
    assert listing["total"] == 1 and listing["rows"][0][0] == "a.test"


def test_expired_certificates_listed_per_host_with_domain_count() -> None:
    host = "mx.old.test"
    probes = (smtp(host, pkix="expired", not_after="2020-01-01T00:00:00Z"),)
    rs = [record(f"d{i}.test", mx=((10, host, "old.test", probes),)) for i in range(3)]
    s = summarise(as_dicts(*rs))
    listing = s["misconfigurations"]["Expired certificates on MX hosts"]
    assert listing["total"] == 1
    assert listing["rows"][0][:4] == [host, "192.0.2.1", "2020-01-01T00:00:00Z", "3"]
    assert s["failures"]["Certificates: PKIX verdict by reason, distinct host addresses"] == {"expired": 1}


def test_misconfiguration_lists_are_capped_with_total() -> None:
    rs = [
        good(f"d{i:02}.test", mta_sts=sts_result(f"d{i:02}.test", findings=(Finding.ENFORCE_WOULD_FAIL,)))
        for i in range(30)
    ]
    s = summarise(as_dicts(*reversed(rs)), cap=5)
    listing = s["misconfigurations"]["MTA-STS enforce that would fail delivery"]
    assert listing["total"] == 30 and listing["shown"] == 5
    assert [row[0] for row in listing["rows"]] == [f"d{i:02}.test" for i in range(5)]


def test_unknown_reasons_are_reported() -> None:
    host = "mx.p.test"
    r = record(
        "d.test",
        mx=((10, host, "p.test", (smtp(host, starttls="unknown", pkix=None, status="io-timeout"),)),),
    )
    s = summarise(as_dicts(r))
    assert s["unknown_why"]["starttls"] == {"io-timeout": 1}
    assert s["smtp_failures"]["total"] == 1


def test_duplicate_domain_counts_once() -> None:
    s = summarise(as_dicts(good("a.test"), good("a.test")))
    assert s["meta"]["duplicates"] == 1
    assert {f["key"]: f for f in s["headline"]}["with_mx"]["count"] == 1


# ---------------------------------------------------------------- provider tables


def _provider_rows(*records: DomainRecord) -> dict[str, dict[str, Any]]:
    return {row["provider"]: row for row in summarise(as_dicts(*records))["providers"]["rows"]}


def _dane_domain(domain: str, provider: str, published: bool) -> DomainRecord:
    host = f"{domain}.mail.{provider}"
    return record(
        domain,
        mx=((10, host, provider, (smtp(host),)),),
        dnssec="secure",
        tlsa={host: ("3 1 1 " + "ab" * 32,)} if published else {host: ()},
    )


@pytest.mark.parametrize(
    ("published", "label"),
    [
        pytest.param((True, True), "yes", id="every-domain-dane"),
        pytest.param((True, False), "optional", id="some-customers-dane"),
        pytest.param((False, False), "no", id="no-domain-dane"),
    ],
)
def test_provider_inbound_dane(published: tuple[bool, bool], label: str) -> None:
    """One MX host per customer (outlook.com's way): customers opt in host by host."""
    rows = _provider_rows(*(_dane_domain(f"d{i}.test", "p.test", p) for i, p in enumerate(published)))
    assert rows["p.test"]["dane"] == label
    assert rows["p.test"]["hosts_dane"] == sum(published)
    assert rows["p.test"]["dane_domains"] == sum(published)


@pytest.mark.parametrize(
    ("reasons", "label"),
    [
        pytest.param(("ok", "ok"), "yes", id="every-host-valid"),
        pytest.param(("ok", "hostname-mismatch"), "partial", id="one-host-mismatch"),
        pytest.param(("self-signed", "expired"), "no", id="no-host-valid"),
    ],
)
def test_provider_public_certificates(reasons: tuple[str, str], label: str) -> None:
    # Two customer domains, each pointing at one host of the provider (as qq.com's mxdomain).
    rs = [
        record(f"d{i}.test", mx=((10, f"mx{i}.p.test", "p.test", (smtp(f"mx{i}.p.test", pkix=r),)),))
        for i, r in enumerate(reasons)
    ]
    row = _provider_rows(*rs)["p.test"]
    assert row["pkix"] == label
    assert row["hosts"] == 2 and row["hosts_pkix_valid"] == reasons.count("ok")


def test_provider_is_that_of_most_preferred_mx() -> None:
    r = record(
        "d.test",
        mx=(
            (20, "backup.b.test", "b.test", (smtp("backup.b.test"),)),
            (10, "mx.a.test", "a.test", (smtp("mx.a.test"),)),
        ),
    )
    rows = _provider_rows(r)
    assert rows["a.test"]["domains"] == 1 and "b.test" not in rows


def test_providers_ranked_by_domains_with_sts_and_tlsrpt_adoption() -> None:
    rs = [good(f"g{i}.test", "big.test", tlsrpt=True) for i in range(3)]
    rs += [good("s.test", "small.test", mta_sts=sts_result("s.test", provider="hoster.test"))]
    s = summarise(as_dicts(*rs))
    rows = s["providers"]["rows"]
    assert [r["provider"] for r in rows] == ["big.test", "small.test"]
    assert rows[0]["tlsrpt"] == 3 and rows[1]["mta_sts_enforce"] == 1
    assert s["providers"]["policy_hosts"] == {"hoster.test": 1}


# ---------------------------------------------------------------- property


@st.composite
def generated_record(draw: st.DrawFn) -> DomainRecord:
    i = draw(st.integers(0, 10**6))
    kind = draw(st.sampled_from(["mx", "null", "implicit", "nx", "timeout", "invalid", "crash", "dns-only"]))
    if kind == "invalid":
        return record(f"bad {i}", status="invalid-input", reason="bad")
    if kind == "crash":
        return record(f"c{i}.test", status="unknown-error", reason="X: y")
    if kind in ("null", "implicit", "nx", "timeout"):
        return record(
            f"n{i}.test",
            null_mx=kind == "null",
            implicit=kind == "implicit",
            mx_outcome={"nx": "nxdomain", "timeout": "timeout"}.get(kind, "ok"),
        )
    hosts = draw(st.integers(1, 3))
    provider = draw(st.sampled_from(["a.test", "b.test", None]))
    mx = tuple(
        (
            10 * h,
            f"mx{h}.{provider or 'x.test'}",
            provider,
            (
                smtp(
                    f"mx{h}.{provider or 'x.test'}",
                    starttls=draw(st.sampled_from(["yes", "no", "unknown"])),
                    pkix=draw(st.sampled_from([None, "ok", "expired", "self-signed"])),
                ),
            ),
        )
        for h in range(hosts)
    )
    sts = draw(st.sampled_from([None, "enforce", "testing", "invalid"]))
    mta_sts = (
        None
        if sts is None
        else sts_result(f"m{i}.test", valid=sts != "invalid", mode=None if sts == "invalid" else sts)
    )
    return record(
        f"m{i}.test",
        mx=mx,
        dnssec=draw(st.sampled_from(["secure", "insecure", "bogus", "indeterminate"])),
        tlsa={mx[0][1]: ("3 1 1 " + "ab" * 32,)} if draw(st.booleans()) else None,
        mta_sts=mta_sts,
        tlsrpt=draw(st.booleans()),
        dns_only=kind == "dns-only",
    )


@given(st.lists(generated_record(), max_size=25))
def test_any_records_give_consistent_figures(records: list[DomainRecord]) -> None:
    s = summarise(as_dicts(*records))
    figs = {f["key"]: f for f in s["headline"]}
    assert figs["with_mx"]["count"] <= figs["scanned"]["count"] <= len(records)
    base = figs["with_mx"]["count"]
    for fig in s["headline"]:
        assert fig["percent"] is None or 0.0 <= fig["percent"] <= 100.0
        if fig["key"] not in ("scanned", "with_mx") and fig["count"] is not None:
            assert fig["base"] == base
            assert fig["count"] + fig["unknown"] + fig["not_measured"] <= base
            for value in fig["extras"].values():
                assert 0 <= value <= base
    assert figs["mta_sts_enforce"]["count"] in (None, *range(0, (figs["mta_sts"]["count"] or 0) + 1))
    assert figs["starttls"]["extras"]["all MX"] <= (figs["starttls"]["count"] or 0)
    assert sum(r["domains"] for r in s["providers"]["rows"]) <= base

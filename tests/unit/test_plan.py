"""The per-domain plan (probes/plan.py) driven by fakes of its seams (probes/interfaces.py):
a zone of classified answers for the resolver, scripted SMTP probes and policy fetches, a
fixed wall clock.  No sockets, no sleeps: each test pins one decision of the plan (what it
asks, what it connects to, what it hands the roll-ups) so that a one-line bug in it fails."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.singleflight import SingleFlight
from engine.status import Status
from probes.dane.tlsa import DaneStatus
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.dns.reverse import Fcrdns, PtrResult
from probes.mtasts.records import PolicyFetch
from probes.plan import DomainOutcome, Pipeline, PipelineOptions, never_stale
from probes.smtp.probe import SmtpProbe
from probes.smtp.records import Phase, SmtpResult, Starttls
from probes.tls.verify import PkixReason, PkixResult
from probes.transport import Coverage3

DOMAIN = "example.test"
MX1, MX2 = "mx1.example.test", "mx2.example.test"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
TXT_OK = "v=STSv1; id=20260101T000000;"
SECURE, INSECURE, BOGUS = Dnssec.SECURE, Dnssec.INSECURE, Dnssec.BOGUS


def answer(
    name: str,
    rrtype: str,
    *data: str,
    outcome: Outcome | None = None,
    dnssec: Dnssec = SECURE,
    cname: tuple[str, ...] = (),
) -> Answer:
    outcome = outcome or (Outcome.OK if data else Outcome.NODATA)
    rcode = {Outcome.NXDOMAIN: "NXDOMAIN", Outcome.SERVFAIL: "SERVFAIL"}.get(outcome, "NOERROR")
    ttl = 300 if outcome is Outcome.OK else None
    return Answer(name, rrtype, outcome, dnssec, dnssec is SECURE, ttl, cname, data, rcode, (), "")


class Zone:
    """The resolver: answers by (name, type), NXDOMAIN (secure) for the rest; every
    question asked is kept, in order."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = {(a.name, a.rrtype): a for a in answers}
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, name: str, rrtype: str, /) -> Answer:
        self.asked.append((name, rrtype))
        found = self.answers.get((name, rrtype))
        return found if found is not None else answer(name, rrtype, outcome=Outcome.NXDOMAIN)


def smtp_result(
    host: str, address: str, starttls: Starttls = Starttls.YES, pkix: bool | None = None
) -> SmtpResult:
    verdict = (
        None if pkix is None else PkixResult(pkix, PkixReason.OK if pkix else PkixReason.EXPIRED, "", "")
    )
    base = SmtpResult.not_measured(host, address, 25, Status.SUCCESS, "")
    return dataclasses.replace(base, phase=Phase.DONE, starttls=starttls, pkix=verdict, attempts=1)


class Smtp:
    """The SMTP probe: ``script`` per address (STARTTLS offered by default), each call kept."""

    def __init__(
        self, chain: tuple[bytes, ...] = (), script: dict[str, SmtpResult | Exception] | None = None
    ) -> None:
        self.chain = chain
        self.script = script or {}
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, host: str, address: str, /) -> SmtpProbe:
        self.calls.append((host, address))
        scripted = self.script.get(address)
        if isinstance(scripted, Exception):
            raise scripted
        result = scripted or smtp_result(host, address)
        return SmtpProbe(result, self.chain if result.starttls is Starttls.YES else ())


class Fetcher:
    """The policy fetch: serves ``body`` (or raises ``error``), each call kept."""

    def __init__(self, body: bytes | None = None, error: Exception | None = None) -> None:
        self.body = body
        self.error = error
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, domain: str, address: str, /) -> tuple[PolicyFetch, bytes | None]:
        self.calls.append((domain, address))
        if self.error is not None:
            raise self.error
        url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
        fetch = dataclasses.replace(
            PolicyFetch.not_fetched(url, address, Status.SUCCESS, ""),
            http_status=200,
            content_type="text/plain",
            body_bytes=len(self.body or b""),
            tls_version="TLSv1.3",
            pkix=PkixResult(True, PkixReason.OK, "", "Test Root"),
        )
        return fetch, self.body


def mx(*hosts: str, dnssec: Dnssec = SECURE, cname: tuple[str, ...] = ()) -> Answer:
    return answer(
        DOMAIN, "MX", *(f"{10 * (i + 1)} {h}." for i, h in enumerate(hosts)), dnssec=dnssec, cname=cname
    )


def host(name: str, *addresses: str, dnssec: Dnssec = SECURE, cname: tuple[str, ...] = ()) -> list[Answer]:
    """A and AAAA answers of an MX host (both NODATA-or-data with ``dnssec``)."""
    v4 = tuple(a for a in addresses if ":" not in a)
    v6 = tuple(a for a in addresses if ":" in a)
    return [
        answer(name, "A", *v4, dnssec=dnssec, cname=cname),
        answer(name, "AAAA", *v6, dnssec=dnssec, cname=cname),
    ]


def plan(
    zone: Zone,
    smtp: Smtp | None = None,
    fetcher: Fetcher | None = None,
    *,
    shared: Zone | None = None,
    cache: SingleFlight[tuple[str, str], SmtpProbe] | None = None,
    validating: bool = True,
    **options: int | bool,
) -> Pipeline:
    return Pipeline(
        lookup_own=zone,
        lookup_shared=shared or zone,
        validating=validating,
        probe_smtp=smtp if smtp is not None else Smtp(),
        fetch_policy=fetcher if fetcher is not None else Fetcher(),
        smtp_cache=cache if cache is not None else SingleFlight(),
        provider_of=lambda name: name.split(".", 1)[1],
        options=PipelineOptions(**options),  # type: ignore[arg-type]
        now=lambda: NOW,
        stale=never_stale,
    )


def measure(pipeline: Pipeline, domain: str = DOMAIN) -> DomainOutcome:
    return asyncio.run(pipeline.measure(domain))


# --- MX: null, none, CNAME'd ------------------------------------------------------------


def test_a_null_mx_asks_no_host_and_connects_nowhere() -> None:
    """RFC 7505: "0 ." accepts no mail; there is no host to look up or probe."""
    zone = Zone(answer(DOMAIN, "MX", "0 ."))
    smtp = Smtp()
    outcome = measure(plan(zone, smtp))
    assert outcome.dns is not None and outcome.dns.null_mx and outcome.dns.mx_hosts == ()
    assert smtp.calls == []
    assert [q for q in zone.asked if q[1] in ("A", "AAAA") and q[0] != f"mta-sts.{DOMAIN}"] == []
    assert outcome.posture is not None and outcome.posture.starttls is Coverage3.NOT_APPLICABLE


def test_no_mx_looks_up_the_implicit_mx_and_probes_nothing() -> None:
    """RFC 5321 §5.1: without MX records the domain's own A/AAAA are the implicit MX; they
    are recorded (asked of the domain's own lookup), not probed."""
    zone = Zone(answer(DOMAIN, "MX"), answer(DOMAIN, "A", "192.0.2.1"))
    smtp = Smtp()
    outcome = measure(plan(zone, smtp))
    assert outcome.dns is not None and outcome.dns.implicit_mx is not None
    assert outcome.dns.implicit_mx.a.data == ("192.0.2.1",)
    assert {(DOMAIN, "A"), (DOMAIN, "AAAA")} <= set(zone.asked)
    assert smtp.calls == [] and outcome.mx_transport == ()


def test_an_nxdomain_has_no_implicit_mx() -> None:
    zone = Zone(answer(DOMAIN, "MX", outcome=Outcome.NXDOMAIN))
    outcome = measure(plan(zone))
    assert outcome.dns is not None and outcome.dns.implicit_mx is None
    assert (DOMAIN, "A") not in zone.asked


def test_a_cnamed_mx_host_is_probed_and_named_as_the_mx_says() -> None:
    """The MX target's A answer came through a CNAME: the probe, the reference and the DANE
    lookup use the MX target's own name (the resolver followed the alias)."""
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1", cname=("real.hosting.test",)))
    smtp = Smtp()
    outcome = measure(plan(zone, smtp))
    assert smtp.calls == [(MX1, "192.0.2.1")]
    (transport,) = outcome.mx_transport
    assert transport.host == MX1 and transport.smtp_refs == (f"smtp:{MX1}@192.0.2.1:25",)
    assert (f"_25._tcp.{MX1}", "TLSA") in zone.asked


def test_mx_hosts_are_looked_up_through_the_shared_resolver() -> None:
    """Names of one domain go to ``lookup_own``; MX host names (shared by many domains) to
    ``lookup_shared``, the cached one."""
    own = Zone(mx(MX1))
    shared = Zone(*host(MX1, "192.0.2.1"))
    measure(plan(own, shared=shared))
    assert {(MX1, "A"), (MX1, "AAAA"), (f"_25._tcp.{MX1}", "TLSA")} == set(shared.asked)
    assert (DOMAIN, "MX") in own.asked and all(q[0] != MX1 for q in own.asked)


# --- DNSSEC and DANE ---------------------------------------------------------------------


def test_tlsa_is_asked_only_when_the_host_addresses_are_secure() -> None:
    """RFC 7672 §2.2.2: an insecure address answer makes TLSA irrelevant, so it is not asked
    and the host's DANE verdict is "none" with the reason."""
    zone = Zone(mx(MX1, MX2), *host(MX1, "192.0.2.1"), *host(MX2, "192.0.2.2", dnssec=INSECURE))
    outcome = measure(plan(zone))
    assert (f"_25._tcp.{MX1}", "TLSA") in zone.asked
    assert (f"_25._tcp.{MX2}", "TLSA") not in zone.asked
    second = outcome.mx_transport[1].dane
    assert second is not None and second.status is DaneStatus.NONE
    assert "address-insecure" in second.detail


def test_a_resolver_that_does_not_validate_leaves_dane_undetermined() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"))
    outcome = measure(plan(zone, validating=False))
    assert (f"_25._tcp.{MX1}", "TLSA") not in zone.asked
    (transport,) = outcome.mx_transport
    assert transport.dane is not None and transport.dane.status is DaneStatus.UNDETERMINED
    assert outcome.posture is not None and outcome.posture.dane_valid is Coverage3.UNKNOWN


def test_a_failed_tlsa_lookup_is_undetermined_and_a_bogus_one_is_bogus() -> None:
    zone = Zone(
        mx(MX1, MX2),
        *host(MX1, "192.0.2.1"),
        *host(MX2, "192.0.2.2"),
        answer(f"_25._tcp.{MX1}", "TLSA", outcome=Outcome.SERVFAIL, dnssec=Dnssec.INDETERMINATE),
        answer(f"_25._tcp.{MX2}", "TLSA", outcome=Outcome.SERVFAIL, dnssec=BOGUS),
    )
    first, second = measure(plan(zone)).mx_transport
    assert first.dane is not None and first.dane.status is DaneStatus.UNDETERMINED
    assert second.dane is not None and second.dane.status is DaneStatus.BOGUS


def test_a_bogus_mx_answer_makes_every_host_dane_bogus() -> None:
    zone = Zone(mx(MX1, dnssec=BOGUS), *host(MX1, "192.0.2.1"), *_tlsa_for(MX1, b"x"))
    outcome = measure(plan(zone))
    (transport,) = outcome.mx_transport
    assert transport.dane is not None and transport.dane.status is DaneStatus.BOGUS
    assert outcome.posture is not None and outcome.posture.dnssec_mx == "bogus"
    assert outcome.posture.dane_published is False


def _tlsa_for(name: str, der: bytes) -> list[Answer]:
    return [answer(f"_25._tcp.{name}", "TLSA", f"3 0 1 {hashlib.sha256(der).hexdigest()}")]


@pytest.fixture(scope="module")
def leaf() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MX1)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_the_probed_chain_reaches_dane_and_matches_its_tlsa(leaf: bytes) -> None:
    """DANE-EE (3 0 1) over the chain the SMTP probe captured: valid with a secure MX answer."""
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"), *_tlsa_for(MX1, leaf))
    outcome = measure(plan(zone, Smtp(chain=(leaf,))))
    (transport,) = outcome.mx_transport
    assert transport.dane is not None and transport.dane.status is DaneStatus.VALID
    assert outcome.posture is not None and outcome.posture.dane_valid is Coverage3.ALL
    assert outcome.posture.dane_published is True


def test_tlsa_under_an_insecure_mx_answer_does_not_apply(leaf: bytes) -> None:
    """RFC 7672 §2.2.1: a matching TLSA record under an insecure MX RRset is "insecure", and
    the domain does not count as publishing DANE."""
    zone = Zone(mx(MX1, dnssec=INSECURE), *host(MX1, "192.0.2.1"), *_tlsa_for(MX1, leaf))
    outcome = measure(plan(zone, Smtp(chain=(leaf,))))
    (transport,) = outcome.mx_transport
    assert transport.dane is not None and transport.dane.status is DaneStatus.INSECURE
    assert outcome.posture is not None and outcome.posture.dane_published is False


def test_a_host_that_offers_no_starttls_is_no_tls_for_dane(leaf: bytes) -> None:
    """Every address settled "no STARTTLS": a DANE sender would not deliver (no-tls), never
    "undetermined"."""
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"), *_tlsa_for(MX1, leaf))
    smtp = Smtp(chain=(leaf,), script={"192.0.2.1": smtp_result(MX1, "192.0.2.1", Starttls.NO)})
    (transport,) = measure(plan(zone, smtp)).mx_transport
    assert transport.dane is not None and transport.dane.status is DaneStatus.NO_TLS
    assert "STARTTLS not offered" in transport.dane.detail


# --- address caps ------------------------------------------------------------------------


def test_address_caps_probe_the_first_addresses_and_count_the_rest_as_not_probed() -> None:
    """Two per host and family, three per domain, spent in MX order: MX1 probes 2 of 3
    (host-cap 1), MX2 the 1 left (domain-cap 1)."""
    zone = Zone(
        mx(MX1, MX2),
        *host(MX1, "192.0.2.1", "192.0.2.2", "192.0.2.3"),
        *host(MX2, "198.51.100.1", "198.51.100.2"),
    )
    smtp = Smtp()
    outcome = measure(plan(zone, smtp, max_addresses_per_host=2, max_addresses_per_domain=3))
    assert sorted(smtp.calls) == [(MX1, "192.0.2.1"), (MX1, "192.0.2.2"), (MX2, "198.51.100.1")]
    first, second = outcome.mx_transport
    assert first.not_probed == {"host-cap": 1} and len(first.smtp_refs) == 2
    assert second.not_probed == {"domain-cap": 1} and len(second.smtp_refs) == 1
    assert [len(p) for p in outcome.smtp_probes] == [2, 1]


def test_without_ipv6_the_aaaa_addresses_are_neither_probed_nor_counted() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1", "2001:db8::1"))
    smtp = Smtp()
    (transport,) = measure(plan(zone, smtp, ipv6=False)).mx_transport
    assert smtp.calls == [(MX1, "192.0.2.1")]
    assert transport.not_probed == {}


def test_an_address_listed_twice_is_probed_once() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1", "192.0.2.1", "192.0.2.2"))
    smtp = Smtp()
    (transport,) = measure(plan(zone, smtp)).mx_transport
    assert sorted(smtp.calls) == [(MX1, "192.0.2.1"), (MX1, "192.0.2.2")]
    assert len(transport.smtp_refs) == 2


def test_ipv4_addresses_are_probed_before_ipv6_in_the_references() -> None:
    zone = Zone(mx(MX1), *host(MX1, "2001:db8::1", "192.0.2.1"))
    (transport,) = measure(plan(zone)).mx_transport
    assert transport.smtp_refs == (f"smtp:{MX1}@192.0.2.1:25", f"smtp:{MX1}@[2001:db8::1]:25")


# --- shared probes -----------------------------------------------------------------------


def test_an_mx_host_shared_by_two_domains_is_probed_once() -> None:
    other = "other.test"
    zone = Zone(mx(MX1), answer(other, "MX", f"10 {MX1}."), *host(MX1, "192.0.2.1"))
    smtp = Smtp()
    pipeline = plan(zone, smtp)

    async def both() -> None:
        await pipeline.measure(DOMAIN)
        await pipeline.measure(other)

    asyncio.run(both())
    assert smtp.calls == [(MX1, "192.0.2.1")]


def test_a_stale_shared_probe_is_made_again_for_the_domain_that_needs_it() -> None:
    """``stale``: the cached probe cannot serve this domain's host (e.g. kept without the
    chain its DANE needs); it is forgotten and the address probed again."""
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"))
    smtp = Smtp()
    cache: SingleFlight[tuple[str, str], SmtpProbe] = SingleFlight()
    seen: list[SmtpProbe] = []

    def stale(probe: SmtpProbe, mx_host: MxHost, /) -> bool:
        seen.append(probe)
        return len(seen) == 1 and mx_host.host == MX1

    pipeline = plan(zone, smtp, cache=cache)
    pipeline.stale = stale
    measure(pipeline)
    assert smtp.calls == [(MX1, "192.0.2.1")] * 2
    assert len(seen) == 1


# --- failures stay inside their probe ------------------------------------------------------


def test_a_crashed_smtp_probe_is_an_unknown_result_for_that_address_only() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1", "192.0.2.2"))
    smtp = Smtp(script={"192.0.2.2": RuntimeError("probe process lost")})
    outcome = measure(plan(zone, smtp))
    good, lost = outcome.smtp_probes[0]
    assert good.result.status is Status.SUCCESS
    assert lost.result.status is Status.UNKNOWN_ERROR and lost.result.starttls is Starttls.UNKNOWN
    assert "RuntimeError: probe process lost" in lost.result.detail
    assert outcome.errors == ()
    assert outcome.posture is not None and outcome.posture.starttls is Coverage3.ALL


def test_a_dns_crash_ends_the_domain_with_a_classified_dns_error() -> None:
    async def broken(name: str, rrtype: str, /) -> Answer:
        raise ValueError("codec bug")

    pipeline = plan(Zone())
    pipeline.lookup_own = broken
    outcome = measure(pipeline)
    assert outcome.dns is None and outcome.posture is None
    ((error),) = outcome.errors
    assert (error.probe, error.status) == ("dns", Status.UNKNOWN_ERROR)
    assert "ValueError: codec bug" in error.detail


def test_a_crash_in_the_smtp_step_keeps_the_policy_and_the_roll_ups() -> None:
    """A bug while building the transports (here: the provider table) becomes an "smtp"
    error; the MTA-STS result and the posture are still computed."""
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"), answer(f"mta-sts.{DOMAIN}", "A", "192.0.2.80"))
    pipeline = plan(zone)

    def provider_of(name: str) -> str | None:
        if name == MX1:
            raise KeyError(name)
        return None

    pipeline.provider_of = provider_of
    outcome = measure(pipeline)
    assert [(e.probe, e.status) for e in outcome.errors] == [("smtp", Status.UNKNOWN_ERROR)]
    assert outcome.mx_transport == () and outcome.mta_sts is not None and outcome.posture is not None


# --- MTA-STS and DNS-only ----------------------------------------------------------------


def test_the_policy_is_fetched_from_the_policy_hosts_first_address_even_without_txt() -> None:
    """RFC 8461 §3.1 makes the TXT record the switch, but a policy served without it is a
    finding, so the fetch does not wait for the TXT record."""
    zone = Zone(
        mx(MX1), *host(MX1, "192.0.2.1"), answer(f"mta-sts.{DOMAIN}", "A", "192.0.2.80", "192.0.2.81")
    )
    fetcher = Fetcher(body=b"version: STSv1\r\nmode: enforce\r\nmx: *.example.test\r\nmax_age: 86400\r\n")
    outcome = measure(plan(zone, fetcher=fetcher))
    assert fetcher.calls == [(DOMAIN, "192.0.2.80")]
    assert outcome.mta_sts is not None and outcome.mta_sts.fetch is not None
    assert outcome.mta_sts.record.valid is False and outcome.mta_sts.mode is None


def test_a_policy_host_without_an_address_is_not_fetched() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"), answer(f"_mta-sts.{DOMAIN}", "TXT", TXT_OK))
    fetcher = Fetcher(body=b"")
    outcome = measure(plan(zone, fetcher=fetcher))
    assert fetcher.calls == []
    assert outcome.mta_sts is not None and outcome.mta_sts.fetch is None


def _enforce_zone() -> Zone:
    return Zone(
        mx(MX1),
        *host(MX1, "192.0.2.1"),
        answer(f"_mta-sts.{DOMAIN}", "TXT", TXT_OK),
        answer(f"mta-sts.{DOMAIN}", "A", "192.0.2.80"),
    )


ENFORCE = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmax_age: 86400\r\n"


@pytest.mark.parametrize(("pkix", "delivers"), [(True, True), (False, False)])
def test_mta_sts_would_deliver_follows_the_mx_hosts_pkix_verdict(pkix: bool, delivers: bool) -> None:
    """The SMTP probe's PKIX verdict per host reaches the MTA-STS assessment (RFC 8461 §4.2)."""
    smtp = Smtp(script={"192.0.2.1": smtp_result(MX1, "192.0.2.1", pkix=pkix)})
    outcome = measure(plan(_enforce_zone(), smtp, Fetcher(body=ENFORCE)))
    assert outcome.mta_sts is not None and outcome.mta_sts.mode == "enforce"
    assert outcome.mta_sts.would_deliver is delivers
    assert outcome.posture is not None and outcome.posture.mta_sts_mode == "enforce"


def test_a_crashed_policy_fetch_is_an_unknown_fetch_never_an_absent_policy() -> None:
    outcome = measure(plan(_enforce_zone(), fetcher=Fetcher(error=ConnectionError("lost"))))
    assert outcome.mta_sts is not None and outcome.mta_sts.fetch is not None
    assert outcome.mta_sts.fetch.status is Status.UNKNOWN_ERROR
    assert outcome.mta_sts.fetch.address == "192.0.2.80"
    assert outcome.errors == ()


def test_dns_only_connects_nowhere_and_skips_the_policy_host() -> None:
    zone = _enforce_zone()
    smtp, fetcher = Smtp(), Fetcher(body=ENFORCE)
    outcome = measure(plan(zone, smtp, fetcher, dns_only=True))
    assert smtp.calls == [] and fetcher.calls == []
    assert (f"mta-sts.{DOMAIN}", "A") not in zone.asked
    assert outcome.mta_sts is None and outcome.mx_transport == ()
    assert outcome.tlsrpt is not None and outcome.posture is not None


# --- reverse DNS and the visible tail -------------------------------------------------------


def test_the_reverse_lookup_rides_on_the_host_line_and_a_crashed_one_is_left_out() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1", "192.0.2.2"))
    pipeline = plan(zone)

    async def ptr(address: str, /) -> PtrResult:
        if address.endswith(".2"):
            raise OSError("resolver gone")
        return PtrResult(address, Outcome.OK, (MX1,), Fcrdns.CONFIRMED, MX1, "")

    pipeline.lookup_ptr = ptr
    first, second = measure(pipeline).smtp_probes[0]
    assert b'"ptr"' in first.host_line and MX1.encode() in first.host_line
    assert second.host_line == b"" and second.result.status is Status.SUCCESS


def test_the_domains_awaiting_a_probe_are_visible_while_it_runs() -> None:
    zone = Zone(mx(MX1), *host(MX1, "192.0.2.1"))
    started, release = asyncio.Event(), asyncio.Event()
    pipeline = plan(zone)

    async def slow(name: str, address: str, /) -> SmtpProbe:
        started.set()
        await release.wait()
        return SmtpProbe(smtp_result(name, address), ())

    pipeline.probe_smtp = slow

    async def run() -> tuple[int, int]:
        task = asyncio.create_task(pipeline.measure(DOMAIN))
        await started.wait()
        during = pipeline.domains_awaiting([(MX1, "192.0.2.1"), ("other", "192.0.2.9")])
        release.set()
        await task
        return during, pipeline.domains_awaiting([(MX1, "192.0.2.1")])

    assert asyncio.run(run()) == (1, 0)
    assert pipeline.awaiting == {}

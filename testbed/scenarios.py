# ruff: noqa: E501  (the catalogue is a table: one scenario per line reads best)
"""The scenario catalogue: one domain per case a scanner must get right.

Every scenario is a function ``(domain_name, builder) -> Domain`` that adds the
hosts and zones it needs to the builder, so the same case can be planted once
in the scenario world (``<key>.scenario.test``) and sprinkled many times into
the scale world (``<key>-<n>.scenario.test``).  Names say what is wrong.

Preflight names for the scanner's resolver check: the root zone is signed (its
SOA answers with AD=1) and ``bogus.scenario.test`` and ``dnssec-failed.test``
are bogus (SERVFAIL without CD).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from testbed.addressing import IPV6_LOOPBACK, AddressAllocator
from testbed.world import (
    NULL_MX,
    CertKind,
    Domain,
    Host,
    HostRole,
    MtaStsPolicy,
    Mx,
    PolicyHttp,
    Record,
    ResolverFault,
    SmtpBehaviour,
    Tlsa,
    TlsaBinds,
    World,
    Zone,
    ZoneStatus,
)

__all__ = [
    "INFRA_ZONES",
    "PREFLIGHT_BOGUS",
    "SCENARIOS",
    "SCENARIO_SUFFIX",
    "Builder",
    "Scenario",
    "policy_body",
    "scenario_world",
    "sts_txt",
    "tlsrpt_txt",
]

SCENARIO_SUFFIX = "scenario.test"
#: Names that must SERVFAIL without CD at a validating resolver (scanner preflight).
PREFLIGHT_BOGUS = ("bogus.scenario.test", "dnssec-failed.test")
SIGNED, UNSIGNED, BOGUS = ZoneStatus.SIGNED, ZoneStatus.UNSIGNED, ZoneStatus.BOGUS

#: The private root and the delegations above every domain.  All signed, so a
#: signed domain below them has a complete chain of trust (an unsigned one is an
#: insecure delegation).  dnssec-failed.test is the permanent bogus preflight name.
INFRA_ZONES = (
    Zone("", SIGNED),
    Zone("test", SIGNED),
    Zone(SCENARIO_SUFFIX, SIGNED),
    Zone("prov.test", SIGNED),
    Zone("dnssec-failed.test", BOGUS, (Record("dnssec-failed.test", "A", "127.0.0.2"),)),
)


def sts_txt(policy_id: str = "20240101T000000") -> str:
    return f"v=STSv1; id={policy_id};"


def tlsrpt_txt(domain: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"


def policy_body(mode: str, mx: tuple[str, ...], max_age: int | None = 604800) -> bytes:
    """An RFC 8461 §3.2 policy, CRLF line endings."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx)]
    if max_age is not None:
        lines.append(f"max_age: {max_age}")
    return ("\r\n".join(lines) + "\r\n").encode()


class Builder:
    """Collects hosts and zones while domains are built; hands out addresses."""

    def __init__(self, alloc: AddressAllocator | None = None) -> None:
        self.alloc = alloc or AddressAllocator()
        self.hosts: list[Host] = []
        self.zones: dict[str, Zone] = {z.apex: z for z in INFRA_ZONES}
        #: Things built once per world (shared hosts, provider MX sets), by key.
        self.shared: dict[str, object] = {}
        #: Reverse DNS of a host's addresses other than "PTR to its own name" (the default):
        #: host name -> the PTR target, or None for no PTR record at all.
        self.ptr: dict[str, str | None] = {}

    def host(self, name: str, *, address: bool = True, **kw: object) -> Host:
        host = Host(name, self.alloc.next() if address else None, **kw)  # type: ignore[arg-type]
        self.hosts.append(host)
        return host

    def zone(self, zone: Zone) -> None:
        self.zones.setdefault(zone.apex, zone)

    def once(self, key: str, make: Callable[[], object]) -> object:
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]


def _selfhosted(
    name: str,
    b: Builder,
    *,
    dnssec: ZoneStatus = UNSIGNED,
    smtp: SmtpBehaviour = SmtpBehaviour.GOOD,
    cert: CertKind = CertKind.VALID,
    tlsa: tuple[Tlsa, ...] = (),
    **domain_kw: object,
) -> Domain:
    """A domain whose single MX ``mx.<name>`` lives in its own zone."""
    mx = f"mx.{name}"
    b.host(mx, smtp=smtp, cert=cert, banner=f"{mx} ESMTP mxscan-testbed", tlsa=tlsa, dnssec=dnssec)
    return Domain(name, dnssec=dnssec, mx=(Mx(10, mx),), **domain_kw)  # type: ignore[arg-type]


def _ptr(target: str | None) -> Callable[[str, Builder], Domain]:
    """A good self-hosted MX whose address has a PTR to ``target`` (None: no PTR)."""

    def build(name: str, b: Builder) -> Domain:
        b.ptr[f"mx.{name}"] = target
        return _selfhosted(name, b)

    return build


#: The scanner's own vantage in every scenario world: 127.0.0.1 (the source address of
#: every loopback connection) has a PTR to this name, which resolves back to it (FCrDNS),
#: and it is the EHLO name the end-to-end tests give.
VANTAGE_ADDRESS = "127.0.0.1"
VANTAGE_NAME = "scanner.mxscan.test"


def reverse_name(address: str) -> str:
    """in-addr.arpa (RFC 1035 §3.5) / ip6.arpa (RFC 3596 §2.5) owner name, no trailing dot."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + ".in-addr.arpa"
    return ".".join(reversed(ip.exploded.replace(":", ""))) + ".ip6.arpa"


def reverse_zones(hosts: list[Host], overrides: dict[str, str | None]) -> tuple[Zone, ...]:
    """The world's reverse zones: a PTR to its own name for every MX host address, except the
    hosts in ``overrides`` (another target, or none); the vantage address's PTR and A."""
    records = {
        "in-addr.arpa": [Record(reverse_name(VANTAGE_ADDRESS), "PTR", f"{VANTAGE_NAME}.")],
        "ip6.arpa": [],
    }
    seen = {VANTAGE_ADDRESS}
    for host in hosts:
        if host.role is not HostRole.MX:
            continue
        target = overrides.get(host.name, host.name)
        for address in host.addresses():
            if target is None or address in seen:
                continue  # one PTR per address: shared addresses (::1) keep their first host's
            seen.add(address)
            zone = "ip6.arpa" if ":" in address else "in-addr.arpa"
            records[zone].append(Record(reverse_name(address), "PTR", f"{target}."))
    return tuple(Zone(apex, UNSIGNED, tuple(recs)) for apex, recs in records.items())


def _smtp(behaviour: SmtpBehaviour) -> Callable[[str, Builder], Domain]:
    return lambda name, b: _selfhosted(name, b, smtp=behaviour)


def _cert(kind: CertKind) -> Callable[[str, Builder], Domain]:
    return lambda name, b: _selfhosted(name, b, cert=kind)


def _dane(
    dnssec: ZoneStatus, *tlsa: Tlsa, smtp: SmtpBehaviour = SmtpBehaviour.GOOD
) -> Callable[[str, Builder], Domain]:
    return lambda name, b: _selfhosted(name, b, dnssec=dnssec, tlsa=tlsa, smtp=smtp)


def _sts(
    mode: str | None = "enforce",
    *,
    http: PolicyHttp = PolicyHttp.OK,
    body: bytes | Callable[[str], bytes] | None = None,
    fail: str | None = None,
    covered: bool = True,
    txt: tuple[str, ...] | None = None,
    cert: CertKind = CertKind.VALID,
) -> Callable[[str, Builder], Domain]:
    """A self-hosted domain with an MTA-STS policy served at mta-sts.<name>.

    ``body`` may depend on the domain name; ``fail`` is the one reason a correct
    fetcher ends without a usable policy (None: the policy is valid).
    """

    def build(name: str, b: Builder) -> Domain:
        mx = f"mx.{name}"
        served = body(name) if callable(body) else body
        if served is None:
            served = policy_body(mode or "none", (mx,))
        policy_cert = CertKind.WRONG_NAME if http is PolicyHttp.WRONG_CERT else CertKind.VALID
        b.host(f"mta-sts.{name}", role=HostRole.POLICY, smtp=None, cert=policy_cert)
        reasons = (fail,) if fail else ()
        policy = MtaStsPolicy(served, http, None if fail else mode, not fail, reasons, covered)
        return _selfhosted(name, b, cert=cert, sts_txt=txt or (sts_txt(),), policy=policy)

    return build


def _fault(fault: ResolverFault) -> Callable[[str, Builder], Domain]:
    return lambda name, b: Domain(name, fault=fault)


def _nodata(name: str, b: Builder) -> Domain:
    web = b.host(name, role=HostRole.WEB, smtp=None, cert=None)
    return Domain(name, a=(web.ipv4,) if web.ipv4 else ())


def _no_address(name: str, b: Builder) -> Domain:
    b.host(f"mx.{name}", address=False)
    return Domain(name, mx=(Mx(10, f"mx.{name}"),))


def _multi_mx(name: str, b: Builder) -> Domain:
    prefs = (("mx1", 10), ("mx2", 20), ("backup", 20), ("last", 30))
    for label, _ in prefs:
        b.host(f"{label}.{name}", banner=f"{label}.{name} ESMTP")
    return Domain(name, mx=tuple(Mx(p, f"{label}.{name}") for label, p in prefs))


def _shared(name: str, b: Builder) -> Domain:
    apex = f"shared-hosting.{SCENARIO_SUFFIX}"

    def make() -> tuple[Mx, ...]:
        b.zone(Zone(apex))
        for label in ("mx1", "mx2"):
            b.host(f"{label}.{apex}")
        return (Mx(10, f"mx1.{apex}"), Mx(20, f"mx2.{apex}"))

    return Domain(name, mx=b.once("shared-hosting", make))  # type: ignore[arg-type]


def _ipv6_only(name: str, b: Builder) -> Domain:
    b.hosts.append(Host(f"mx.{name}", None, IPV6_LOOPBACK))
    return Domain(name, mx=(Mx(10, f"mx.{name}"),))


def _mx_cname(name: str, b: Builder) -> Domain:
    # A CNAME cannot sit at a zone apex (RFC 1034 §3.6.2), so this name is an
    # alias inside the signed scenario.test zone; its target is an unsigned zone.
    target = f"cname-target.{SCENARIO_SUFFIX}"

    def make() -> tuple[Mx, ...]:
        b.host(f"mx.{target}")
        b.zone(Zone(target, UNSIGNED, (Record(target, "MX", f"10 mx.{target}."),)))
        return (Mx(10, f"mx.{target}"),)

    return Domain(name, dnssec=SIGNED, cname=target, mx=b.once("cname-target", make))  # type: ignore[arg-type]


def _truncated(name: str, b: Builder) -> Domain:
    # 24 MX with long first labels: ~1,700 bytes, more than the 1,232-byte EDNS
    # buffer recommended by DNS Flag Day 2020, so UDP answers are truncated.
    pad = "long-label-to-exceed-the-udp-payload-size"
    hosts = tuple(f"mx{i:02d}-{pad}.{name}" for i in range(24))
    for h in hosts:
        b.host(h)
    return Domain(name, mx=tuple(Mx(10 + i, h) for i, h in enumerate(hosts)))


def _sts_cname(name: str, b: Builder) -> Domain:
    apex = f"policy-provider.{SCENARIO_SUFFIX}"
    target = f"_mta-sts.{apex}"
    b.zone(Zone(apex, UNSIGNED, (Record(target, "TXT", f'"{sts_txt("delegated1")}"'),)))
    domain = _sts("enforce")(name, b)
    return Domain(
        name, mx=domain.mx, sts_txt=(sts_txt("delegated1"),), sts_cname=target, policy=domain.policy
    )


def _tlsrpt(kind: str) -> Callable[[str, Builder], Domain]:
    def build(name: str, b: Builder) -> Domain:
        txt = {
            "valid": (tlsrpt_txt(name),),
            "absent": (),
            "malformed": ("v=TLSRPTv1; rua=tlsrpt-at-nowhere",),
        }
        return _selfhosted(name, b, tlsrpt_txt=txt[kind])

    return build


def _provider(
    key: str, *, dane: bool = False, variant: int = 0, dnssec: ZoneStatus = UNSIGNED
) -> Callable[[str, Builder], Domain]:
    def build(name: str, b: Builder) -> Domain:
        from testbed.scale import provider_mx  # the provider table lives with the scale world

        return Domain(name, dnssec=dnssec, mx=provider_mx(b, key, name, dane=dane, variant=variant))

    return build


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    group: str
    description: str
    build: Callable[[str, Builder], Domain]


_EE311 = Tlsa(3, 1, 1, TlsaBinds.EE)
_MISMATCH311 = Tlsa(3, 1, 1, TlsaBinds.MISMATCH)
_TA201 = Tlsa(2, 0, 1, TlsaBinds.TA)
_ROOT200 = Tlsa(2, 0, 0, TlsaBinds.ROOT)
_PKIX = (Tlsa(0, 0, 1, TlsaBinds.TA), Tlsa(1, 1, 1, TlsaBinds.EE))
_S, _C, _H, _F = SmtpBehaviour, CertKind, PolicyHttp, ResolverFault
_BAD_SYNTAX = b"version: STSv1\r\nmode: enforce\r\nmx mx.example\r\nmax_age: 86400\r\n"
_ELSEWHERE = policy_body("enforce", ("mail.elsewhere.test",))
_TWO_TXT = (sts_txt("a1"), sts_txt("b2"))


def _wildcard_body(name: str) -> bytes:
    return policy_body("enforce", (f"*.{name}",))


def _no_max_age_body(name: str) -> bytes:
    return policy_body("enforce", (f"mx.{name}",), max_age=None)


def _oversized_body(name: str) -> bytes:
    # RFC 8461 §3.3 lets senders cap the body (64 KiB is common); this one is larger.
    return policy_body("enforce", (f"mx.{name}",)) + b"#" * 70_000 + b"\r\n"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("nxdomain", "dns", "no MX: the domain does not exist (NXDOMAIN)", lambda n, b: Domain(n, exists=False)),
    Scenario("nodata", "dns", "no MX: the name exists with an A record only (NODATA, implicit MX)", _nodata),
    Scenario("null-mx", "dns", "RFC 7505 null MX '0 .': accepts no mail", lambda n, b: Domain(n, mx=NULL_MX)),
    Scenario("no-address-mx", "dns", "MX to a name with no A/AAAA (NXDOMAIN)", _no_address),
    Scenario("multi-mx", "dns", "four MX with preferences 10, 20, 20, 30", _multi_mx),
    Scenario("shared-mx-1", "dns", "MX hosts shared with shared-mx-2 and -3", _shared),
    Scenario("shared-mx-2", "dns", "MX hosts shared with shared-mx-1 and -3", _shared),
    Scenario("shared-mx-3", "dns", "MX hosts shared with shared-mx-1 and -2", _shared),
    Scenario("ipv6-only", "dns", "the MX host has only an AAAA record (::1)", _ipv6_only),
    Scenario("signed", "dns", "DNSSEC-signed domain and MX host: AD on every answer", _dane(SIGNED)),
    Scenario("bogus", "dns", "signatures do not validate: SERVFAIL + EDE 6, data with CD=1", _dane(BOGUS)),
    Scenario("mx-cname", "dns", "the domain is a CNAME to cname-target.scenario.test", _mx_cname),
    Scenario("timeout", "resolver", "the resolver never answers about this name", _fault(_F.TIMEOUT)),
    Scenario("refused", "resolver", "the resolver answers REFUSED", _fault(_F.REFUSED)),
    Scenario("servfail", "resolver", "SERVFAIL also with CD=1: broken, not bogus", _fault(_F.SERVFAIL)),
    Scenario("truncated", "resolver", "MX reply over 1,232 bytes: TC over UDP, full over TCP", _truncated),
    Scenario("smtp-refused", "smtp", "nothing listens on port 25", _smtp(_S.REFUSED)),
    Scenario("blackhole", "smtp", "accepts TCP, never sends a banner", _smtp(_S.BLACKHOLE)),
    Scenario("banner-554", "smtp", "greets with 554", _smtp(_S.BANNER_554)),
    Scenario("421-close", "smtp", "greets with 421 and closes", _smtp(_S.CLOSE_421)),
    Scenario("no-starttls", "smtp", "EHLO does not offer STARTTLS", _smtp(_S.NO_STARTTLS)),
    Scenario("starttls-454", "smtp", "STARTTLS offered, answered 454", _smtp(_S.STARTTLS_454)),
    Scenario("handshake-fail", "smtp", "220 to STARTTLS, then the handshake fails", _smtp(_S.HANDSHAKE_FAIL)),
    Scenario("slow-banner", "smtp", "the banner comes late, within the timeout", _smtp(_S.SLOW_BANNER)),
    Scenario("tarpit", "smtp", "EHLO is answered after the read timeout", _smtp(_S.TARPIT)),
    Scenario("valid-cert", "smtp", "publicly trusted certificate for the MX name", _cert(_C.VALID)),
    Scenario("self-signed", "smtp", "self-signed certificate", _cert(_C.SELF_SIGNED)),
    Scenario("expired-cert", "smtp", "expired certificate", _cert(_C.EXPIRED)),
    Scenario("not-yet-valid", "smtp", "certificate not yet valid", _cert(_C.NOT_YET_VALID)),
    Scenario("wrong-name", "smtp", "certificate for another host name", _cert(_C.WRONG_NAME)),
    Scenario("untrusted-ca", "smtp", "certificate from a CA the scanner does not trust", _cert(_C.UNTRUSTED_CA)),
    Scenario("missing-intermediate", "smtp", "leaf sent without its intermediate", _cert(_C.MISSING_INTERMEDIATE)),
    Scenario("dane-ee-match", "dane", "signed, TLSA 3 1 1 matching the leaf", _dane(SIGNED, _EE311)),
    Scenario("dane-ee-mismatch", "dane", "signed, TLSA 3 1 1 matching nothing", _dane(SIGNED, _MISMATCH311)),
    Scenario("dane-ta-match", "dane", "signed, TLSA 2 0 1 matching the issuing CA", _dane(SIGNED, _TA201)),
    Scenario("dane-unsigned", "dane", "TLSA 3 1 1 in an unsigned zone: not DANE", _dane(UNSIGNED, _EE311)),
    Scenario("dane-pkix-only", "dane", "signed, TLSA usages 0 and 1 only (RFC 7672 §3.1.3)", _dane(SIGNED, *_PKIX)),
    Scenario("dane-ta-root-full", "dane", "signed, TLSA 2 0 0: the full root, which the server does not send", _dane(SIGNED, _ROOT200)),
    Scenario("dane-no-starttls", "dane", "signed, TLSA 3 1 1, no STARTTLS: a DANE sender would not deliver", _dane(SIGNED, _EE311, smtp=_S.NO_STARTTLS)),
    Scenario("dane-unreachable", "dane", "signed, TLSA 3 1 1, nothing listens on port 25", _dane(SIGNED, _EE311, smtp=_S.REFUSED)),
    Scenario("sts-enforce", "mta-sts", "valid enforce policy covering the MX", _sts("enforce")),
    Scenario("sts-testing", "mta-sts", "valid testing policy", _sts("testing")),
    Scenario("sts-none", "mta-sts", "valid policy with mode none", _sts("none")),
    Scenario("sts-mx-not-covered", "mta-sts", "enforce policy whose mx misses the MX", _sts(body=_ELSEWHERE, covered=False)),
    Scenario("sts-wildcard", "mta-sts", "enforce policy with a *. pattern covering the MX", _sts(body=_wildcard_body)),
    Scenario("sts-404", "mta-sts", "the policy URL answers 404", _sts(http=_H.NOT_FOUND, fail="http-status")),
    Scenario("sts-content-type", "mta-sts", "policy served as text/html", _sts(http=_H.WRONG_CONTENT_TYPE, fail="content-type")),
    Scenario("sts-redirect", "mta-sts", "the policy URL redirects (not followed)", _sts(http=_H.REDIRECT, fail="redirect")),
    Scenario("sts-wrong-cert", "mta-sts", "policy host cert for another name", _sts(http=_H.WRONG_CERT, fail="policy-host-certificate")),
    Scenario("sts-bad-syntax", "mta-sts", "policy body does not parse", _sts(body=_BAD_SYNTAX, fail="syntax")),
    Scenario("sts-no-max-age", "mta-sts", "policy without max_age", _sts(body=_no_max_age_body, fail="missing-max-age")),
    Scenario("sts-oversized", "mta-sts", "policy body over 64 KiB", _sts(http=_H.OVERSIZED, body=_oversized_body, fail="oversized")),
    Scenario("sts-no-https", "mta-sts", "TXT present, nothing on the policy host's 443", _sts(http=_H.NO_SERVER, fail="connect")),
    Scenario("sts-cname", "mta-sts", "_mta-sts is a CNAME to a policy provider", _sts_cname),
    Scenario("sts-two-records", "mta-sts", "two v=STSv1 TXT records (RFC 8461 §3.1)", _sts(txt=_TWO_TXT, fail="multiple-txt")),
    Scenario("sts-enforce-bad-cert", "mta-sts", "enforce policy, expired MX certificate: mail bounces", _sts(cert=_C.EXPIRED)),
    Scenario("ptr-mismatch", "dns", "the MX address's PTR names a host that resolves elsewhere (no FCrDNS)", _ptr(f"mx.valid-cert.{SCENARIO_SUFFIX}")),
    Scenario("ptr-missing", "dns", "the MX address has no PTR record", _ptr(None)),
    Scenario("tlsrpt-valid", "tls-rpt", "valid TLS-RPT record", _tlsrpt("valid")),
    Scenario("tlsrpt-absent", "tls-rpt", "no TLS-RPT record", _tlsrpt("absent")),
    Scenario("tlsrpt-malformed", "tls-rpt", "TLS-RPT record whose rua is not a URI", _tlsrpt("malformed")),
    Scenario("provider-google", "provider", "hosted by the google.com stand-in", _provider("google")),
    Scenario("provider-outlook", "provider", "outlook.com stand-in, per-customer MX, no TLSA", _provider("outlook")),
    Scenario("provider-outlook-dane", "provider", "outlook.com stand-in, opt-in DANE, signed", _provider("outlook", dane=True, dnssec=SIGNED)),
    Scenario("provider-googlemail", "provider", "googlemail.com stand-in", _provider("googlemail")),
    Scenario("provider-pphosted", "provider", "pphosted.com stand-in", _provider("pphosted")),
    Scenario("provider-mimecast", "provider", "mimecast.com stand-in", _provider("mimecast")),
    Scenario("provider-registrar-servers", "provider", "registrar-servers.com stand-in", _provider("registrar-servers")),
    Scenario("provider-amazonaws", "provider", "amazonaws.com stand-in", _provider("amazonaws")),
    Scenario("provider-qq", "provider", "qq.com stand-in: mxdomain has a wrong-name cert", _provider("qq", variant=1)),
    Scenario("provider-cloudflare", "provider", "cloudflare.net stand-in: signed, TLSA", _provider("cloudflare", dnssec=SIGNED)),
    Scenario("provider-cloudflare-unsigned", "provider", "cloudflare.net stand-in, unsigned customer: MX hosts with TLSA, not DANE", _provider("cloudflare")),
    Scenario("provider-yandex", "provider", "yandex.net stand-in", _provider("yandex")),
)  # fmt: skip


def scenario_world() -> World:
    """One domain per scenario, ``<key>.scenario.test``, in catalogue order."""
    from testbed.scale import PROVIDERS

    b = Builder()
    domains = tuple(_with_scenario(s.build(f"{s.key}.{SCENARIO_SUFFIX}", b), s.key) for s in SCENARIOS)
    test = b.zones["test"]
    b.zones["test"] = Zone(
        test.apex, test.status, (*test.records, Record(VANTAGE_NAME, "A", VANTAGE_ADDRESS))
    )
    for zone in reverse_zones(b.hosts, b.ptr):
        b.zone(zone)
    return World("scenarios", domains, tuple(b.hosts), tuple(b.zones.values()), PROVIDERS)


def _with_scenario(domain: Domain, key: str) -> Domain:
    from dataclasses import replace

    return replace(domain, scenario=key)

"""The scale world: N domains with the study's prevalence, deterministic for a seed.

Defaults follow the study ("Is email confidential in transit yet?", 2024): of the top 100,000 domains 65,244
had MX; of those 8% DNSSEC, 0.9% DANE, 1.2% MTA-STS (0.7% enforce); of a top-
1,000 sample with MX, 99.3% offered STARTTLS and 94.1% had publicly trusted
certificates.  MX hosting follows the study's top-10 provider table; the rest
is a long tail of self-hosted MTAs, each its own host and address.

Rates are *targets over domains with MX*; the per-segment probabilities that
reach them are derived in ``_Plan`` (e.g. only the self-hosted tail lacks
STARTTLS, so its no-STARTTLS probability is 0.7% / tail share).  A TOML profile
overrides any rate or provider count:

    mx = 0.5
    dnssec = 0.2
    [providers]
    google = 30000

Politeness tests add a provider the study does not have: ``throttled`` (a
share of domains with MX, default 0) are hosted by ``THROTTLE_ZONE``, each on
its own per-customer MX host (as outlook.com does), and that provider accepts
at most ``throttle_limit`` SMTP connections at once over all its hosts,
greeting the next ones with 421 (``Host.connection_limit``).  With the default
0 the world is exactly what it was without the option (no random draws).

Internet-like conditions (``internet.py``; ``--profile internet``): latency on
every protocol and shares of hostile self-hosted MX hosts and policy hosts, all
0 by default.  Those draws come from an RNG of their own, so a world with them
has the same domains as the same seed without them.

Certificates: a provider's hosts whose certificate is valid all present one
certificate, as real providers do (``_provider_cert_names``: outlook's
``*.mail.protection.outlook.com``, pphosted's pool wildcard, Google's one
multi-SAN certificate for aspmx and alt*.aspmx); ``Host.cert_names`` names it.
Self-hosted MTAs and defective certificates (qq's wrong-name mxdomain) stay
per host.
"""

from __future__ import annotations

import random
import tomllib
import zlib
from bisect import bisect
from dataclasses import dataclass, field, fields, replace
from itertools import accumulate
from pathlib import Path

from testbed.internet import Hostile, conditions, profile_file
from testbed.scenarios import SCENARIO_SUFFIX, SCENARIOS, Builder, policy_body, sts_txt, tlsrpt_txt
from testbed.world import (
    NULL_MX,
    CertKind,
    Domain,
    HostRole,
    MtaStsPolicy,
    Mx,
    Provider,
    Record,
    SmtpBehaviour,
    Tlsa,
    TlsaBinds,
    World,
    Zone,
    ZoneStatus,
)

__all__ = [
    "PROVIDERS",
    "THROTTLE_PROVIDER",
    "THROTTLE_ZONE",
    "Profile",
    "load_profile",
    "provider_mx",
    "scale_world",
]

#: The study's top-10 table: key, real name, zone signed, DANE column, domains.
PROVIDERS: tuple[Provider, ...] = (
    Provider("google", "google.com", "google.prov.test", "no", 20838),
    Provider("outlook", "outlook.com", "outlook.prov.test", "optional", 10480),
    Provider("googlemail", "googlemail.com", "googlemail.prov.test", "no", 8539),
    Provider("pphosted", "pphosted.com", "pphosted.prov.test", "no", 3150),
    Provider("mimecast", "mimecast.com", "mimecast.prov.test", "no", 1511),
    Provider("registrar-servers", "registrar-servers.com", "registrar-servers.prov.test", "no", 1294),
    Provider("amazonaws", "amazonaws.com", "amazonaws.prov.test", "no", 1271),
    Provider("qq", "qq.com", "qq.prov.test", "no", 1039),
    Provider("cloudflare", "cloudflare.net", "cloudflare.prov.test", "yes", 886),
    Provider("yandex", "yandex.net", "yandex.prov.test", "no", 584),
)
_BY_KEY = {p.key: p for p in PROVIDERS}
#: Providers whose zones are DNSSEC-signed (outlook's mail.protection zone since 2024).
_SIGNED_PROVIDERS = frozenset({"outlook", "cloudflare"})
_EE311 = (Tlsa(3, 1, 1, TlsaBinds.EE),)
STUDY_MX_DOMAINS = 65244
#: The throttling provider of politeness tests (not one of the study's): key and zone.
THROTTLE_PROVIDER = "throttle"
THROTTLE_ZONE = "throttle.prov.test"

#: Shared MX sets per provider (variant 0 first): (preference, host label) pairs.
_SHARED_MX: dict[str, tuple[tuple[tuple[int, str], ...], ...]] = {
    "google": (
        (
            (1, "aspmx.l"),
            (5, "alt1.aspmx.l"),
            (5, "alt2.aspmx.l"),
            (10, "alt3.aspmx.l"),
            (10, "alt4.aspmx.l"),
        ),
    ),
    "googlemail": (((5, "gmail-smtp-in.l"), (10, "alt1.gmail-smtp-in.l"), (20, "alt2.gmail-smtp-in.l")),),
    "mimecast": (
        ((10, "eu-smtp-inbound-1"), (10, "eu-smtp-inbound-2")),
        ((10, "us-smtp-inbound-1"), (10, "us-smtp-inbound-2")),
    ),
    "registrar-servers": (
        ((10, "eforward1"), (10, "eforward2"), (10, "eforward3"), (15, "eforward4"), (20, "eforward5")),
    ),
    "amazonaws": (
        ((10, "inbound-smtp.us-east-1"),),
        ((10, "inbound-smtp.eu-west-1"),),
        ((10, "inbound-smtp.us-west-2"),),
    ),
    # qq: the second pattern includes mxdomain, whose certificate names another host.
    "qq": (((5, "mxbiz1"), (10, "mxbiz2")), ((5, "mxdomain"), (10, "mx1"), (20, "mx2"))),
    "cloudflare": (((13, "route1.mx"), (24, "route2.mx"), (86, "route3.mx")),),
    "yandex": (((10, "mx"),),),
}
_PPHOSTED_POOL = 32


def _provider_cert_names(key: str, zone: str) -> tuple[str, ...]:
    """The names of the one certificate every VALID host of provider ``key`` presents.

    As real providers do: outlook's per-customer hosts and pphosted's pools present a
    wildcard (RFC 6125 §6.4.3: "*" is the whole left-most label and stands for exactly
    one label, which each host name has there); the fixed MX sets share one SAN list.
    """
    if key == "outlook":
        return (f"*.mail.protection.{zone}",)
    if key == "pphosted":
        return (f"*.{zone}",)
    # Not qq's mxdomain: its certificate names another host (a WRONG_NAME of its own).
    labels = dict.fromkeys(
        label for pattern in _SHARED_MX[key] for _, label in pattern if label != "mxdomain"
    )
    return tuple(f"{label}.{zone}" for label in labels)


#: Provider key -> the names of the certificate its VALID hosts share (one tuple per provider).
_CERT_NAMES = {p.key: _provider_cert_names(p.key, p.zone) for p in PROVIDERS}
_THROTTLE_CERT_NAMES = (f"*.mx.{THROTTLE_ZONE}",)
_BAD_CERTS = (
    (CertKind.SELF_SIGNED, 0.5),
    (CertKind.EXPIRED, 0.2),
    (CertKind.WRONG_NAME, 0.15),
    (CertKind.UNTRUSTED_CA, 0.1),
    (CertKind.MISSING_INTERMEDIATE, 0.05),
)
_WORDS = ("shop", "news", "bank", "cloud", "media", "travel", "games", "health", "school", "city")


def provider_mx(b: Builder, key: str, domain: str, *, dane: bool = False, variant: int = 0) -> tuple[Mx, ...]:
    """The MX set of a domain hosted by ``key``; shared hosts are built once per world."""
    prov = _BY_KEY[key]
    status = ZoneStatus.SIGNED if key in _SIGNED_PROVIDERS else ZoneStatus.UNSIGNED
    b.zone(Zone(prov.zone, status))
    if key == "outlook":
        # Per-customer names (<customer>.mail.protection.outlook.com); DANE is opt-in per name.
        name = f"{domain.replace('.', '-')}.mail.protection.{prov.zone}"
        b.host(
            name,
            provider=key,
            tlsa=_EE311 if dane else (),
            dnssec=status,
            banner=f"{name} Outlook-like ESMTP",
            cert_names=_CERT_NAMES[key],
        )
        return (Mx(0, name),)
    if key == "pphosted":
        slot = zlib.crc32(domain.encode()) % _PPHOSTED_POOL
        labels: tuple[tuple[int, str], ...] = ((10, f"mx0a-{slot:08d}"), (10, f"mx0b-{slot:08d}"))
    else:
        patterns = _SHARED_MX[key]
        labels = patterns[variant % len(patterns)]

    def make() -> tuple[Mx, ...]:
        mx = []
        for pref, label in labels:
            name = f"{label}.{prov.zone}"
            cert = CertKind.WRONG_NAME if label == "mxdomain" else CertKind.VALID
            tlsa = _EE311 if key == "cloudflare" else ()
            shared = _CERT_NAMES[key] if cert is CertKind.VALID else ()
            b.host(
                name,
                provider=key,
                cert=cert,
                tlsa=tlsa,
                dnssec=status,
                banner=f"{name} ESMTP ready",
                cert_names=shared,
            )
            mx.append(Mx(pref, name))
        return tuple(mx)

    return b.once(f"provider:{key}:{labels[0][1]}", make)  # type: ignore[return-value]


@dataclass(frozen=True)
class Profile:
    """Prevalence targets; every field can be overridden from TOML."""

    mx: float = STUDY_MX_DOMAINS / 100_000
    dnssec: float = 0.08
    dane: float = 0.009
    mta_sts: float = 0.012
    mta_sts_enforce: float = 0.007
    starttls: float = 0.993
    trusted_cert: float = 0.941
    tlsrpt: float = 0.02
    #: Of domains without MX: NXDOMAIN and null MX shares (the rest are NODATA).
    nxdomain: float = 0.03
    null_mx: float = 0.02
    #: Share of cloudflare customers with a signed zone (and so DANE).
    cloudflare_signed: float = 0.3
    #: Share of outlook customers who opted in to DANE (study: none seen).
    outlook_dane: float = 0.01
    #: Share of MTA-STS domains whose _mta-sts TXT is a CNAME to a policy host.
    sts_cname: float = 0.06
    #: Share of domains that are copies of a scenario (round-robin over the catalogue).
    sprinkle: float = 0.002
    #: Share of domains with MX hosted by the throttling provider (politeness tests; 0: none).
    throttled: float = 0.0
    #: SMTP connections the throttling provider accepts at once before answering 421.
    throttle_limit: float = 4
    #: Domains with MX per provider; the long tail gets the rest of STUDY_MX_DOMAINS.
    providers: dict[str, int] = field(default_factory=lambda: {p.key: p.study_domains for p in PROVIDERS})
    # -- Internet-like conditions (testbed/internet.py, internet.toml), all off by default --
    #: One round trip (+/- jitter) in seconds added to every DNS reply, SMTP and HTTPS flight.
    dns_rtt: float = 0.0
    dns_jitter: float = 0.0
    smtp_rtt: float = 0.0
    smtp_jitter: float = 0.0
    https_rtt: float = 0.0
    https_jitter: float = 0.0
    #: Shares of self-hosted MX hosts: accept and never greet; drop SYNs; tarpit; greylist;
    #: 421 above ``client_limit_n`` per client; many addresses; a silent AAAA (::1).
    silent: float = 0.0
    syn_drop: float = 0.0
    tarpit: float = 0.0
    tarpit_min: float = 10.0
    tarpit_max: float = 60.0
    tarpit_reply_min: float = 1.0
    tarpit_reply_max: float = 5.0
    greylist: float = 0.0
    client_limit: float = 0.0
    client_limit_n: float = 2
    many_addresses: float = 0.0
    many_min: float = 10
    many_max: float = 500
    ipv6_silent: float = 0.0
    #: Shares of MTA-STS policy hosts: silent (TCP up, no TLS); a body over sts_slow_min..max s.
    sts_silent: float = 0.0
    sts_slow_body: float = 0.0
    sts_slow_min: float = 2.0
    sts_slow_max: float = 30.0
    #: The profile's name and where its figures come from (share name -> source).
    name: str = ""
    sources: dict[str, str] = field(default_factory=dict)


def load_profile(path: str | Path) -> Profile:
    """A profile from TOML, or a built-in one by name ("internet"); ``extends = "internet"``
    in a file starts from that profile instead of the study's."""
    data = tomllib.loads(profile_file(path).read_text())
    base = load_profile(data.pop("extends")) if "extends" in data else Profile()
    known = {f.name for f in fields(Profile)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown profile keys: {', '.join(sorted(unknown))}")
    providers = {**base.providers, **data.pop("providers", {})}
    sources = {**base.sources, **data.pop("sources", {})}
    name = str(data.pop("name", base.name))
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"profile {key} must be a number >= 0, got {value!r}")
    rates = {k: float(v) for k, v in data.items()}
    return replace(base, providers=providers, sources=sources, name=name, **rates)


class _Plan:
    """Per-segment probabilities that meet the profile's targets over MX domains."""

    def __init__(self, p: Profile) -> None:
        counts = [p.providers.get(pr.key, 0) for pr in PROVIDERS]
        tail = max(STUDY_MX_DOMAINS - sum(counts), 0)
        total = sum(counts) + tail
        self.keys = [pr.key for pr in PROVIDERS] + [""]
        self.cum = list(accumulate([c / total for c in [*counts, tail]]))
        share = dict(zip(self.keys, (c / total for c in [*counts, tail]), strict=True))
        cf, tail_share = share["cloudflare"], max(share[""], 1e-9)
        self.cf_signed = p.cloudflare_signed
        self.signed = _clamp((p.dnssec - cf * self.cf_signed) / max(1 - cf, 1e-9))
        dane_rest = p.dane - cf * self.cf_signed - share["outlook"] * self.signed * p.outlook_dane
        self.tail_tlsa = _clamp(dane_rest / (tail_share * max(self.signed, 1e-9)))
        self.tail_no_tls = _clamp((1 - p.starttls) / tail_share)
        self.tail_bad_cert = _clamp(
            (p.starttls - p.trusted_cert) / (tail_share * (1 - self.tail_no_tls) or 1e-9)
        )
        self.enforce = _clamp(p.mta_sts_enforce / p.mta_sts) if p.mta_sts else 0.0


def _clamp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def scale_world(n: int, seed: int = 1, profile: Profile | None = None) -> World:
    """``n`` domains named ``<word>-<i>.test``, deterministic for ``seed``."""
    p = profile or Profile()
    plan = _Plan(p)
    rng = random.Random(seed)
    hostile = Hostile(p, seed)
    b = Builder()
    web = [b.host(f"web{i}.webhosting.prov.test", role=HostRole.WEB, smtp=None, cert=None) for i in range(16)]
    b.zone(Zone("webhosting.prov.test"))
    sts_zone = "sts.prov.test"
    b.zone(
        Zone(
            sts_zone, ZoneStatus.UNSIGNED, (Record(f"_mta-sts.{sts_zone}", "TXT", f'"{sts_txt("hosted1")}"'),)
        )
    )
    bodies: dict[tuple[int, str], bytes] = {}
    every = round(1 / p.sprinkle) if p.sprinkle > 0 else 0
    # A world whose ::1 drops SYNs (ipv6_silent) cannot also serve the ipv6-only scenario there.
    sprinkled = [s for s in SCENARIOS if not (p.ipv6_silent > 0 and s.key == "ipv6-only")]
    domains: list[Domain] = []
    for i in range(n):
        if every and i % every == every // 2:
            sc = sprinkled[(i // every) % len(sprinkled)]
            domains.append(replace(sc.build(f"{sc.key}-{i}.{SCENARIO_SUFFIX}", b), scenario=sc.key))
            continue
        name = f"{_WORDS[i % len(_WORDS)]}-{i}.test"
        r = rng.random()
        if r >= p.mx:
            rest = (r - p.mx) / (1 - p.mx) if p.mx < 1 else 0.0
            if rest < p.nxdomain:
                domains.append(Domain(name, exists=False))
            elif rest < p.nxdomain + p.null_mx:
                domains.append(Domain(name, mx=NULL_MX))
            else:
                domains.append(Domain(name, a=(web[i % len(web)].ipv4 or "",)))
            continue
        domains.append(_mx_domain(name, rng, plan, p, b, bodies, sts_zone, hostile))
    hosts, zones = tuple(b.hosts), tuple(b.zones.values())
    return World("scale", tuple(domains), hosts, zones, PROVIDERS, conditions=conditions(p))


def _mx_domain(
    name: str,
    rng: random.Random,
    plan: _Plan,
    p: Profile,
    b: Builder,
    bodies: dict[tuple[int, str], bytes],
    sts_zone: str,
    hostile: Hostile,
) -> Domain:
    if p.throttled > 0 and rng.random() < p.throttled:
        return _throttled_domain(name, b, p)
    key = plan.keys[min(bisect(plan.cum, rng.random()), len(plan.keys) - 1)]
    signed = rng.random() < (plan.cf_signed if key == "cloudflare" else plan.signed)
    status = ZoneStatus.SIGNED if signed else ZoneStatus.UNSIGNED
    if key:
        dane = key == "outlook" and signed and rng.random() < p.outlook_dane
        mx = provider_mx(b, key, name, dane=dane, variant=rng.randrange(3))
    else:
        mx = (Mx(10, f"mx.{name}"),)
        _tail_host(b, mx[0].host, rng, plan, status, hostile)
    kw: dict[str, object] = {}
    if rng.random() < p.mta_sts:
        mode = (
            "enforce"
            if rng.random() < plan.enforce
            else rng.choice(("testing", "testing", "testing", "none"))
        )
        body = bodies.get((id(mx), mode))
        if body is None:
            body = bodies[(id(mx), mode)] = policy_body(mode, tuple(m.host for m in mx))
        b.host(f"mta-sts.{name}", role=HostRole.POLICY, smtp=None, dnssec=status)
        kw["policy"] = hostile.policy_http(MtaStsPolicy(body, mode=mode))
        if rng.random() < p.sts_cname:
            kw["sts_cname"], kw["sts_txt"] = f"_mta-sts.{sts_zone}", (sts_txt("hosted1"),)
        else:
            kw["sts_txt"] = (sts_txt(),)
        if rng.random() < 0.5:
            kw["tlsrpt_txt"] = (tlsrpt_txt(name),)
    elif rng.random() < p.tlsrpt:
        kw["tlsrpt_txt"] = (tlsrpt_txt(name),)
    return Domain(name, dnssec=status, mx=mx, **kw)  # type: ignore[arg-type]


def _throttled_domain(name: str, b: Builder, p: Profile) -> Domain:
    """A customer of the throttling provider: its own MX host in the provider's zone."""
    b.zone(Zone(THROTTLE_ZONE))
    host = f"{name.replace('.', '-')}.mx.{THROTTLE_ZONE}"
    limit = max(int(p.throttle_limit), 1)
    b.host(
        host,
        provider=THROTTLE_PROVIDER,
        connection_limit=limit,
        banner=f"{host} ESMTP busy provider",
        cert_names=_THROTTLE_CERT_NAMES,
    )
    return Domain(name, mx=(Mx(10, host),))


_BAD_CUM = tuple(zip((k for k, _ in _BAD_CERTS), accumulate(w for _, w in _BAD_CERTS), strict=True))


def _tail_host(
    b: Builder, name: str, rng: random.Random, plan: _Plan, status: ZoneStatus, hostile: Hostile
) -> None:
    """A self-hosted MTA: its own address; no STARTTLS or a bad certificate at the derived rates;
    hostile at the profile's Internet-like shares."""
    smtp, cert = SmtpBehaviour.GOOD, CertKind.VALID
    if rng.random() < plan.tail_no_tls:
        smtp = SmtpBehaviour.NO_STARTTLS
    elif rng.random() < plan.tail_bad_cert:
        x = rng.random()
        cert = next((k for k, c in _BAD_CUM if x < c), CertKind.SELF_SIGNED)
    tlsa = _EE311 if status is ZoneStatus.SIGNED and rng.random() < plan.tail_tlsa else ()
    kw: dict[str, object] = {
        "tlsa": tlsa,
        "smtp": smtp,
        "cert": cert,
        "dnssec": status,
        "banner": f"{name} ESMTP",
    }
    hostile.tail_host(b, kw)
    b.host(name, **kw)  # type: ignore[arg-type]

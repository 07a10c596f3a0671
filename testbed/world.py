"""The test world as data: domains, hosts, zones and what each one does.

Theory of operation
-------------------
A ``World`` is a pure description.  Servers (DNS now; SMTP, HTTPS and tier (b)
later) and the ground truth are all *derived* from it, so they cannot disagree.
Every behaviour a later server needs is already named here: a host's SMTP
behaviour, certificate kind and banner; a domain's MTA-STS policy body and
HTTP behaviour; TLSA records as *specifications* (which certificate they bind)
because the certificates are only issued when the world starts.

Zones: every ``Domain`` is the apex of its own zone (its DNSSEC status is
``Domain.dnssec``); hosts below a domain (``mx.<domain>``, ``mta-sts.<domain>``)
live in that zone.  ``World.zones`` lists only the other zones: the private
root, ``test``, ``scenario.test`` and the providers' zones.  Keeping per-domain
zones implicit saves one object per domain at a million domains;
``testbed.zones.iter_zones`` yields them all when a zone file is needed.

Memory: ``Domain`` and ``Host`` are slotted; provider-hosted domains share
one ``mx`` tuple and one policy object per provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "NULL_MX",
    "CertKind",
    "Conditions",
    "Domain",
    "Host",
    "HostAddress",
    "HostRole",
    "Latency",
    "MtaStsPolicy",
    "Mx",
    "PolicyHttp",
    "Provider",
    "Record",
    "ResolverFault",
    "SmtpBehaviour",
    "Tlsa",
    "TlsaBinds",
    "World",
    "Zone",
    "ZoneStatus",
]


class ZoneStatus(StrEnum):
    #: No DNSSEC: a validating resolver answers without AD.
    UNSIGNED = "unsigned"
    #: Signed with a valid DS chain from the private root: AD on answers.
    SIGNED = "signed"
    #: Signed, but the signatures do not validate: SERVFAIL unless CD=1.
    BOGUS = "bogus"


class ResolverFault(StrEnum):
    """What the resolver does for every question about one name and the names below it."""

    #: Never answers (over UDP and TCP).
    TIMEOUT = "timeout"
    #: RCODE 5.
    REFUSED = "refused"
    #: RCODE 2, also with CD=1: broken, not bogus.
    SERVFAIL = "servfail"


class SmtpBehaviour(StrEnum):
    """How the SMTP server on a host's port 25 behaves (served by a later increment)."""

    #: 220 banner, EHLO with STARTTLS, handshake with the host's certificate, EHLO again.
    GOOD = "good"
    #: Nothing listens: the connection is refused (RST).
    REFUSED = "refused"
    #: Accepts TCP, never sends a banner.
    BLACKHOLE = "blackhole"
    #: Greets with "554 no service" (RFC 5321 §3.1).
    BANNER_554 = "banner-554"
    #: Greets with 421 and closes.
    CLOSE_421 = "421-close"
    #: Greets and answers EHLO without STARTTLS.
    NO_STARTTLS = "no-starttls"
    #: Advertises STARTTLS, answers the command with 454.
    STARTTLS_454 = "starttls-454"
    #: Answers STARTTLS with 220, then breaks the TLS handshake.
    HANDSHAKE_FAIL = "handshake-fail"
    #: Like good, but the banner comes late (still within the scanner's timeout).
    SLOW_BANNER = "slow-banner"
    #: Greets promptly, then answers EHLO later than the scanner's read timeout.
    TARPIT = "tarpit"
    # -- Internet-like hosts (testbed/internet.py) --------------------------------------
    #: The TCP handshake never completes: a listener whose accept queue is full and that
    #: never accepts, so the kernel drops the SYNs (a connect times out, it is not refused).
    SYN_DROP = "syn-drop"
    #: Greets after ``Host.greeting_delay`` seconds and answers each command (QUIT aside)
    #: after ``Host.reply_delay`` seconds.
    TARPIT_GREETING = "tarpit-greeting"
    #: Greets the first connection from each client address with 451 and closes (remembered
    #: for the world's life, per server address); later connections as good.
    GREYLIST = "greylist"
    #: As good, but greets with 421 and closes above ``Host.client_limit`` connections at
    #: once from one client address.
    CLIENT_LIMIT = "client-limit-421"


class CertKind(StrEnum):
    """The certificate a TLS server presents; issued by ``testbed/pki.py``."""

    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_NAME = "wrong-name"
    SELF_SIGNED = "self-signed"
    UNTRUSTED_CA = "untrusted-ca"
    MISSING_INTERMEDIATE = "missing-intermediate"


class PolicyHttp(StrEnum):
    """How ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` is served."""

    OK = "ok"
    NOT_FOUND = "404"
    WRONG_CONTENT_TYPE = "wrong-content-type"
    #: 301 to another URL; RFC 8461 §3.3: senders must not follow redirects.
    REDIRECT = "redirect"
    #: TLS with a certificate for another name.
    WRONG_CERT = "wrong-cert"
    #: The policy host has an address but nothing listens on 443.
    NO_SERVER = "no-server"
    #: A body larger than the 64 KiB senders are expected to read.
    OVERSIZED = "oversized"
    #: Accepts TCP and never sends a byte (not even the TLS handshake).
    SILENT = "silent"
    #: 200 text/plain with the headers at once and the body in pieces spread over
    #: ``MtaStsPolicy.body_seconds``.
    SLOW_BODY = "slow-body"


class HostRole(StrEnum):
    MX = "mx"
    #: ``mta-sts.<domain>``: the HTTPS policy host.
    POLICY = "policy"
    #: A plain web address (a domain's own A record): no SMTP, no HTTPS.
    WEB = "web"


class TlsaBinds(StrEnum):
    """What a TLSA record's association data is computed from when the world starts."""

    #: The host's own leaf certificate (DANE-EE / PKIX-EE).
    EE = "ee"
    #: The CA that issued the host's leaf (DANE-TA / PKIX-TA).
    TA = "ta"
    #: The root above that CA, which the host does not send: a DANE-TA record must give it
    #: in full ("2 0 0" / "2 1 0", RFC 7671 §5.2.2) to authenticate the chain.
    ROOT = "root"
    #: A digest of nothing the host presents: never matches.
    MISMATCH = "mismatch"


class Tlsa(NamedTuple):
    """A TLSA record at ``_25._tcp.<host>`` as a specification (RFC 6698 §2.1)."""

    usage: int
    selector: int
    mtype: int
    binds: TlsaBinds


class Mx(NamedTuple):
    preference: int
    #: The exchange, lowercase, no trailing dot; "." for RFC 7505 null MX.
    host: str


#: RFC 7505: a domain that accepts no mail publishes exactly this.
NULL_MX: tuple[Mx, ...] = (Mx(0, "."),)


class HostAddress(NamedTuple):
    """One address of a host and how the SMTP server behind it behaves (None: no SMTP)."""

    address: str
    smtp: SmtpBehaviour | None


class Latency(NamedTuple):
    """One round trip added to every server flight: ``rtt`` +/- uniform ``jitter`` seconds."""

    rtt: float = 0.0
    jitter: float = 0.0

    def __bool__(self) -> bool:
        return self.rtt > 0 or self.jitter > 0


class Record(NamedTuple):
    """An extra resource record in presentation form (owner without trailing dot)."""

    name: str
    rtype: str
    rdata: str


@dataclass(frozen=True, slots=True)
class Host:
    """A machine: one name, its own loopback address, and the services it runs.

    ``ipv4`` is a distinct 127.x.y.z per host (never 127.0.0.0/16, which holds
    the servers' own endpoints); ``ipv6`` is "::1" for at most the IPv6-only
    scenario host.  A host with neither address does not exist in DNS
    (its name is NXDOMAIN), which is how "MX to a name with no address" is built.
    ``extra`` gives a host more addresses, each with its own SMTP behaviour (many
    addresses; in an Internet-like world a SYN-dropping "::1" beside a working IPv4).
    """

    name: str
    ipv4: str | None
    ipv6: str | None = None
    role: HostRole = HostRole.MX
    #: Provider key (see ``Provider.key``) or None for self-hosted machines.
    provider: str | None = None
    #: None: no SMTP service at all (policy and web hosts).
    smtp: SmtpBehaviour | None = SmtpBehaviour.GOOD
    #: None: no TLS service.
    cert: CertKind | None = CertKind.VALID
    banner: str = ""
    tlsa: tuple[Tlsa, ...] = ()
    #: Status of the zone the host's name lives in (kept equal to that zone's status).
    dnssec: ZoneStatus = ZoneStatus.UNSIGNED
    #: Connections the host's *provider* accepts at once (over all its hosts) before it
    #: greets with 421; 0: no limit.  A property of the provider, repeated on each of its hosts.
    connection_limit: int = 0
    #: The names the certificate is issued for when the host presents one it shares with
    #: other hosts (a provider's wildcard or SAN list, RFC 6125 §6.4.3); () means its own
    #: name only.  Hosts with equal (cert, cert_names) present the very same certificate.
    cert_names: tuple[str, ...] = ()
    #: ``TARPIT_GREETING``: seconds before the greeting, and before each reply.
    greeting_delay: float = 0.0
    reply_delay: float = 0.0
    #: ``CLIENT_LIMIT``: connections one client address may hold at once before 421.
    client_limit: int = 0
    #: Further addresses (127.x, or "::1"), each with its own SMTP behaviour; in the A and
    #: AAAA answers they follow ``ipv4`` / ``ipv6``, in this order.
    extra: tuple[HostAddress, ...] = ()

    def smtp_addresses(self) -> tuple[HostAddress, ...]:
        """Every address with its SMTP behaviour, as a sender tries them: IPv4 first, each
        family in answer order (``smtp`` for ``ipv4``/``ipv6``; None when it runs no SMTP)."""
        own = [HostAddress(a, self.smtp) for a in (self.ipv4, self.ipv6) if a]
        both = [*own, *self.extra]
        return (*(a for a in both if ":" not in a.address), *(a for a in both if ":" in a.address))

    def addresses(self) -> tuple[str, ...]:
        """Every address of the name (A then AAAA, each in answer order)."""
        if not self.extra:
            return tuple(a for a in (self.ipv4, self.ipv6) if a)
        return tuple(a.address for a in self.smtp_addresses())


@dataclass(frozen=True, slots=True)
class MtaStsPolicy:
    """An MTA-STS policy as served, with what a correct evaluation concludes.

    The expectation is written by the author of the scenario (ground truth by
    definition), not computed by parsing the body.
    """

    body: bytes
    http: PolicyHttp = PolicyHttp.OK
    #: The policy mode a correct fetcher reports, None when no policy is obtained.
    mode: str | None = "enforce"
    #: Whether a correct fetcher ends with a usable policy.
    valid: bool = True
    #: Why not (short kebab-case words), empty when valid.
    reasons: tuple[str, ...] = ()
    #: Whether the policy's mx patterns cover every MX host of the domain.
    mx_covered: bool = True
    #: ``SLOW_BODY``: seconds from the headers to the body's last byte.  Whether a fetch then
    #: gets the policy depends on its deadline (``testbed/scanpolicy.py``): the truth decides,
    #: so ``mode``/``valid``/``reasons`` describe the policy as fetched in time.
    body_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Domain:
    """A mail domain: its zone status, MX and the policy records around it."""

    name: str
    #: The scenario key this domain shows ("" for plain scale-world domains).
    scenario: str = ""
    #: False: the name does not exist (NXDOMAIN for every type).
    exists: bool = True
    dnssec: ZoneStatus = ZoneStatus.UNSIGNED
    #: The resolver's misbehaviour for questions about this name and the names below it.
    fault: ResolverFault | None = None
    #: The apex is an alias (CNAME) to this name, which the world defines.
    cname: str | None = None
    #: MX records; None: no MX RRset (NODATA); NULL_MX for RFC 7505.
    mx: tuple[Mx, ...] | None = None
    #: Addresses of the domain name itself (A / AAAA; for the implicit MX).
    a: tuple[str, ...] = ()
    #: TXT records at ``_mta-sts.<name>`` (at the CNAME target when sts_cname is set).
    sts_txt: tuple[str, ...] = ()
    #: ``_mta-sts.<name>`` is a CNAME to this name (delegated policy hosting).
    sts_cname: str | None = None
    policy: MtaStsPolicy | None = None
    #: TXT records at ``_smtp._tls.<name>`` (RFC 8460).
    tlsrpt_txt: tuple[str, ...] = ()
    #: Extra records in this domain's zone (e.g. a CNAME target's data).
    extra: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone that is not a domain's own: the root, TLDs, providers' zones."""

    apex: str
    status: ZoneStatus = ZoneStatus.UNSIGNED
    records: tuple[Record, ...] = ()

    @property
    def signed(self) -> bool:
        return self.status is not ZoneStatus.UNSIGNED

    @property
    def bogus(self) -> bool:
        return self.status is ZoneStatus.BOGUS


@dataclass(frozen=True, slots=True)
class Provider:
    """A mail provider standing in for one of the study's top-10."""

    key: str
    #: The real provider this one imitates (e.g. "google.com").
    stands_for: str
    #: The provider's zone (e.g. "google.prov.test").
    zone: str
    #: The study's "Inbound DANE support" column: "no", "optional", "yes".
    dane: str
    #: The study's domain count for this provider (out of 65,244 with MX).
    study_domains: int


NO_LATENCY = Latency()


@dataclass(frozen=True, slots=True)
class Conditions:
    """The Internet-like conditions a world is served under (``testbed/internet.py``).

    Fields:
      dns, smtp, https: the round trip added to every reply (DNS) or server flight.
      shares: the profile's shares of hostile hosts, name -> share, as the world was built.
      sources: share name -> where the figure comes from (a publication, or "assumption").
      profile: the profile's name ("" for the study's plain world).
    """

    dns: Latency = NO_LATENCY
    smtp: Latency = NO_LATENCY
    https: Latency = NO_LATENCY
    shares: tuple[tuple[str, float], ...] = ()
    sources: tuple[tuple[str, str], ...] = ()
    profile: str = ""

    def active(self) -> bool:
        """Whether the servers do anything an undisturbed world does not."""
        return bool(self.dns or self.smtp or self.https or any(share for _, share in self.shares))

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "latency": {
                "dns": self.dns._asdict(),
                "smtp": self.smtp._asdict(),
                "https": self.https._asdict(),
            },
            "shares": dict(self.shares),
            "sources": dict(self.sources),
        }


@dataclass(frozen=True)
class World:
    """Everything the servers and the truth need.

    Fields:
      kind: "scenarios" or "scale".
      domains: the domains to scan, in list order.
      hosts: every host (MX, policy, web) of the world.
      zones: the zones that are not a domain's own (see the module docstring).
      providers: the ten providers.
      ca_names: the CAs ``testbed/pki.py`` issues from ("public" root, intermediate, untrusted).
      conditions: latency and hostile shares the servers apply (none by default).
    """

    kind: str
    domains: tuple[Domain, ...]
    hosts: tuple[Host, ...]
    zones: tuple[Zone, ...]
    providers: tuple[Provider, ...] = ()
    ca_names: tuple[str, ...] = ("mxscan-test-root", "mxscan-test-intermediate", "mxscan-untrusted-root")
    conditions: Conditions = field(default_factory=Conditions)
    _addresses: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def addresses(self, name: str) -> tuple[str, ...]:
        """The A and AAAA addresses of a host name (empty when it has none)."""
        if not self._addresses:
            for host in self.hosts:
                self._addresses[host.name] = host.addresses()
        return self._addresses.get(name, ())

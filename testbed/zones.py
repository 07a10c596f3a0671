"""World -> DNS data, and the answers a validating recursive resolver gives.

Theory of operation
-------------------
``WorldIndex`` turns a ``World`` into name lookups without materialising every
record: the records at a name are derived on demand from the domain or host
that owns it (``records_at``).  ``resolve`` then plays a *validating recursive
resolver* for that data, the way unbound would in front of the world's zones:
CNAMEs are chased (chain in the answer section), negative answers carry the
zone's SOA, and DNSSEC is *simulated from the world definition*: an answer is
"secure" when every zone it came from is signed; a bogus zone gives SERVFAIL
with EDE 6 unless CD=1.  No signatures are made here (tier (b) signs for real).

Pure: no sockets, no asyncio.  ``dnsserver.py`` turns ``Resolution`` into wire.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

from testbed.scenarios import reverse_name
from testbed.world import Domain, Host, HostRole, ResolverFault, Tlsa, World, Zone, ZoneStatus

__all__ = [
    "EDE_DNSSEC_BOGUS",
    "MAX_CNAME_CHAIN",
    "TTL",
    "Resolution",
    "Rr",
    "TlsaData",
    "WorldIndex",
    "iter_zones",
    "placeholder_tlsa_data",
    "soa_rdata",
]

#: TTL of every record and of negative answers (SOA minimum); the world is static.
TTL = 300
#: RFC 8914 §4.7.
EDE_DNSSEC_BOGUS = 6
#: Like unbound's limit on followed CNAMEs (it stops well before a loop hurts).
MAX_CNAME_CHAIN = 8

NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5

#: (host, tlsa spec) -> association data in hex; testbed/pki.py provides the real one.
TlsaData = Callable[[Host, Tlsa], str]


class Rr(NamedTuple):
    """One record in presentation form; owner lowercase without trailing dot ("" = root)."""

    name: str
    rtype: str
    rdata: str


class Resolution(NamedTuple):
    """What the resolver answers.  ``drop``: it does not answer at all."""

    rcode: int
    answer: tuple[Rr, ...] = ()
    authority: tuple[Rr, ...] = ()
    secure: bool = False
    ede: int | None = None
    drop: bool = False


def placeholder_tlsa_data(host: Host, tlsa: Tlsa) -> str:
    """Deterministic digest standing in until certificates exist (pki binds the real one)."""
    size = 64 if tlsa.mtype == 2 else 32
    digest = hashlib.sha512(f"{host.name}|{tlsa.binds}|{tlsa.selector}".encode()).hexdigest()
    return digest[: size * 2]


def soa_rdata(apex: str) -> str:
    """The same SOA for every zone: only its presence and minimum TTL matter to a scanner."""
    return f"ns1.testbed.test. hostmaster.testbed.test. 1 3600 600 86400 {TTL}"


class WorldIndex:
    """Name -> owner maps over a world; build once per server (linear in the world)."""

    def __init__(self, world: World, tlsa_data: TlsaData = placeholder_tlsa_data) -> None:
        self.world = world
        self.tlsa_data = tlsa_data
        self.domains: dict[str, Domain] = {d.name: d for d in world.domains}
        self.faults: dict[str, ResolverFault] = {d.name: d.fault for d in world.domains if d.fault}
        self.zones: dict[str, ZoneStatus] = {z.apex: z.status for z in world.zones}
        self.hosts: dict[str, Host] = {}
        self.extra: dict[str, list[Rr]] = {}
        self.ents: set[str] = set()
        for d in world.domains:
            if d.exists and d.cname is None:
                self.zones[d.name] = d.dnssec
            for rec in d.extra:
                self._add_extra(Rr(*rec))
        for z in world.zones:
            for rec in z.records:
                self._add_extra(Rr(*rec))
        for h in world.hosts:
            if h.ipv4 is None and h.ipv6 is None:
                continue  # no address: the name does not exist ("MX to a name with no address")
            if h.role is HostRole.WEB and h.name in self.domains:
                continue  # the domain's own A record, served from Domain.a
            self.hosts[h.name] = h
            self._add_ents(h.name)
            if h.tlsa:
                self._add_ents(f"_25._tcp.{h.name}")
        for d in world.domains:
            if d.tlsrpt_txt:
                self.ents.add(f"_smtp.{d.name}")

    def mail_questions(self) -> Iterator[tuple[str, str]]:
        """The (name, type) questions a measurement of mail transport security asks about this
        world: each domain's MX, ``_mta-sts`` (RFC 8461) and ``_smtp._tls`` (RFC 8460) TXT, its
        own A/AAAA when it has no MX (RFC 5321 §5.1 implicit MX), its policy host's addresses;
        each host's A/AAAA and TLSA (RFC 7672), each address's PTR; and every record the zones
        hold.  Negative answers included: most of these names do not exist."""
        for d in self.world.domains:
            yield d.name, "MX"
            yield f"_mta-sts.{d.name}", "TXT"
            yield f"_smtp._tls.{d.name}", "TXT"
            if d.mx is None:
                yield d.name, "A"
                yield d.name, "AAAA"
            if d.sts_txt:
                yield f"mta-sts.{d.name}", "A"
                yield f"mta-sts.{d.name}", "AAAA"
        for name, host in self.hosts.items():
            yield name, "A"
            yield name, "AAAA"
            yield f"_25._tcp.{name}", "TLSA"
            for address in host.addresses():
                yield reverse_name(address), "PTR"
        for name, records in self.extra.items():
            for rtype in dict.fromkeys(rr.rtype for rr in records):
                yield name, rtype

    def _add_extra(self, rr: Rr) -> None:
        self.extra.setdefault(rr.name, []).append(rr)
        self._add_ents(rr.name)

    def _add_ents(self, name: str) -> None:
        # Empty non-terminals between a name and its zone apex exist (RFC 8020): NODATA, not NXDOMAIN.
        labels = name.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            if parent in self.zones or parent in self.domains:
                break
            self.ents.add(parent)

    def zone_of(self, name: str) -> tuple[str, ZoneStatus]:
        """The closest enclosing zone (apex, status); the root when nothing else."""
        while name:
            status = self.zones.get(name)
            if status is not None:
                return name, status
            _, _, name = name.partition(".")
        return "", self.zones.get("", ZoneStatus.SIGNED)

    def records_at(self, name: str) -> dict[str, list[Rr]] | None:
        """The RRsets at ``name`` by type; {} for an empty non-terminal; None if it does not exist."""
        recs: dict[str, list[Rr]] = {}
        d = self.domains.get(name)
        if d is not None and d.exists:
            if d.cname is not None:
                return {"CNAME": [Rr(name, "CNAME", f"{d.cname}.")]}
            if d.mx is not None:
                recs["MX"] = [Rr(name, "MX", f"{m.preference} {m.host.rstrip('.')}.") for m in d.mx]
            _addresses(recs, name, d.a)
        if name in self.zones and (d is None or d.exists):
            recs["SOA"] = [Rr(name, "SOA", soa_rdata(name))]
            recs["NS"] = [Rr(name, "NS", "ns1.testbed.test.")]
        h = self.hosts.get(name)
        if h is not None:
            _addresses(recs, name, h.addresses())
        head, _, rest = name.partition(".")
        if head == "_mta-sts" and (owner := self.domains.get(rest)) is not None and owner.exists:
            if owner.sts_cname is not None:
                return {"CNAME": [Rr(name, "CNAME", f"{owner.sts_cname}.")]}
            if owner.sts_txt:
                recs["TXT"] = [Rr(name, "TXT", _txt(t)) for t in owner.sts_txt]
        elif name.startswith("_smtp._tls.") and (owner := self.domains.get(name[11:])) is not None:
            if owner.exists and owner.tlsrpt_txt:
                recs["TXT"] = [Rr(name, "TXT", _txt(t)) for t in owner.tlsrpt_txt]
        elif name.startswith("_25._tcp.") and (host := self.hosts.get(name[9:])) is not None and host.tlsa:
            recs["TLSA"] = [
                Rr(name, "TLSA", f"{t.usage} {t.selector} {t.mtype} {self.tlsa_data(host, t)}")
                for t in host.tlsa
            ]
        for rr in self.extra.get(name, ()):
            recs.setdefault(rr.rtype, []).append(rr)
        if recs or name in self.ents:
            return recs
        return None

    def fault_of(self, name: str) -> ResolverFault | None:
        """The resolver fault of ``name`` or of the nearest domain above it: a resolver that
        cannot resolve a domain cannot resolve the names below it either (its _mta-sts and
        _smtp._tls TXT records, its policy host), as tier (b)'s unbound does."""
        while True:
            fault = self.faults.get(name)
            if fault is not None or "." not in name:
                return fault
            name = name.partition(".")[2]

    def resolve(self, name: str, rtype: str, cd: bool = False) -> Resolution:
        """The validating resolver's answer to ``name``/``rtype`` (CD as asked)."""
        name = name.lower().rstrip(".")
        fault = self.fault_of(name) if self.faults else None
        if fault is not None:
            if fault is ResolverFault.TIMEOUT:
                return Resolution(SERVFAIL, drop=True)
            return Resolution(REFUSED if fault is ResolverFault.REFUSED else SERVFAIL)
        answer: list[Rr] = []
        secure = True
        for _ in range(MAX_CNAME_CHAIN + 1):
            apex, status = self.zone_of(name)
            if status is ZoneStatus.BOGUS and not cd:
                return Resolution(SERVFAIL, ede=EDE_DNSSEC_BOGUS)
            secure = secure and status is ZoneStatus.SIGNED
            recs = self.records_at(name)
            if recs is None:
                return Resolution(NXDOMAIN, tuple(answer), _soa(apex), secure)
            if "CNAME" in recs and rtype != "CNAME":
                answer.extend(recs["CNAME"])
                name = recs["CNAME"][0].rdata.rstrip(".")
                continue
            if rtype in recs:
                return Resolution(NOERROR, (*answer, *recs[rtype]), (), secure)
            return Resolution(NOERROR, tuple(answer), _soa(apex), secure)
        return Resolution(SERVFAIL)  # CNAME chain too long


def _soa(apex: str) -> tuple[Rr, ...]:
    return (Rr(apex, "SOA", soa_rdata(apex)),)


def _addresses(recs: dict[str, list[Rr]], name: str, addresses: tuple[str, ...]) -> None:
    for address in addresses:
        recs.setdefault("AAAA" if ":" in address else "A", []).append(
            Rr(name, "AAAA" if ":" in address else "A", address)
        )


def _txt(text: str) -> str:
    """A TXT rdata in presentation form: 255-byte character-strings (RFC 1035 §3.3.14)."""
    raw = text.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def iter_zones(world: World) -> Iterator[Zone]:
    """Every zone of the world, the per-domain ones included (for tier (b) zone files)."""
    yield from world.zones
    for d in world.domains:
        if d.exists and d.cname is None:
            yield Zone(d.name, d.dnssec, d.extra)

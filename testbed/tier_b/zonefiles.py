"""World -> master zone files with real delegations, for NSD.

Theory of operation
-------------------
Tier (a) answers from ``zones.WorldIndex``; tier (b) serves the *same*
records: every name the index knows is asked ``records_at`` and its RRsets
go into the zone ``zone_of`` says it belongs to.  So the data of both tiers
come from one function and cannot drift apart.

What tier (b) adds is the delegation structure a real resolver walks:

- every zone apex other than the root gets ``NS ns1.testbed.test.`` in its
  parent zone (the closest enclosing zone), plus a DS when the child is
  signed or bogus;
- ``ns1.testbed.test`` (the one NSD address serving every zone) is an A
  record in ``test`` and glue in the root zone, which also names it as the
  root's NS (the same NS name tier (a) puts at every apex);
- a domain whose tier (a) fault is ``servfail`` is delegated to
  ``ns-lame.testbed.test``, whose address no server listens on and which
  unbound is told never to query (``do-not-query-address``): a delegation
  with no usable authority, so the resolver says SERVFAIL at once, also with
  CD=1 (an unreachable server alone would make unbound retry for ~15 s
  first).  Its own zone is not served.
  (``timeout`` and ``refused`` faults are resolver behaviour: see unbound.py.)

Pure: builds ``ZoneText`` values; ``write_zones`` is the only function that
touches files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from testbed.world import ResolverFault, ZoneStatus
from testbed.zones import TTL, Rr, WorldIndex, iter_zones

__all__ = [
    "DEFAULT_LAYOUT",
    "LAME_NS",
    "NAMESERVER",
    "NsLayout",
    "ZoneData",
    "build_zones",
    "record_lines",
    "write_zone",
    "zone_file_name",
    "zone_names",
]

#: The NS name of every zone (tier (a) uses the same at every apex); lives in the ``test`` zone.
NAMESERVER = "ns1.testbed.test"
#: NS name of lame delegations (the ``servfail`` scenario).
LAME_NS = "ns-lame.testbed.test"


class NsLayout(NamedTuple):
    """Addresses of tier (b)'s authoritative side (port 53: delegations carry no port)."""

    #: Where NSD answers for every zone.
    nsd: str = "127.0.0.60"
    #: Where nothing listens: the lame delegation's target.
    lame: str = "127.0.0.61"


DEFAULT_LAYOUT = NsLayout()


@dataclass
class ZoneData:
    """One zone to serve: apex ("" for the root), DNSSEC status and its records."""

    apex: str
    status: ZoneStatus
    records: list[Rr] = field(default_factory=list)


def zone_names(index: WorldIndex) -> Iterator[str]:
    """Every owner name with data in the world (apexes included), each once."""
    world = index.world
    seen: set[str] = set()
    candidates: list[Iterable[str]] = [
        (z.apex for z in iter_zones(world)),
        index.extra,
        index.hosts,
        (f"_25._tcp.{h.name}" for h in index.hosts.values() if h.tlsa),
    ]
    for d in world.domains:
        if d.exists:
            candidates.append((d.name, f"_mta-sts.{d.name}", f"_smtp._tls.{d.name}"))
    for names in candidates:
        for name in names:
            if name not in seen:
                seen.add(name)
                yield name


def build_zones(
    index: WorldIndex,
    layout: NsLayout = DEFAULT_LAYOUT,
    ds: Callable[[str], str | None] = lambda apex: None,
) -> dict[str, ZoneData]:
    """Every zone tier (b) serves, apex -> ZoneData; ``ds(apex)`` gives a signed child's DS rdata."""
    world = index.world
    lame = {d.name for d in world.domains if d.fault is ResolverFault.SERVFAIL and d.exists}
    zones: dict[str, ZoneData] = {}
    for z in iter_zones(world):
        if z.apex not in lame:
            zones.setdefault(z.apex, ZoneData(z.apex, index.zones.get(z.apex, z.status)))
    for name in zone_names(index):
        apex, _ = index.zone_of(name)
        zone = zones.get(apex)
        recs = index.records_at(name)
        if zone is None or not recs:
            continue  # a lame domain's data, or a name that exists only as an empty non-terminal
        for rrs in recs.values():
            zone.records.extend(rrs)
    for apex in [*zones, *lame]:
        if not apex:
            continue
        parent = zones[index.zone_of(apex.partition(".")[2])[0]]
        ns = LAME_NS if apex in lame else NAMESERVER
        parent.records.append(Rr(apex, "NS", f"{ns}."))
        if apex not in lame and (digest := ds(apex)) is not None:
            parent.records.append(Rr(apex, "DS", digest))
    _add_nameservers(zones, layout)
    return zones


def _add_nameservers(zones: Mapping[str, ZoneData], layout: NsLayout) -> None:
    root, test = zones[""], zones["test"]
    # The root's own NS (ns1.testbed.test.) comes from records_at(""), like every apex's.
    root.records.append(Rr(NAMESERVER, "A", layout.nsd))  # glue below the test. delegation
    test.records.append(Rr(NAMESERVER, "A", layout.nsd))
    test.records.append(Rr(LAME_NS, "A", layout.lame))


def zone_file_name(apex: str) -> str:
    """File name of a zone inside the zones directory ("root.zone" for the root)."""
    return f"{apex}.zone" if apex else "root.zone"


def record_lines(records: Iterable[Rr]) -> Iterator[str]:
    """Master-file lines (RFC 1035 §5.1), absolute owners, one record each."""
    for rr in records:
        owner = f"{rr.name}." if rr.name else "."
        yield f"{owner}\t{TTL}\tIN\t{rr.rtype}\t{rr.rdata}\n"


def write_zone(directory: Path, apex: str, records: Iterable[Rr]) -> Path:
    path = directory / zone_file_name(apex)
    with path.open("w") as out:
        out.writelines(record_lines(records))
    return path

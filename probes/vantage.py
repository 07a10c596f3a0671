"""Where a scan measured from: its egress addresses, their reverse DNS, and its EHLO name.

Receivers reject or tarpit clients without a PTR record or whose EHLO name does not match
(which changes what they answer), so a study must be able to say from where it measured.
The egress addresses are the local side of the pre-flight's connections (``getsockname``:
what the OS picked, before any NAT on the way, which the scanner cannot see).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from probes.dns.probe import Lookup
from probes.dns.records import Answer, Outcome
from probes.dns.reverse import Fcrdns, PtrResult, lookup_ptr
from probes.egress import (
    EGRESS_CHECK_HOSTS,
    EGRESS_TIMEOUT,
    Attempt,
    EgressAttempt,
    EgressCheck,
    EgressDecision,
    decide,
    run_egress_check,
    skipped,
)

__all__ = [
    "EgressPreflight",
    "Vantage",
    "egress_addresses",
    "egress_preflight",
    "ehlo_matches",
    "measure_vantage",
    "vantage_warnings",
]


@dataclass(frozen=True, slots=True)
class Vantage:
    """The scanner as receivers see it (the EHLO name and contact URL are ScanMeta's own fields).

    Fields:
      addresses: this machine's source addresses on the egress pre-flight's connections, one
        per family (IPv4 first); empty when none completed or the check was skipped.
      ptr: the reverse DNS of each address (PTR names, FCrDNS), in the same order.
      ehlo_addresses: the A and AAAA addresses of the EHLO name as the scan's resolver answers.
      ehlo_matches: the EHLO name resolves to one of the addresses; null when that cannot be
        told (no egress address, or a lookup of the EHLO name failed).
    """

    addresses: tuple[str, ...]
    ptr: tuple[PtrResult, ...]
    ehlo_addresses: tuple[str, ...]
    ehlo_matches: bool | None


def egress_addresses(attempts: Sequence[EgressAttempt]) -> tuple[str, ...]:
    """The first local address seen per family, IPv4 first."""
    found: dict[str, str] = {}
    for attempt in attempts:
        if attempt.outcome is Attempt.CONNECTED and attempt.local_address:
            found.setdefault(attempt.family, attempt.local_address)
    return tuple(found[f] for f in ("ipv4", "ipv6") if f in found)


def ehlo_matches(addresses: Sequence[str], a: Answer, aaaa: Answer) -> tuple[tuple[str, ...], bool | None]:
    """(the EHLO name's addresses, whether one of ``addresses`` is among them)."""
    resolved = tuple(x for answer in (a, aaaa) if answer.outcome is Outcome.OK for x in answer.data)
    mine = {ipaddress.ip_address(x) for x in addresses}
    if mine & {ipaddress.ip_address(x) for x in resolved}:
        return resolved, True
    definite = all(answer.outcome in (Outcome.OK, Outcome.NODATA, Outcome.NXDOMAIN) for answer in (a, aaaa))
    return resolved, (False if addresses and definite else None)


async def measure_vantage(attempts: Sequence[EgressAttempt], ehlo_name: str, lookup: Lookup) -> Vantage:
    """The reverse DNS of the egress addresses and the EHLO name's addresses, asked at once."""
    addresses = egress_addresses(attempts)
    ptrs = asyncio.gather(*(lookup_ptr(a, lookup) for a in addresses))
    if ehlo_name:
        a, aaaa = await asyncio.gather(lookup(ehlo_name, "A"), lookup(ehlo_name, "AAAA"))
        resolved, matches = ehlo_matches(addresses, a, aaaa)
    else:
        resolved, matches = (), None
    return Vantage(addresses, tuple(await ptrs), resolved, matches)


def vantage_warnings(vantage: Vantage, ehlo_name: str) -> list[str]:
    """What to say at start: an EHLO name that does not resolve to the egress address, an
    egress address without a forward-confirmed PTR (receivers may reject or tarpit either)."""
    said = []
    if vantage.ehlo_matches is False:
        found = ", ".join(vantage.ehlo_addresses) or "no address"
        said.append(
            f"WARNING: the EHLO name {ehlo_name} resolves to {found}, not to this scanner's egress "
            f"address ({', '.join(vantage.addresses)}): receivers that check it may reject or tarpit the scan"
        )
    for ptr in vantage.ptr:
        if ptr.fcrdns is not Fcrdns.CONFIRMED:
            names = ", ".join(ptr.names) or "none"
            said.append(
                f"WARNING: the egress address {ptr.address} has no forward-confirmed PTR "
                f"(fcrdns {ptr.fcrdns.value}, PTR names: {names}): receivers may reject or tarpit the scan"
            )
    return said


@dataclass(frozen=True, slots=True)
class EgressPreflight:
    """The egress pre-flight before a scan connects anywhere: the check, what the scan does
    (``decision``), where it measures from (None when it must stop) and what to say."""

    check: EgressCheck
    decision: EgressDecision
    vantage: Vantage | None
    messages: tuple[str, ...]


async def egress_preflight(
    targets: Sequence[tuple[str, int]], lookup: Lookup, *, port: int, ipv6: bool, ehlo_name: str, skip: bool
) -> EgressPreflight:
    """Can the scan reach port 25 (``targets``; none given: the largest mailbox providers' MX
    hosts on ``port``), and from where; the vantage is measured only when the scan proceeds."""
    if skip:
        check = skipped()
    else:
        specs = targets or tuple((host, port) for host in EGRESS_CHECK_HOSTS)
        check = await run_egress_check(specs, lookup, EGRESS_TIMEOUT, ipv6_wanted=ipv6)
    decision = decide(check, ipv6_wanted=ipv6)
    said = (decision.message,) if decision.message else ()
    if not decision.proceed:
        return EgressPreflight(check, decision, None, said)
    vantage = await measure_vantage(check.attempts, ehlo_name, lookup)
    return EgressPreflight(check, decision, vantage, (*said, *vantage_warnings(vantage, ehlo_name)))

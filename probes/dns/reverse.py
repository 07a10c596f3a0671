"""Reverse DNS of an address: its PTR names and whether one of them resolves back (FCrDNS).

Many receivers reject or tarpit clients whose address has no PTR record, or whose PTR name
does not resolve back to the address ("forward-confirmed reverse DNS"; big senders' rules
and Internet.nl's checks depend on it), so a study records it for every probed MX address
and for its own vantage address.

Pure core: ``reverse_name`` (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa) and
``assess_ptr`` (the verdict from the answers).  Thin shell: ``lookup_ptr`` asks the PTR
and the forward lookups of the first names through any ``(name, rrtype) -> Answer``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from engine.peertext import bound_text
from probes.dns.probe import Lookup
from probes.dns.records import DEFINITE_OUTCOMES, Answer, Outcome

__all__ = [
    "MAX_FORWARD",
    "PTR_CACHE_ENTRIES",
    "Fcrdns",
    "PtrResult",
    "assess_ptr",
    "forward_type",
    "lookup_ptr",
    "reverse_name",
]

#: Reverse DNS results (PTR, FCrDNS) kept per address.  A result is needed again only when
#: another host line for the same address is written (a second MX name on it, a probe made
#: again): the recently used suffice.  ~0.35 KB each, so ~7 MB; kept for every address
#: probed it was the scan's largest unbounded-looking growth after the SMTP verdicts
#: (~9 MB per 100k domains).  An evicted result is looked up again (one PTR query, the
#: forward ones mostly from the shared cache), counted in --summary-json (caches.ptr.evicted).
PTR_CACHE_ENTRIES = 20_000

#: PTR names whose forward lookups are asked: an address with dozens of PTR records (shared
#: hosting) must not cost dozens of queries; a sender's check looks at the first ones too.
MAX_FORWARD = 4
#: PTR names recorded per address (the rest are counted in ``PtrResult.more``).
MAX_NAMES = 8
_DETAIL_LIMIT = 200


class Fcrdns(StrEnum):
    """What the reverse lookups of one address showed."""

    #: A PTR name's A (IPv4) or AAAA (IPv6) answer contains the address.
    CONFIRMED = "confirmed"
    #: PTR names exist; every forward lookup asked was definite and none contains the address.
    MISMATCH = "mismatch"
    #: The PTR lookup was a definite negative (NXDOMAIN or NODATA): the address has no PTR.
    NO_PTR = "no-ptr"
    #: The PTR lookup failed (timeout, SERVFAIL, ...), or no name was confirmed and a forward
    #: lookup failed: cannot tell (never "no PTR").
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PtrResult:
    """The reverse DNS of one address.

    Fields:
      address: the address (IPv4 dotted quad or IPv6 text as resolved).
      outcome: the PTR lookup's outcome (ok / nxdomain / nodata / servfail / refused / timeout / error).
      names: the PTR names (lowercase, no trailing dot), at most 8, in answer order.
      fcrdns: confirmed / mismatch / no-ptr / unknown (see Fcrdns).
      confirmed_name: the first PTR name whose forward lookup contains the address, else "".
      detail: why the verdict is unknown (the failed lookup), else "".
    """

    address: str
    outcome: Outcome
    names: tuple[str, ...]
    fcrdns: Fcrdns
    confirmed_name: str
    detail: str


def reverse_name(address: str) -> str:
    """The PTR owner name of ``address``, no trailing dot; ValueError for a non-address.

    >>> reverse_name("192.0.2.1")
    '1.2.0.192.in-addr.arpa'
    """
    ip = ipaddress.ip_address(address.strip("[]"))
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + ".in-addr.arpa"
    # RFC 3596 §2.5: every nibble of the 128 bits, least significant first.
    return ".".join(reversed(ip.exploded.replace(":", ""))) + ".ip6.arpa"


def forward_type(address: str) -> str:
    return "AAAA" if ":" in address else "A"


def _same(address: str, other: str) -> bool:
    try:
        return ipaddress.ip_address(address) == ipaddress.ip_address(other)
    except ValueError:
        return False


def _names(ptr: Answer) -> tuple[str, ...]:
    seen: list[str] = []
    for name in ptr.data:
        clean = name.lower().removesuffix(".")
        if clean and clean not in seen:
            seen.append(clean)
    return tuple(seen)


def assess_ptr(address: str, ptr: Answer, forward: Mapping[str, Answer]) -> PtrResult:
    """The verdict for ``address`` from its PTR answer and the forward answers of its first
    ``MAX_FORWARD`` PTR names (``forward``: name -> the A or AAAA answer; a missing name
    counts as a failed lookup)."""
    names = _names(ptr) if ptr.outcome is Outcome.OK else ()
    if ptr.outcome in (Outcome.NXDOMAIN, Outcome.NODATA) or (ptr.outcome is Outcome.OK and not names):
        return PtrResult(address, ptr.outcome, (), Fcrdns.NO_PTR, "", "")
    if ptr.outcome is not Outcome.OK:
        detail = f"PTR lookup {ptr.outcome.value}" + (f": {ptr.detail}" if ptr.detail else "")
        return PtrResult(address, ptr.outcome, (), Fcrdns.UNKNOWN, "", bound_text(detail, _DETAIL_LIMIT))
    failed = ""
    for name in names[:MAX_FORWARD]:
        answer = forward.get(name)
        if answer is not None and answer.outcome is Outcome.OK:
            if any(_same(address, a) for a in answer.data):
                return PtrResult(address, ptr.outcome, names[:MAX_NAMES], Fcrdns.CONFIRMED, name, "")
        elif answer is None or answer.outcome not in DEFINITE_OUTCOMES:
            why = answer.outcome.value if answer is not None else "not asked"
            failed = failed or f"{forward_type(address)} {name}: {why}"
    if failed:
        return PtrResult(
            address, ptr.outcome, names[:MAX_NAMES], Fcrdns.UNKNOWN, "", bound_text(failed, _DETAIL_LIMIT)
        )
    return PtrResult(address, ptr.outcome, names[:MAX_NAMES], Fcrdns.MISMATCH, "", "")


async def lookup_ptr(address: str, lookup: Lookup) -> PtrResult:
    """Ask the PTR of ``address``, then the A/AAAA of its first names at once; never raises
    for DNS-level problems (the lookups classify them)."""
    ptr = await lookup(reverse_name(address), "PTR")
    names = _names(ptr)[:MAX_FORWARD] if ptr.outcome is Outcome.OK else ()
    rrtype = forward_type(address)
    answers = await asyncio.gather(*(lookup(name, rrtype) for name in names))
    return assess_ptr(address, ptr, dict(zip(names, answers, strict=True)))

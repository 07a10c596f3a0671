"""Reverse DNS of the probed MX addresses, and the scan's own vantage.

Many receivers reject or tarpit a client without a PTR record or whose PTR name does not
resolve back (FCrDNS), and big senders' rules ask the same of the servers they deliver to,
so the report counts, per distinct probed MX address (each address once, however many MX
names and domains share it), what its host line's ``ptr`` showed; by provider for the
providers with the most probed addresses.  The vantage (where the scan measured from: its
egress addresses, their PTR and FCrDNS, whether the EHLO name resolves to them, the egress
pre-flight's verdicts) comes from every domain line's ``scan`` section, counted per domain
line so a file merged from runs at several vantages says so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from probes.dns.reverse import Fcrdns

__all__ = [
    "NOT_LOOKED_UP",
    "PTR_LABELS",
    "WITH_PTR",
    "PtrTally",
    "egress_label",
    "ptr_label",
    "vantage_label",
]

#: The host line has no ``ptr`` (not looked up: a file from before it, or a lookup that crashed).
NOT_LOOKED_UP = "not looked up"
#: fcrdns "unknown" split by how far the lookups got: the address has PTR names whose forward
#: lookups failed, or the PTR lookup itself failed (nothing is known of its names).
UNKNOWN_FORWARD = "unknown: forward lookup failed"
UNKNOWN_PTR = "unknown: PTR lookup failed"
#: Every label, in the order the report lists them.
PTR_LABELS = (
    Fcrdns.CONFIRMED.value,
    Fcrdns.MISMATCH.value,
    Fcrdns.NO_PTR.value,
    UNKNOWN_FORWARD,
    UNKNOWN_PTR,
    NOT_LOOKED_UP,
)
#: The labels of an address that has a PTR record.
WITH_PTR = frozenset({Fcrdns.CONFIRMED.value, Fcrdns.MISMATCH.value, UNKNOWN_FORWARD})
_INTERNED = {label: label for label in PTR_LABELS}

NOTE = (
    "Each distinct probed MX address counts once (its host line's ptr). confirmed: a PTR name "
    "resolves back to the address (FCrDNS); mismatch: PTR names exist, none resolves back; no-ptr: "
    "the PTR lookup was a definite negative (NXDOMAIN/NODATA); unknown: a lookup failed (cannot tell, "
    "never counted as no-ptr). Share: of the probed addresses."
)


def ptr_label(ptr: dict[str, Any] | str | None) -> str:
    """One address's label from its host line's ``ptr`` (or a label kept by a projection)."""
    if ptr is None:
        return NOT_LOOKED_UP
    if isinstance(ptr, str):
        return _INTERNED.get(ptr, ptr)
    fcrdns = str(ptr.get("fcrdns", Fcrdns.UNKNOWN))
    if fcrdns == Fcrdns.UNKNOWN:
        return UNKNOWN_FORWARD if ptr.get("names") else UNKNOWN_PTR
    return _INTERNED.get(fcrdns, fcrdns)


def egress_label(egress: dict[str, Any] | None) -> str:
    if egress is None:
        return "not checked (DNS-only scan or a file from before the pre-flight)"
    if egress.get("skipped"):
        return "skipped (--skip-egress-check)"
    label = f"IPv4 {egress.get('ipv4', '?')}, IPv6 {egress.get('ipv6', '?')}"
    return label + (" (scanned IPv4 only)" if egress.get("ipv4_only") else "")


def vantage_label(vantage: dict[str, Any] | None, ehlo_name: str) -> str:
    if vantage is None:
        return "not recorded (DNS-only scan or a file from before it)"
    ptrs = {str(p.get("address", "")): p for p in vantage.get("ptr") or ()}
    parts = []
    for address in vantage.get("addresses") or ():
        ptr = ptrs.get(address) or {}
        names = ", ".join(ptr.get("names") or ()) or "none"
        parts.append(f"{address} (PTR {names}; FCrDNS {ptr.get('fcrdns', '?')})")
    where = "; ".join(parts) or "no egress address (no pre-flight connection completed)"
    matches = {True: "yes", False: "no", None: "cannot tell"}[vantage.get("ehlo_matches")]
    return f"{where}; EHLO name {ehlo_name or '(none)'} resolves to it: {matches}"


class PtrTally:
    """PTR/FCrDNS per distinct probed address, overall and per provider; vantages and
    egress verdicts per domain line.  Memory: one entry per distinct address."""

    def __init__(self) -> None:
        self.labels: Counter[str] = Counter()
        self.by_provider: dict[str, Counter[str]] = {}
        self.vantages: Counter[str] = Counter()
        self.egress: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._seen_provider: set[tuple[str, str]] = set()

    def add(self, record: dict[str, Any]) -> None:
        scan = record.get("scan") or {}
        if scan.get("ehlo_name") or scan.get("vantage") is not None:  # an SMTP scan
            self.vantages[vantage_label(scan.get("vantage"), str(scan.get("ehlo_name", "")))] += 1
            self.egress[egress_label(scan.get("egress"))] += 1
        for transport in record.get("mx_transport") or ():
            provider = str(transport.get("provider") or "(provider unknown)")
            for probe in transport.get("addresses") or ():
                address = str(probe.get("address", ""))
                label = ptr_label(probe.get("ptr"))
                if address not in self._seen:
                    self._seen.add(address)
                    self.labels[label] += 1
                if (provider, address) not in self._seen_provider:
                    self._seen_provider.add((provider, address))
                    self.by_provider.setdefault(provider, Counter())[label] += 1

    def result(self, top: int) -> dict[str, Any]:
        total = sum(self.labels.values())
        ranked = sorted(self.by_provider.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
        return {
            "addresses": total,
            "with_ptr": sum(n for label, n in self.labels.items() if label in WITH_PTR),
            "labels": {label: self.labels[label] for label in PTR_LABELS if self.labels[label]},
            "providers": [
                {
                    "provider": provider,
                    "addresses": sum(counts.values()),
                    "with_ptr": sum(n for label, n in counts.items() if label in WITH_PTR),
                    **{label: counts[label] for label in PTR_LABELS},
                }
                for provider, counts in ranked
            ],
            "vantages": dict(self.vantages.most_common()),
            "egress": dict(self.egress.most_common()),
            "note": NOTE,
        }

"""The study's provider tables, and per-provider adoption beyond them.

A domain counts for the provider of its most preferred MX host (lowest
preference, then host name): ``MxTransport.provider`` of that host.  DANE is a
domain property (a customer opts in, as with outlook.com), so the DANE column
is decided over the provider's domains; certificates belong to hosts, so that
column is decided over every distinct MX host the provider operates (any MX
host of any domain, not only the preferred one), each host once.

Labels, as the study's tables use them:

* Inbound DANE: ``yes`` every measured domain of the provider has DANE published,
  ``optional`` some do, ``no`` none do; ``unknown`` when none could be measured.
* Public CA certificate: ``yes`` every probed MX host presented a PKIX-valid
  chain, ``partial`` some did, ``no`` none did; ``unknown`` when no host settled it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from report.figures import DomainFacts

__all__ = ["FOOTNOTES", "ProviderTally", "all_some_none"]

UNKNOWN_PROVIDER = "(provider unknown)"

FOOTNOTES = {
    "provider": "Provider: a domain counts for the provider of its most preferred MX host (lowest "
    "preference, then name); the provider is the MX host's registrable domain or a known override "
    "(MxTransport.provider). Only domains with MX whose SMTP transport was measured are counted.",
    "dane": 'Inbound DANE: "yes" when every measured domain of the provider has DANE published, '
    '"optional" when some do, "no" when none do. Domains with unknown DANE are left out of the label '
    "and counted in the Unknown column.",
    "pkix": 'Public CA certificate: "yes" when every probed MX host of the provider (each distinct host '
    'once, over all MX records that point to it) presented a PKIX-valid chain, "partial" when some did, '
    '"no" when none did. A host is valid when any of its addresses presented a valid chain.',
    "policy_host": "Policy hosting: who serves https://mta-sts.<domain>/ for domains with a valid STSv1 "
    "record: the registrable domain of the last CNAME target of the policy host, or of the policy host "
    'itself ("self-hosted" when that is the domain or a parent of it).',
}


def all_some_none(yes: int, measured: int, *, some: str) -> str:
    """yes / <some> / no over the measured members; unknown when none was measured."""
    if measured == 0:
        return "unknown"
    if yes == measured:
        return "yes"
    return some if yes else "no"


class _Provider:
    __slots__ = ("dane_unknown", "dane_yes", "domains", "enforce", "pkix_yes", "sts", "tlsrpt", "unknown")

    def __init__(self) -> None:
        self.domains = 0
        self.dane_yes = 0
        self.dane_unknown = 0
        self.sts = 0
        self.enforce = 0
        self.tlsrpt = 0
        self.pkix_yes = 0
        self.unknown = 0


def _host_pkix(addresses: Any) -> str:
    """valid / invalid / unknown for one host, as posture rolls it up (any address valid)."""
    results = list(addresses or ())
    if any((r.get("pkix") or {}).get("valid") for r in results):
        return "valid"
    settled = [r for r in results if r.get("pkix") is not None or r.get("starttls") == "no"]
    return "invalid" if results and len(settled) == len(results) else "unknown"


class ProviderTally:
    """Per-provider counters; ``add`` each record with its facts, ``result`` at the end."""

    def __init__(self) -> None:
        self._providers: dict[str, _Provider] = {}
        #: host -> (provider, pkix state, dane status); the first sighting of a host counts.
        self._hosts: dict[str, tuple[str, str, str]] = {}
        self._policy_hosts: Counter[str] = Counter()
        self.measured = 0

    def add(self, record: dict[str, Any], facts: DomainFacts) -> None:
        if facts.mx != "mx":
            return
        transports = record.get("mx_transport") or ()
        for transport in transports:
            host = str(transport.get("host", ""))
            if host not in self._hosts:
                dane = (transport.get("dane") or {}).get("status") or "not-assessed"
                provider = transport.get("provider") or UNKNOWN_PROVIDER
                self._hosts[host] = (provider, _host_pkix(transport.get("addresses")), dane)
        if facts.sts_record == "yes":
            self._policy_hosts[_policy_host(record, facts.domain)] += 1
        if not transports:
            return
        self.measured += 1
        name = facts.provider or UNKNOWN_PROVIDER
        p = self._providers.get(name)
        if p is None:
            self._providers[name] = p = _Provider()
        p.domains += 1
        p.dane_yes += facts.dane == "yes"
        p.dane_unknown += facts.dane in ("unknown", "not-measured")
        p.sts += facts.sts_record == "yes"
        p.enforce += facts.sts_mode == "enforce"
        p.tlsrpt += facts.tlsrpt == "yes"
        p.pkix_yes += facts.pkix in ("all", "some")

    def result(self, top: int = 10) -> dict[str, Any]:
        hosts: dict[str, Counter[str]] = {}
        for provider, pkix, dane in self._hosts.values():
            c = hosts.setdefault(provider, Counter())
            c["hosts"] += 1
            c[f"pkix {pkix}"] += 1
            c[f"dane {dane}"] += 1
        ranked = sorted(self._providers.items(), key=lambda kv: (-kv[1].domains, kv[0]))[:top]
        rows = []
        for name, p in ranked:
            h = hosts.get(name, Counter())
            settled = h["pkix valid"] + h["pkix invalid"]
            rows.append(
                {
                    "provider": name,
                    "domains": p.domains,
                    "dane": all_some_none(p.dane_yes, p.domains - p.dane_unknown, some="optional"),
                    "dane_domains": p.dane_yes,
                    "dane_unknown": p.dane_unknown,
                    "pkix": all_some_none(h["pkix valid"], settled, some="partial"),
                    "hosts": h["hosts"],
                    "hosts_pkix_valid": h["pkix valid"],
                    "hosts_pkix_invalid": h["pkix invalid"],
                    "hosts_pkix_unknown": h["pkix unknown"],
                    "hosts_dane_valid": h["dane valid"],
                    "domains_pkix_valid": p.pkix_yes,
                    "mta_sts": p.sts,
                    "mta_sts_enforce": p.enforce,
                    "tlsrpt": p.tlsrpt,
                }
            )
        return {
            "measured_domains": self.measured,
            "providers_seen": len(self._providers),
            "rows": rows,
            "policy_hosts": dict(
                sorted(self._policy_hosts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(top, 10)]
            ),
            "policy_hosts_total": sum(self._policy_hosts.values()),
        }


def _policy_host(record: dict[str, Any], domain: str) -> str:
    mta_sts = record.get("mta_sts")
    if mta_sts is None:
        return "(not measured)"
    provider = mta_sts.get("policy_host_provider")
    if not provider:
        return "(unknown)"
    if provider == domain or domain.endswith("." + provider):
        return "self-hosted"
    return str(provider)

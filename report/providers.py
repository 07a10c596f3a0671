"""The study's provider tables, and per-provider adoption beyond them.

A domain counts for the provider of its most preferred MX host (lowest
preference, then host name): ``MxTransport.provider`` of that host.  Inbound
DANE support and certificates are properties of the provider's MX hosts, so
those columns are decided over every distinct MX host the provider operates
(any MX host of any domain, not only the preferred one), each host once.
Whether a *domain* counts as DANE also needs its own MX answer signed
(RFC 7672 §2.2.1): a provider can support DANE while few of its customer
domains count ("DANE domains", the headline figure's definition).

Labels, as the study's tables use them:

* Inbound DANE: ``yes`` every MX host of the provider publishes TLSA in a
  DNSSEC-secure answer, ``optional`` some do (customers opt in, as with
  outlook.com's per-customer hosts), ``no`` none do; hosts whose TLSA lookup
  could not be settled are left out; ``unknown`` when no host settled it.
* Public CA certificate: ``yes`` every probed MX host presented a PKIX-valid
  chain, ``partial`` some did, ``no`` none did; ``unknown`` when no host settled it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from probes.mtasts.policy import Mode
from probes.posture import Answer, MxKind, host_pkix_of, host_tlsa

if TYPE_CHECKING:
    from probes.posture import DomainAnswers

__all__ = ["FOOTNOTES", "ProviderTally", "all_some_none"]

UNKNOWN_PROVIDER = "(provider unknown)"

FOOTNOTES = {
    "provider": "Provider: a domain counts for the provider of its most preferred MX host (lowest "
    "preference, then name); the provider is the MX host's registrable domain or a known override "
    "(MxTransport.provider). Only domains with MX whose SMTP transport was measured are counted.",
    "dane": 'Inbound DANE: a property of the provider\'s MX hosts: "yes" when every MX host of the provider '
    '(each distinct host once) has TLSA records in a DNSSEC-secure answer, "optional" when some do, '
    '"no" when none do; hosts whose TLSA lookup could not be settled are left out of the label. '
    '"DANE domains" counts the provider\'s domains that count as DANE in the headline figure (their own '
    'MX answer DNSSEC-secure too, RFC 7672 §2.2.1), so a provider can be "yes" while few of its '
    "customer domains count; domains with unknown DANE are shown in brackets.",
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
        return Answer.UNKNOWN.value
    if yes == measured:
        return Answer.YES.value
    return some if yes else Answer.NO.value


class _Provider:
    __slots__ = (
        "dane_unknown",
        "dane_yes",
        "domains",
        "enforce",
        "pkix_yes",
        "starttls_yes",
        "sts",
        "tlsrpt",
        "unknown",
    )

    def __init__(self) -> None:
        self.domains = 0
        self.starttls_yes = 0
        self.dane_yes = 0
        self.dane_unknown = 0
        self.sts = 0
        self.enforce = 0
        self.tlsrpt = 0
        self.pkix_yes = 0
        self.unknown = 0


#: One host's PKIX roll-up (``host_pkix_of``) as the host counters name it.
_PKIX_LABEL = {True: "valid", False: "invalid", None: "unknown"}


def _host_pkix(addresses: Any) -> str:
    """valid / invalid / unknown for one host, as posture rolls it up (any address valid)."""
    return _PKIX_LABEL[host_pkix_of(list(addresses or ()))]


class ProviderTally:
    """Per-provider counters; ``add`` each record with its facts, ``result`` at the end."""

    def __init__(self) -> None:
        self._providers: dict[str, _Provider] = {}
        #: host -> (provider, pkix state, dane status, TLSA published); the first sighting counts.
        self._hosts: dict[str, tuple[str, str, str, str]] = {}
        self._policy_hosts: Counter[str] = Counter()
        self.measured = 0

    def add(self, record: dict[str, Any], facts: DomainAnswers) -> None:
        if facts.mx.kind is not MxKind.MX:
            return
        transports = record.get("mx_transport") or ()
        dns_hosts = {h.get("host"): h for h in (record.get("dns") or {}).get("mx_hosts") or ()}
        for transport in transports:
            host = str(transport.get("host", ""))
            if host not in self._hosts:
                dane = (transport.get("dane") or {}).get("status") or "not-assessed"
                provider = transport.get("provider") or UNKNOWN_PROVIDER
                tlsa = host_tlsa(dns_hosts[host]) if host in dns_hosts else Answer.UNKNOWN
                self._hosts[host] = (provider, _host_pkix(transport.get("addresses")), dane, tlsa)
        if facts.sts_record is Answer.YES:
            self._policy_hosts[_policy_host(record, facts.domain)] += 1
        if not transports:
            return
        self.measured += 1
        name = facts.provider or UNKNOWN_PROVIDER
        p = self._providers.get(name)
        if p is None:
            self._providers[name] = p = _Provider()
        p.domains += 1
        p.dane_yes += facts.dane is Answer.YES
        p.dane_unknown += facts.dane in (Answer.UNKNOWN, Answer.NOT_MEASURED)
        p.sts += facts.sts_record is Answer.YES
        p.enforce += facts.sts_mode == Mode.ENFORCE
        p.tlsrpt += facts.tlsrpt is Answer.YES
        p.pkix_yes += facts.pkix.answer is Answer.YES
        p.starttls_yes += facts.starttls.answer is Answer.YES

    def result(self, top: int = 10) -> dict[str, Any]:
        hosts: dict[str, Counter[str]] = {}
        for provider, pkix, dane, tlsa in self._hosts.values():
            c = hosts.setdefault(provider, Counter())
            c["hosts"] += 1
            c[f"pkix {pkix}"] += 1
            c[f"dane {dane}"] += 1
            c[f"tlsa {tlsa}"] += 1
        ranked = sorted(self._providers.items(), key=lambda kv: (-kv[1].domains, kv[0]))[:top]
        rows = []
        for name, p in ranked:
            h = hosts.get(name, Counter())
            settled = h["pkix valid"] + h["pkix invalid"]
            rows.append(
                {
                    "provider": name,
                    "domains": p.domains,
                    "dane": all_some_none(h["tlsa yes"], h["tlsa yes"] + h["tlsa no"], some="optional"),
                    "hosts_dane": h["tlsa yes"],
                    "hosts_dane_unknown": h["tlsa unknown"],
                    "dane_domains": p.dane_yes,
                    "dane_unknown": p.dane_unknown,
                    "pkix": all_some_none(h["pkix valid"], settled, some="partial"),
                    "hosts": h["hosts"],
                    "hosts_pkix_valid": h["pkix valid"],
                    "hosts_pkix_invalid": h["pkix invalid"],
                    "hosts_pkix_unknown": h["pkix unknown"],
                    "hosts_dane_valid": h["dane valid"],
                    "domains_starttls": p.starttls_yes,
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

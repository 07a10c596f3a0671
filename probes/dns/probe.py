"""The DNS plan for one domain: MX, the MX hosts' addresses, TLSA where it can
matter, and the MTA-STS and TLS-RPT TXT records.

The plan is written against a ``Lookup`` callable (name, type) -> Answer so it
neither knows how queries travel nor whether they are cached: the composition
root hands it a single-flight, cached resolver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from probes.dns.records import Answer, DnsResult, Dnssec, ImplicitMx, MxHost, Outcome, TlsaSkip

__all__ = ["Lookup", "parse_mx", "probe_dns", "tlsa_decision"]


class Lookup(Protocol):
    """The resolver: one question (name, record type) and its classified answer."""

    def __call__(self, name: str, rrtype: str, /) -> Coroutine[Any, Any, Answer]: ...


#: Domains with hundreds of MX records exist (mostly misconfigured); probing all of
#: them would let one domain dominate a scan, so only the first are followed.
MAX_MX_HOSTS = 16


def parse_mx(mx: Answer) -> tuple[bool, list[tuple[int, str]]]:
    """(null_mx, hosts sorted by preference then name) from an MX answer.

    RFC 7505 §3: a null MX is a single record with preference 0 and target ".";
    a "." target among other MX records is not a null MX and is ignored as a host.
    """
    if mx.outcome is not Outcome.OK:
        return False, []
    entries: list[tuple[int, str]] = []
    for item in mx.data:
        pref_text, _, host = item.partition(" ")
        try:
            pref = int(pref_text)
        except ValueError:
            continue
        entries.append((pref, host.rstrip(".").lower()))
    if len(entries) == 1 and entries[0] == (0, ""):
        return True, []
    hosts = sorted({(p, h) for p, h in entries if h})
    return False, hosts[:MAX_MX_HOSTS]


def tlsa_decision(a: Answer, aaaa: Answer, *, validating: bool) -> TlsaSkip | None:
    """Whether the TLSA lookup for an MX host can matter (None) or why not.

    RFC 7672 §2.2.2: DANE applies to an MX host only when its address records are
    DNSSEC-secure; an insecure address lookup means TLSA records, even if present,
    must not be used, so asking would only cost a query.
    """
    if not validating:
        return TlsaSkip.RESOLVER_NOT_VALIDATING
    usable = [ans for ans in (a, aaaa) if ans.outcome in (Outcome.OK, Outcome.NODATA)]
    if not any(ans.outcome is Outcome.OK for ans in usable):
        return TlsaSkip.ADDRESS_UNRESOLVED
    if all(ans.dnssec is Dnssec.SECURE for ans in usable):
        return None
    return TlsaSkip.ADDRESS_INSECURE


async def _mx_host(preference: int, host: str, lookup: Lookup, validating: bool) -> MxHost:
    # One child task and one inline await: the pair runs concurrently at the cost of a
    # single task (tasks are the largest per-query CPU cost after parsing).
    async with asyncio.TaskGroup() as group:
        aaaa_task = group.create_task(lookup(host, "AAAA"))
        a = await lookup(host, "A")
    aaaa = aaaa_task.result()
    skip = tlsa_decision(a, aaaa, validating=validating)
    tlsa = await lookup(f"_25._tcp.{host}", "TLSA") if skip is None else None
    return MxHost(preference=preference, host=host, a=a, aaaa=aaaa, tlsa=tlsa, tlsa_skipped=skip)


async def _gather_hosts(hosts: Sequence[tuple[int, str]], lookup: Lookup, validating: bool) -> list[MxHost]:
    if len(hosts) == 1:
        return [await _mx_host(hosts[0][0], hosts[0][1], lookup, validating)]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_mx_host(p, h, lookup, validating)) for p, h in hosts]
    return [t.result() for t in tasks]


async def probe_dns(
    domain: str,
    *,
    lookup_domain: Lookup,
    lookup_host: Lookup,
    validating: bool,
) -> DnsResult:
    """Measure ``domain``.  ``lookup_domain`` serves names unique to the domain,
    ``lookup_host`` names shared across domains (MX hosts), typically cached."""
    async with asyncio.TaskGroup() as group:
        sts_task = group.create_task(lookup_domain(f"_mta-sts.{domain}", "TXT"))
        rpt_task = group.create_task(lookup_domain(f"_smtp._tls.{domain}", "TXT"))
        mx = await lookup_domain(domain, "MX")
    null_mx, hosts = parse_mx(mx)
    mx_hosts = await _gather_hosts(hosts, lookup_host, validating) if hosts else []
    implicit = None
    if mx.outcome is Outcome.NODATA:
        # RFC 5321 §5.1: no MX means the domain's own address is the implicit MX.
        async with asyncio.TaskGroup() as group:
            aaaa_task = group.create_task(lookup_domain(domain, "AAAA"))
            a = await lookup_domain(domain, "A")
        implicit = ImplicitMx(a=a, aaaa=aaaa_task.result())
    return DnsResult(
        mx=mx,
        has_mx=bool(hosts),
        null_mx=null_mx,
        mx_hosts=tuple(mx_hosts),
        implicit_mx=implicit,
        mta_sts=sts_task.result(),
        tlsrpt=rpt_task.result(),
    )

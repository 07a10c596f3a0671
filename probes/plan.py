"""The per-domain plan: DNS → SMTP per MX address → DANE → MTA-STS → roll-ups.

Composition of the probes, not measurement: every probe lives beside this module; the plan
decides what runs after what, which results are shared between domains (single-flight
caches keyed by host and address) and which caps apply.  Everything it drives comes in
through the small protocols of ``probes/interfaces.py`` (the resolver, the SMTP probe, the
policy fetch, the reverse lookup, the clock), so unit tests run it on fakes.

Theory of operation
-------------------
1. DNS (``probe_dns``): MX (a null MX: no hosts; no MX records: the implicit MX of
   RFC 5321 §5.1, recorded, not probed), each host's addresses, TLSA only where they are
   secure (RFC 7672 §2.2.2; whether the MX answer lets DANE apply is judged in step 3,
   §2.2.1), the MTA-STS and TLS-RPT TXT records.  A crash here ends the domain with a
   classified ``dns`` error.
2. Connections, at once and parked (they wait on other domains' work): the SMTP probe of
   every address the caps let through (``capped_addresses``; the others are counted in
   ``not_probed``), and the policy host's address and fetch (fetched even without a TXT
   record: "policy served but no TXT" is a finding).  A crash in one becomes that probe's
   classified error, never a lost domain.
3. Roll-ups, pure: DANE per host in the domain's context (``dane_for``), TLS-RPT, MTA-STS,
   the posture.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.peertext import exception_text
from engine.scheduler import parked
from engine.singleflight import SingleFlight
from engine.status import Status
from probes.dane.tlsa import DaneResult, DaneStatus, TlsaParseError, TlsaRecord, assess_dane, parse_tlsa
from probes.dns.probe import probe_dns
from probes.dns.records import Answer, DnsResult, Dnssec, MxHost, Outcome, TlsaSkip
from probes.dns.reverse import PtrResult
from probes.domain import ProbeError, host_line, with_ptr
from probes.interfaces import Lookup, PolicyFetchFn, PtrLookupFn, SmtpProbeFn, StaleProbe, WallClock
from probes.mtasts.assess import assess_mta_sts
from probes.mtasts.fetch import policy_url
from probes.mtasts.records import MtaStsResult, PolicyFetch
from probes.smtp.probe import SmtpProbe
from probes.smtp.records import SmtpResult
from probes.tlsrpt.record import TlsRptRecord, assess_tlsrpt_answer
from probes.transport import (
    MxTransport,
    Posture,
    dane_published,
    host_pkix_valid,
    no_tls_reason,
    posture,
    smtp_ref,
)

__all__ = [
    "DomainOutcome",
    "Pipeline",
    "PipelineOptions",
    "capped_addresses",
    "dane_for",
    "never_stale",
    "unfetched_policy",
    "unmeasured_smtp",
]

#: Addresses probed per MX host and address family, in answer order (a sender tries a few;
#: a host with 200 addresses would otherwise cost 200 connections).  The rest are recorded
#: as not probed ("host-cap"), never dropped silently.
MAX_ADDRESSES_PER_HOST = 4
#: Addresses probed per domain over its MX hosts in preference order ("domain-cap"): 16 MX
#: hosts with 2 addresses each fit; all are probed at once, so a domain's worst case stays
#: one address's worst case.
MAX_ADDRESSES_PER_DOMAIN = 32

T = TypeVar("T")
#: Per MX host (preference order): the addresses to probe, and the others counted by reason.
Selection = list[tuple[list[str], dict[str, int]]]
#: The policy host's A answer, the fetch (None: no address, or no fetcher) and its body.
PolicyOutcome = tuple[Answer, PolicyFetch | None, bytes | None]


def never_stale(_probe: SmtpProbe, _host: MxHost, /) -> bool:
    """Every shared probe serves every domain (no cache compaction)."""
    return False


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    dns_only: bool = False
    ipv6: bool = True
    #: Addresses probed per MX host and family, and per domain (the rest recorded as not probed).
    #: All of a domain's probed addresses are probed at once: waiting is cheap (the probe's
    #: politeness limits connections per address and provider), and one silent address in a
    #: later round would add a second worst case to the domain's time.
    max_addresses_per_host: int = 4
    max_addresses_per_domain: int = 32
    #: The port the SMTP probes connect to (recorded in a result a probe could not give).
    smtp_port: int = 25


@dataclass(slots=True)
class DomainOutcome:
    dns: DnsResult | None = None
    mx_transport: tuple[MxTransport, ...] = ()
    #: The SMTP probes ``mx_transport`` references, per MX host in the same order.
    smtp_probes: tuple[tuple[SmtpProbe, ...], ...] = ()
    mta_sts: MtaStsResult | None = None
    tlsrpt: TlsRptRecord | None = None
    posture: Posture | None = None
    errors: tuple[ProbeError, ...] = ()


def unmeasured_smtp(host: str, address: str, port: int, exc: BaseException) -> SmtpProbe:
    """The result of an SMTP probe that gave none: the probe process died (``OffloadLost``)
    or the probe crashed.  ``unknown-error`` with STARTTLS unknown, never "no": the domain's
    posture is then unknown and ``--retry-unknown`` measures it again."""
    result = SmtpResult.not_measured(host, address, port, Status.UNKNOWN_ERROR, exception_text(exc))
    return SmtpProbe(result, ())


def unfetched_policy(domain: str, address: str, exc: BaseException) -> PolicyFetch:
    """The result of a policy fetch that gave none (as ``unmeasured_smtp``): the policy is
    then unknown, never absent."""
    return PolicyFetch.not_fetched(policy_url(domain), address, Status.UNKNOWN_ERROR, exception_text(exc))


def addresses_of(host: MxHost, *, ipv6: bool) -> list[str]:
    """The addresses a sender would try, IPv4 first (deduplicated, in answer order)."""
    found: list[str] = []
    answers = (host.a, host.aaaa) if ipv6 else (host.a,)
    for answer in answers:
        if answer.outcome is Outcome.OK:
            found.extend(a for a in answer.data if a not in found)
    return found


def capped_addresses(hosts: tuple[MxHost, ...], *, ipv6: bool, per_host: int, per_domain: int) -> Selection:
    """Per host (in the given preference order): the addresses to probe, in the order a sender
    tries them, and the others counted by reason.  The rule is by position, so it depends only
    on the answers (testbed/truth.py says the same): an address past the ``per_host``-th of
    its family, as the resolver returned them, is "host-cap", even when the domain's budget
    (spent in host order) stopped an earlier one; else it is "domain-cap" once the budget is
    spent."""
    budget = per_domain
    selected: Selection = []
    for host in hosts:
        probed: list[str] = []
        skipped: dict[str, int] = {}
        position = {"ipv4": 0, "ipv6": 0}
        for address in addresses_of(host, ipv6=ipv6):
            family = "ipv6" if ":" in address else "ipv4"
            position[family] += 1
            reason = "host-cap" if position[family] > per_host else "domain-cap" if budget <= 0 else None
            if reason is None:
                budget -= 1
                probed.append(address)
            else:
                skipped[reason] = skipped.get(reason, 0) + 1
        selected.append((probed, skipped))
    return selected


def dane_for(
    host: MxHost, mx: Answer, chain: list[bytes] | None, at: dt.datetime, no_tls: str | None = None
) -> DaneResult:
    """DANE verdict for one MX host in one domain (the MX answer's DNSSEC status matters);
    ``no_tls``: why the host's probes settled that it gives no TLS session (``no_tls_reason``)."""
    if host.tlsa is None:
        if host.tlsa_skipped is TlsaSkip.RESOLVER_NOT_VALIDATING:
            return DaneResult(DaneStatus.UNDETERMINED, None, 0, "resolver does not validate DNSSEC")
        skipped = host.tlsa_skipped.value if host.tlsa_skipped else "not asked"
        return DaneResult(DaneStatus.NONE, None, 0, f"TLSA not looked up: {skipped} (RFC 7672 §2.2.2)")
    tlsa = host.tlsa
    if tlsa.outcome in (Outcome.TIMEOUT, Outcome.ERROR, Outcome.REFUSED) or (
        tlsa.outcome is Outcome.SERVFAIL and tlsa.dnssec is not Dnssec.BOGUS
    ):
        return DaneResult(DaneStatus.UNDETERMINED, None, 0, f"TLSA lookup {tlsa.outcome.value}")
    records: list[TlsaRecord] = []
    for text in tlsa.data if tlsa.outcome is Outcome.OK else ():
        try:
            records.append(parse_tlsa(text))
        except TlsaParseError:
            continue
    return assess_dane(
        records,
        tlsa_dnssec=tlsa.dnssec,
        mx_dnssec=mx.dnssec,
        chain=chain,
        host=host.host,
        at=at,
        no_tls=no_tls,
    )


class Pipeline:
    """Everything one run shares across domains; ``measure`` handles one domain.

    ``probe_smtp`` None (DNS only): no connections, no policy fetch.  ``stale``: whether a
    probe the shared cache holds must be made again for this domain's host (see
    ``StaleProbe``; ``never_stale`` when the cache keeps probes whole).  Required: a root that
    compacts its cache and forgot it would lose DANE verdicts silently."""

    def __init__(
        self,
        *,
        lookup_own: Lookup,
        lookup_shared: Lookup,
        validating: bool,
        probe_smtp: SmtpProbeFn | None,
        fetch_policy: PolicyFetchFn | None,
        smtp_cache: SingleFlight[tuple[str, str], SmtpProbe],
        provider_of: Callable[[str], str | None],
        options: PipelineOptions,
        now: WallClock,
        stale: StaleProbe,
        lookup_ptr: PtrLookupFn | None = None,
    ) -> None:
        #: Names unique to one domain (its MX, TXT and policy host names): asked once per run.
        self.lookup_own = lookup_own
        #: Names shared across domains (MX hosts): typically cached by the caller.
        self.lookup_shared = lookup_shared
        #: The reverse DNS of an address (shared per address by the caller); its result rides
        #: on the address's host line.
        self.lookup_ptr = lookup_ptr
        self.validating = validating
        self.probe_smtp = probe_smtp
        self.fetch_policy = fetch_policy
        self.smtp_cache = smtp_cache
        self.stale = stale
        self.provider_of = provider_of
        self.options = options
        self.now = now
        #: The domains awaiting each (host, address) probe or fetch right now (the visible tail).
        self.awaiting: dict[tuple[str, str], set[str]] = {}

    @contextlib.contextmanager
    def _awaiting(self, key: tuple[str, str], domain: str) -> Iterator[None]:
        self.awaiting.setdefault(key, set()).add(domain)
        try:
            yield
        finally:
            waiting = self.awaiting[key]
            waiting.discard(domain)
            if not waiting:
                del self.awaiting[key]

    def domains_awaiting(self, keys: Iterable[tuple[str, str]]) -> int:
        """How many domains await at least one of ``keys`` (e.g. the unresponsive targets)."""
        domains: set[str] = set()
        for key in keys:
            domains |= self.awaiting.get(key, set())
        return len(domains)

    async def measure(self, domain: str) -> DomainOutcome:
        errors: list[ProbeError] = []
        try:
            dns = await probe_dns(
                domain,
                lookup_domain=self.lookup_own,
                lookup_host=self.lookup_shared,
                validating=self.validating,
            )
        except Exception as exc:  # a probe bug becomes a classified record, never a lost domain
            errors.append(ProbeError(probe="dns", status=Status.UNKNOWN_ERROR, detail=exception_text(exc)))
            return DomainOutcome(errors=tuple(errors))
        outcome = DomainOutcome(dns=dns)
        policy: PolicyOutcome | None = None
        if self.probe_smtp is not None and not self.options.dns_only:
            policy = await self._connections(domain, dns, outcome, errors)
        self._assess(domain, dns, outcome, policy)
        outcome.errors = tuple(errors)
        return outcome

    async def _connections(
        self, domain: str, dns: DnsResult, outcome: DomainOutcome, errors: list[ProbeError]
    ) -> PolicyOutcome | None:
        """The SMTP probes (into ``outcome``) and the policy fetch, at once."""
        # Parked: connections wait on per-address and per-provider limits and on probes
        # other domains started; none of that is this domain's own work, so it must not
        # hold a scheduler slot the long tail needs (issue: scheduler fairness).
        async with parked(), asyncio.TaskGroup() as group:
            policy_task = group.create_task(self._guarded("mta-sts", self._policy(domain), None, errors))
            outcome.mx_transport, outcome.smtp_probes = await self._guarded(
                "smtp", self._transport(domain, dns), ((), ()), errors
            )
        return policy_task.result()

    def _assess(
        self, domain: str, dns: DnsResult, outcome: DomainOutcome, policy: PolicyOutcome | None
    ) -> None:
        """The pure roll-ups over what was measured (into ``outcome``)."""
        outcome.tlsrpt = assess_tlsrpt_answer(dns.tlsrpt)
        published = dane_published(dns.mx, dns.mx_hosts)
        hosts = list(zip(outcome.mx_transport, outcome.smtp_probes, strict=True))
        if policy is not None:
            policy_a, fetch, body = policy
            outcome.mta_sts = assess_mta_sts(
                domain=domain,
                sts_txt=dns.mta_sts,
                policy_host_a=policy_a,
                fetch=fetch,
                body=body,
                mx_hosts=[h.host for h in dns.mx_hosts],
                pkix_by_host={t.host: host_pkix_valid([p.result for p in probes]) for t, probes in hosts},
                dane_by_host={t.host: t.dane for t, _ in hosts},
                tlsrpt_valid=outcome.tlsrpt.valid,
                dane_published=published,
                provider_of=self.provider_of,
            )
        outcome.posture = posture(
            [([p.result for p in probes], t.dane) for t, probes in hosts],
            dnssec_mx=dns.mx.dnssec.value,
            dane_published=published,
            mta_sts_mode=outcome.mta_sts.mode if outcome.mta_sts is not None else None,
            tlsrpt=outcome.tlsrpt.valid,
        )

    @staticmethod
    async def _guarded(probe: str, work: Coroutine[Any, Any, T], fallback: T, errors: list[ProbeError]) -> T:
        """A crash inside one probe becomes a classified error for that probe only."""
        try:
            return await work
        except Exception as exc:
            errors.append(ProbeError(probe=probe, status=Status.UNKNOWN_ERROR, detail=exception_text(exc)))
            return fallback

    async def _smtp(self, host: str, address: str) -> SmtpProbe:
        """One address's probe; a probe that fails to give a result gives an unknown one for
        this address alone (kept like any result: each address is asked once per run)."""
        if self.lookup_ptr is None:
            return await self._smtp_only(host, address)
        # The reverse lookups run while the probe waits on its connection: no time added.
        async with asyncio.TaskGroup() as group:
            ptr_task = group.create_task(self._ptr(self.lookup_ptr, address))
            probe = await self._smtp_only(host, address)
        ptr = ptr_task.result()
        if ptr is None:
            return probe
        line = with_ptr(probe.host_line, ptr) if probe.host_line else host_line(probe.result, ptr)
        return SmtpProbe(probe.result, probe.chain_der, line)

    async def _smtp_only(self, host: str, address: str) -> SmtpProbe:
        assert self.probe_smtp is not None
        try:
            return await self.probe_smtp(host, address)
        except Exception as exc:  # the probe process is gone (OffloadLost) or the probe crashed
            return unmeasured_smtp(host, address, self.options.smtp_port, exc)

    @staticmethod
    async def _ptr(lookup: PtrLookupFn, address: str) -> PtrResult | None:
        """The address's reverse DNS; a lookup that crashes leaves the host line without it
        (null: not looked up), never the SMTP result lost."""
        try:
            return await lookup(address)
        except Exception:
            return None

    async def _policy(self, domain: str) -> PolicyOutcome:
        """Resolve mta-sts.<domain> and fetch its policy when it has an address.

        Fetched even without a TXT record, to find "policy served but no TXT"
        (RFC 8461 §3.1 makes the TXT record the switch; a stale policy is a finding).
        """
        policy_a = await self.lookup_own(f"mta-sts.{domain}", "A")
        if self.fetch_policy is None or policy_a.outcome is not Outcome.OK or not policy_a.data:
            return policy_a, None, None
        try:
            with self._awaiting((f"mta-sts.{domain}", policy_a.data[0]), domain):
                fetch, body = await self.fetch_policy(domain, policy_a.data[0])
        except Exception as exc:  # the probe process is gone (OffloadLost) or the fetch crashed
            return policy_a, unfetched_policy(domain, policy_a.data[0], exc), None
        return policy_a, fetch, body

    async def _transport(
        self, domain: str, dns: DnsResult
    ) -> tuple[tuple[MxTransport, ...], tuple[tuple[SmtpProbe, ...], ...]]:
        if not dns.mx_hosts:
            return (), ()
        options = self.options
        selected = capped_addresses(
            dns.mx_hosts,
            ipv6=options.ipv6,
            per_host=options.max_addresses_per_host,
            per_domain=options.max_addresses_per_domain,
        )
        targets = [(h, a) for h, (probed, _) in zip(dns.mx_hosts, selected, strict=True) for a in probed]
        results: dict[tuple[str, str], SmtpProbe] = {}
        if len(targets) == 1:  # the common case: no task of its own
            await self._shared(domain, *targets[0], results)
        else:
            async with asyncio.TaskGroup() as group:
                for mx, address in targets:
                    group.create_task(self._shared(domain, mx, address, results))
        return self._mx_transports(dns, selected, results)

    async def _shared(
        self, domain: str, mx: MxHost, address: str, results: dict[tuple[str, str], SmtpProbe]
    ) -> None:
        """The probe of (host, address) from the run's cache (made once for every domain that
        uses it), made again when the cached one cannot serve this domain."""
        key = (mx.host, address)
        with self._awaiting(key, domain):
            probe = await self.smtp_cache.get(key, lambda: self._smtp(*key))
            if self.stale(probe, mx):
                self.smtp_cache.forget(key, probe)
                probe = await self.smtp_cache.get(key, lambda: self._smtp(*key))
            results[key] = probe

    def _mx_transports(
        self, dns: DnsResult, selected: Selection, results: dict[tuple[str, str], SmtpProbe]
    ) -> tuple[tuple[MxTransport, ...], tuple[tuple[SmtpProbe, ...], ...]]:
        """Each MX host's transport record and the probes it references, in MX order."""
        at = self.now()
        transports = []
        smtp_probes = []
        for host, (probed, skipped) in zip(dns.mx_hosts, selected, strict=True):
            probes = tuple(results[(host.host, a)] for a in probed)
            chain = next((r.chain_der for r in probes if r.chain_der), None) if probes else None
            smtp_probes.append(probes)
            no_tls = None if chain else no_tls_reason([r.result for r in probes])
            transports.append(
                MxTransport(
                    host=host.host,
                    preference=host.preference,
                    provider=self.provider_of(host.host),
                    smtp_refs=tuple(smtp_ref(r.result) for r in probes),
                    dane=dane_for(host, dns.mx, list(chain) if chain else None, at, no_tls=no_tls),
                    not_probed=skipped,
                )
            )
        return tuple(transports), tuple(smtp_probes)

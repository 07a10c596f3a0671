"""What a run keeps of a probed (host, address) once its host line is written.

MX hosts are shared, so each (host, address) is probed once and its SMTP result is kept in
the run's single-flight cache for the domains that use it later.  Kept whole, an entry
holds the encoded host line (the full result with its certificate facts), the presented
chain and the result: ~8 KB per host, the run's largest growing state (issue #17).  Once
the line is in the results file, later domains need only its reference and what their
roll-ups read (``probes.transport``: status, phase, STARTTLS, the PKIX verdict), plus the
chain where DANE may match it (the host publishes TLSA records).  ``compact`` keeps exactly
that, as a :class:`WrittenProbe`: a few hundred bytes.

Which lines are written is known from the cache itself, not from a second table: a
``WrittenProbe`` is retained only after its line was written in this run, and it names the
probe it was made from (``origin``: the ``id`` of that probe object; a domain still holding
that object keeps it alive, so the id cannot belong to another probe while they are
compared).  A domain holding a probe of the same (host, address) computed after an eviction
writes that probe's own line, so every domain line follows the host line it was assessed
from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.singleflight import SingleFlight
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.dns.records import MxHost, Outcome
from probes.smtp.probe import SmtpProbe
from probes.smtp.records import SmtpResult
from probes.tls.verify import PkixResult

__all__ = ["SMTP_CACHE_ENTRIES", "HostLines", "WrittenProbe", "compact", "needs_chain"]

#: Probed (host, address) results kept for the run: MX hosts are shared by
#: thousands of domains, and each is probed once.  Once its line is written an entry is
#: its verdict (~0.5 KB, ``compact``), so this bounds the cache near 100 MB; the
#: least recently used beyond it are evicted (a later domain probes such a host again and
#: writes a new host line), counted in --summary-json (caches.smtp.evicted).
SMTP_CACHE_ENTRIES = 200_000

SmtpCache = SingleFlight[tuple[str, str], SmtpProbe]


@dataclass(frozen=True, slots=True)
class WrittenProbe(SmtpProbe):
    """An SMTP probe whose host line this run has written, reduced to what roll-ups read.

    ``origin``: ``id`` of the full probe it was made from; ``chain_dropped``: the chain was
    not kept (the host published no TLSA records when its line was written)."""

    origin: int = 0
    chain_dropped: bool = False


#: One PKIX verdict object per (valid, reason): thousands of hosts share a handful.
_PKIX: dict[tuple[bool, str], PkixResult] = {}


def _pkix(pkix: PkixResult | None) -> PkixResult | None:
    if pkix is None:
        return None
    key = (pkix.valid, str(pkix.reason))
    shared = _PKIX.get(key)
    if shared is None:
        shared = _PKIX[key] = PkixResult(pkix.valid, pkix.reason, "", "")
    return shared


def _verdict(result: SmtpResult) -> SmtpResult:
    """The fields ``probes.transport``'s roll-ups and ``smtp_ref`` read; free text, timings
    and the parsed EHLO/TLS details emptied (they live in the host line)."""
    return dataclasses.replace(
        result,
        banner="",
        ehlo=None,
        ehlo_tls=None,
        last_text="",
        tls=None,
        pkix=_pkix(result.pkix),
        detail="",
        phase_ms={},
        attempt_log=(),
    )


def compact(probe: SmtpProbe, dane: DaneResult | None) -> WrittenProbe:
    """``probe`` after its line is written.  The chain is kept unless the domain's DANE
    verdict for the host is "none" (no TLSA records: nothing can match a chain)."""
    drop = dane is not None and dane.status is DaneStatus.NONE
    return WrittenProbe(
        result=_verdict(probe.result),
        chain_der=() if drop else probe.chain_der,
        origin=id(probe),
        chain_dropped=drop and bool(probe.chain_der),
    )


def needs_chain(probe: SmtpProbe, host: MxHost) -> bool:
    """The chain was dropped, but this domain sees TLSA records for the host (its TLSA answer
    changed since, e.g. after the DNS cache evicted it): the probe must be made again."""
    tlsa = host.tlsa
    return (
        isinstance(probe, WrittenProbe)
        and probe.chain_dropped
        and tlsa is not None
        and tlsa.outcome is Outcome.OK
        and bool(tlsa.data)
    )


class HostLines:
    """Decides which host lines a domain line needs written first, and compacts the cache."""

    def __init__(self, cache: SmtpCache | None) -> None:
        self._cache = cache

    def written(self, probe: SmtpProbe) -> bool:
        """Whether this run already wrote ``probe``'s line (see the module docstring)."""
        if isinstance(probe, WrittenProbe):
            return True
        if self._cache is None:
            return False
        retained = self._cache.peek((probe.result.host, probe.result.address))
        return isinstance(retained, WrittenProbe) and retained.origin == id(probe)

    def wrote(self, probe: SmtpProbe, dane: DaneResult | None) -> None:
        """``probe``'s line is written: retain its compact form instead (if still retained)."""
        if self._cache is not None and not isinstance(probe, WrittenProbe):
            key = (probe.result.host, probe.result.address)
            self._cache.replace(key, probe, compact(probe, dane))

"""What a run keeps per probed (host, address) once its host line is written (issue #17):
the compact verdict in the single-flight cache, and which lines are written."""

from __future__ import annotations

import asyncio
import dataclasses

from engine.singleflight import SingleFlight
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.hostcache import HostLines, WrittenProbe, compact, needs_chain
from probes.plan import unmeasured_smtp
from probes.smtp.probe import SmtpProbe
from probes.smtp.records import Starttls
from probes.tls.verify import PkixReason, PkixResult
from probes.transport import host_pkix_valid, no_tls_reason, smtp_ref

NO_TLSA = DaneResult(DaneStatus.NONE, None, 0, "no TLSA records")
MISMATCH = DaneResult(DaneStatus.MISMATCH, None, 1, "no match")


def full_probe(host: str = "mx.a.test", address: str = "127.0.0.9") -> SmtpProbe:
    base = unmeasured_smtp(host, address, 25, RuntimeError("x")).result
    result = dataclasses.replace(
        base,
        status=base.status,
        starttls=Starttls.YES,
        banner="220 " + "b" * 400,
        last_text="250 ok",
        pkix=PkixResult(False, PkixReason.EXPIRED, "expired " + "d" * 200, ""),
        phase_ms={"connect": 1.0, "banner": 2.0},
    )
    return SmtpProbe(result, (b"leaf" * 300, b"ca" * 300), b'{"ref":"..."}\n' + b"x" * 4000)


def cache_with(probe: SmtpProbe) -> SingleFlight[tuple[str, str], SmtpProbe]:
    cache: SingleFlight[tuple[str, str], SmtpProbe] = SingleFlight(10)

    async def fill() -> None:
        await cache.get((probe.result.host, probe.result.address), lambda: _value(probe))

    asyncio.run(fill())
    return cache


async def _value(probe: SmtpProbe) -> SmtpProbe:
    return probe


def test_written_host_is_kept_as_its_verdict_without_line_or_free_text() -> None:
    probe = full_probe()
    cache = cache_with(probe)
    lines = HostLines(cache)
    assert not lines.written(probe)
    lines.wrote(probe, MISMATCH)
    kept = cache.peek(("mx.a.test", "127.0.0.9"))
    assert isinstance(kept, WrittenProbe) and cache.statistics().compacted == 1
    assert kept.host_line == b"" and kept.result.banner == "" and kept.result.phase_ms == {}
    assert kept.chain_der == probe.chain_der  # TLSA published: DANE of later domains matches it
    # everything the roll-ups read is unchanged
    r, k = probe.result, kept.result
    assert smtp_ref(k) == smtp_ref(r) and (k.status, k.phase, k.starttls) == (r.status, r.phase, r.starttls)
    assert (
        host_pkix_valid([k]) == host_pkix_valid([r]) and k.pkix is not None and k.pkix.reason == r.pkix.reason
    )
    assert no_tls_reason([k]) == no_tls_reason([r])


def test_chain_is_dropped_only_where_no_tlsa_is_published() -> None:
    probe = full_probe()
    assert compact(probe, NO_TLSA).chain_der == () and compact(probe, NO_TLSA).chain_dropped
    assert compact(probe, MISMATCH).chain_der and not compact(probe, MISMATCH).chain_dropped
    assert compact(probe, None).chain_der  # not assessed: kept


def test_pkix_verdicts_of_compact_hosts_are_shared_objects() -> None:
    a, b = full_probe("mx1.test"), full_probe("mx2.test")
    assert compact(a, None).result.pkix is compact(b, None).result.pkix


def test_a_line_is_written_once_for_every_holder_of_the_same_probe() -> None:
    probe = full_probe()
    cache = cache_with(probe)
    lines = HostLines(cache)
    lines.wrote(probe, MISMATCH)
    assert lines.written(probe)  # another domain still holding the full probe
    assert lines.written(cache.peek(("mx.a.test", "127.0.0.9")))  # a later domain: the compact one


def test_a_probe_made_again_after_eviction_writes_its_own_line() -> None:
    """A domain holding a newer probe of the same (host, address) than the compact one
    retained must write its own host line before its domain line."""
    old = full_probe()
    cache = cache_with(old)
    lines = HostLines(cache)
    lines.wrote(old, MISMATCH)
    newer = full_probe()
    assert not lines.written(newer)
    lines.wrote(newer, MISMATCH)  # the retained entry is not ``newer``: left as it is
    kept = cache.peek(("mx.a.test", "127.0.0.9"))
    assert isinstance(kept, WrittenProbe) and kept.origin == id(old)


def test_without_a_cache_every_line_is_written() -> None:
    probe = full_probe()
    lines = HostLines(None)
    lines.wrote(probe, MISMATCH)
    assert not lines.written(probe)


def _tlsa(outcome: Outcome, data: tuple[str, ...]) -> Answer:
    return Answer("_25._tcp.mx.a.test", "TLSA", outcome, Dnssec.SECURE, True, 60, (), data, "NOERROR", (), "")


def test_a_dropped_chain_is_needed_again_only_when_tlsa_records_appear() -> None:
    probe = compact(full_probe(), NO_TLSA)
    none = _tlsa(Outcome.NODATA, ())
    host = MxHost(10, "mx.a.test", none, none, None, None)
    assert not needs_chain(probe, host)
    with_tlsa = dataclasses.replace(host, tlsa=_tlsa(Outcome.OK, ("3 1 1 " + "ab" * 32,)))
    assert needs_chain(probe, with_tlsa)
    assert not needs_chain(compact(full_probe(), MISMATCH), with_tlsa)


def test_singleflight_evictions_are_counted_and_replace_never_overwrites_a_newer_answer() -> None:
    async def main() -> None:
        cache: SingleFlight[int, str] = SingleFlight(2)
        for key in range(5):
            await cache.get(key, lambda k=key: _value_str(f"v{k}"))
        stats = cache.statistics()
        assert (stats.entries, stats.evicted) == (2, 3)
        current = cache.peek(4)
        assert current == "v4"
        assert not cache.replace(4, "other", "small")
        assert cache.replace(4, current, "small") and cache.peek(4) == "small"
        cache.forget(4, "not it")
        assert cache.peek(4) == "small"
        cache.forget(4, "small")
        assert cache.peek(4) is None

    asyncio.run(main())


async def _value_str(value: str) -> str:
    return value

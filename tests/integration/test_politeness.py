"""Politeness against a provider that enforces a connection limit and answers
421 above it: the scanner never exceeds its own per-provider cap, backs off,
and ends with no result spoiled by throttling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.backoff import AimdPolicy, SlowLane
from engine.exclude import ExcludeList
from engine.limits import KeyedLimiter, Limit
from engine.status import Status
from mxscan.politeness import PoliteProber
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.records import Starttls
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from testbed.pki import TestPki
from testbed.smtpfleet import HostSpec, SmtpFleet, server_context

PORT = 2526
HOSTS = 40
SERVER_LIMIT = 3


@pytest.fixture(scope="module")
def tls_and_trust(tmp_path_factory: pytest.TempPathFactory):
    pki = TestPki()
    issued = pki.issue(["mx.busy.prov.test"], kind="valid")
    root = Path(tmp_path_factory.mktemp("ca")) / "root.pem"
    root.write_bytes(pki.root_pem())
    return server_context(issued.chain_pem, issued.key_pem), load_trust_store("none", [str(root)])


def _specs(tls) -> list[HostSpec]:
    return [
        HostSpec(
            name=f"mx{i}.busy.prov.test",
            address=f"127.66.0.{i + 1}",
            behaviour="limit-421",
            tls=tls,
            provider="busy",
            provider_limit=SERVER_LIMIT,
        )
        for i in range(HOSTS)
    ]


def _polite(trust, limit: Limit, exclude: ExcludeList | None = None) -> PoliteProber:
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test",
        trust_store=trust,
        port=PORT,
        timeouts=SmtpTimeouts(connect=2, banner=2, command=2, handshake=2, quit=0.5),
        retries=0,
    )
    provider_limits = KeyedLimiter(lambda _key: limit)
    return PoliteProber(
        prober=SmtpProber(settings),
        address_limits=KeyedLimiter(lambda _key: Limit(concurrency=1)),
        provider_limits=provider_limits,
        backoff=AimdPolicy(
            provider_limits, base_rate_for=lambda _key: limit.rate, floor=2.0, increase=1.0, cooldown=0.1
        ),
        slow_lane=SlowLane(),
        fast_lane=asyncio.Semaphore(64),
        slow_lane_slots=asyncio.Semaphore(4),
        provider_of=lambda host: "busy.prov.test",
        exclude=exclude,
        throttle_retries=12,
        throttle_delay=0.02,
    )


def _scan(specs: list[HostSpec], polite: PoliteProber):
    async def main():
        async with SmtpFleet(specs, PORT) as fleet:
            found = await asyncio.gather(*(polite.probe(s.name, s.address) for s in specs))
            return [f.result for f in found], fleet.stats

    return asyncio.run(main())


def test_cap_at_or_below_the_server_limit_never_meets_a_421(tls_and_trust) -> None:
    tls, trust = tls_and_trust
    results, stats = _scan(_specs(tls), _polite(trust, Limit(concurrency=SERVER_LIMIT, rate=200.0, burst=3)))
    assert stats.peak_per_provider["busy"] <= SERVER_LIMIT
    assert stats.refused_421["busy"] == 0
    assert all(r.status is Status.SUCCESS and r.starttls is Starttls.YES for r in results)


def test_a_throttling_provider_is_backed_off_and_every_probe_completes(tls_and_trust) -> None:
    tls, trust = tls_and_trust
    polite = _polite(trust, Limit(concurrency=8, rate=200.0, burst=8))
    results, stats = _scan(_specs(tls), polite)
    assert stats.peak_per_provider["busy"] <= 8  # our own cap, counted by the server
    assert stats.refused_421["busy"] > 0  # the scenario really throttled us ...
    backoff = polite.backoff.statistics()
    assert backoff and backoff[0].decreases > 0  # ... and we slowed down
    assert all(r.status is Status.SUCCESS for r in results), [
        r.detail for r in results if r.status != "success"
    ]
    assert not [r for r in results if r.starttls is not Starttls.YES]  # no throttle reported as "no STARTTLS"
    assert any(r.attempts > 1 for r in results)


def test_excluded_hosts_and_ranges_are_never_contacted(tls_and_trust) -> None:
    tls, trust = tls_and_trust
    specs = _specs(tls)[:6]
    exclude = ExcludeList.from_lines(["mx0.busy.prov.test", "127.66.0.4/31"])
    results, stats = _scan(specs, _polite(trust, Limit(concurrency=2), exclude))
    skipped = sorted(r.host for r in results if r.status is Status.SKIPPED)
    assert skipped == ["mx0.busy.prov.test", "mx3.busy.prov.test", "mx4.busy.prov.test"]
    assert all(r.detail == "excluded" for r in results if r.status is Status.SKIPPED)
    assert sum(stats.connections[h] for h in skipped) == 0


def test_one_connection_at_a_time_per_address(tls_and_trust) -> None:
    tls, trust = tls_and_trust
    spec = HostSpec(name="mx.single.prov.test", address="127.66.1.1", behaviour="good", tls=tls)
    polite = _polite(trust, Limit(concurrency=50))

    async def main():
        async with SmtpFleet([spec], PORT) as fleet:
            found = await asyncio.gather(*(polite.probe(spec.name, spec.address) for _ in range(10)))
            return [f.result for f in found], fleet.stats

    results, stats = asyncio.run(main())
    assert all(r.status is Status.SUCCESS for r in results)
    assert stats.connections[spec.name] == 10 and stats.peak_per_provider[spec.name] == 1

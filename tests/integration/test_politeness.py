"""Politeness against a provider that enforces a connection limit and answers
421 above it: the scanner never exceeds its own per-provider cap, backs off,
and ends with no result spoiled by throttling.  And the one retry policy against
hosts that stay silent or greylist (small asyncio servers below): each classified
within its deadline, retried at most once, and never holding a slot others need."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from engine.backoff import AimdPolicy
from engine.exclude import ExcludeList
from engine.limits import KeyedLimiter, Limit
from engine.status import Status
from probes.retry import RetryPolicy
from probes.smtp.polite import PoliteProber
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.records import Phase, Signal, Starttls
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import Verifier
from testbed.pki import TestPki
from testbed.smtpfleet import HostSpec, SmtpFleet, server_context

PORT = 2526
HOSTS = 40
SERVER_LIMIT = 3
#: The throttling provider below needs several quick retries per host to end with every probe done.
MANY_THROTTLE_RETRIES = RetryPolicy(timeout_retries=1, transient_retries=12, delay=0.02)


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


def _polite(
    trust,
    limit: Limit,
    exclude: ExcludeList | None = None,
    *,
    port: int = PORT,
    retry: RetryPolicy = MANY_THROTTLE_RETRIES,
    timeout: float = 2.0,
    active: int = 64,
    active_grace: float = 5.0,
) -> PoliteProber:
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test",
        verifier=Verifier(trust),
        port=port,
        timeouts=SmtpTimeouts(connect=timeout, banner=timeout, command=timeout, handshake=timeout, quit=0.5),
    )
    provider_limits = KeyedLimiter(lambda _key: limit)
    return PoliteProber(
        prober=SmtpProber(settings),
        address_limits=KeyedLimiter(lambda _key: Limit(concurrency=1)),
        provider_limits=provider_limits,
        backoff=AimdPolicy(
            provider_limits, base_rate_for=lambda _key: limit.rate, floor=2.0, increase=1.0, cooldown=0.1
        ),
        provider_of=lambda host: "busy.prov.test",
        active=asyncio.Semaphore(active),
        sockets=asyncio.Semaphore(1000),
        retry=retry,
        active_grace=active_grace,
        exclude=exclude,
        exchange_bound=4 * timeout,
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


# --- the one retry policy against silent and greylisting hosts (issue #12) ---------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@asynccontextmanager
async def _server(
    handler: Handler, addresses: tuple[str, ...] = ("127.0.0.1",)
) -> AsyncIterator[tuple[int, list[float]]]:
    """A loopback SMTP server on one ephemeral port of each address; yields the port and each
    connection's time."""
    seen: list[float] = []
    writers: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(time.monotonic())
        writers.append(writer)
        try:
            await handler(reader, writer, len(seen))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(on_connect, addresses[0], 0)]
    port = servers[0].sockets[0].getsockname()[1]
    servers += [await asyncio.start_server(on_connect, a, port) for a in addresses[1:]]
    try:
        yield port, seen
    finally:
        for writer in writers:
            writer.close()
        for server in servers:
            server.close()


async def _silent(reader: asyncio.StreamReader, _w: asyncio.StreamWriter, _n: int) -> None:
    await reader.read()  # accepts, never greets, until the client gives up


async def _plain_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mx.plain.test ESMTP\r\n")
    while line := await reader.readline():
        if line.upper().startswith(b"EHLO"):
            writer.write(b"250-mx.plain.test\r\n250 8BITMIME\r\n")
        elif line.upper().startswith(b"QUIT"):
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"502 no\r\n")
        await writer.drain()


async def _greylisting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    if n == 1:  # the first contact from this client: greylisted (RFC 6647 §2.1)
        writer.write(b"451 4.7.1 greylisted, try again later\r\n")
        await writer.drain()
        return
    await _plain_smtp(reader, writer)


async def _good(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
    await _plain_smtp(reader, writer)


def test_a_silent_host_is_retried_once_and_classified_as_a_banner_timeout(tls_and_trust) -> None:
    """Accepts and never greets: two connections (one retry after the delay), io-timeout in
    the banner phase with STARTTLS unknown, both attempts in the record, classified within
    2 x the phase deadline + the delay (+2 s of slack); no provider back-off from one host."""
    _tls, trust = tls_and_trust
    retry = RetryPolicy(timeout_retries=1, transient_retries=1, delay=0.3)
    polite = _polite(trust, Limit(concurrency=8), retry=retry, timeout=1.0)

    async def main():
        async with _server(_silent) as (port, seen):
            polite.prober.settings = SmtpSettings(
                ehlo_name="scanner.mxscan.test",
                verifier=Verifier(trust),
                port=port,
                timeouts=SmtpTimeouts(connect=1, banner=1, command=1, handshake=1, quit=0.5),
            )
            started = time.monotonic()
            result = (await polite.probe("mx.silent.test", "127.0.0.1")).result
            return result, len(seen), time.monotonic() - started

    result, connections, elapsed = asyncio.run(main())
    assert (result.status, result.phase, result.starttls) == (
        Status.IO_TIMEOUT,
        Phase.BANNER,
        Starttls.UNKNOWN,
    )
    assert connections == result.attempts == 2
    assert [a.signal for a in result.attempt_log] == [Signal.TIMEOUT, Signal.TIMEOUT]
    assert not result.greylisted
    assert result.duration_ms >= (2 * 1.0 + 0.3) * 1000 * 0.9
    assert elapsed < 2 * 1.0 + 0.3 + 2
    assert polite.backoff.statistics() == []  # one silent host never lowers a provider's rate


def test_a_greylisting_host_is_retried_once_and_recorded_as_greylisted(tls_and_trust) -> None:
    """451 to the first connection, a greeting after: success on the second, greylisted."""
    _tls, trust = tls_and_trust
    polite = _polite(trust, Limit(concurrency=8), retry=RetryPolicy(delay=0.2), timeout=1.0)

    async def main():
        async with _server(_greylisting) as (port, seen):
            polite.prober.settings = SmtpSettings(
                ehlo_name="scanner.mxscan.test",
                verifier=Verifier(trust),
                port=port,
                timeouts=SmtpTimeouts(connect=1, banner=1, command=1, handshake=1, quit=0.5),
            )
            return (await polite.probe("mx.grey.test", "127.0.0.1")).result, len(seen)

    result, connections = asyncio.run(main())
    assert result.status is Status.SUCCESS and result.starttls is Starttls.NO
    assert result.greylisted and result.attempts == connections == 2
    assert [a.signal for a in result.attempt_log] == [Signal.GREYLIST, Signal.DEFINITE]
    assert result.attempt_log[0].last_code == 451


def test_silent_hosts_do_not_hold_the_slots_other_probes_need(tls_and_trust) -> None:
    """Two active slots, four silent addresses (2 s banner deadline) probed first: a good host
    probed after them is answered long before the silent ones time out, because a connection
    still open after the active grace (0.2 s) waits on its deadline without a slot."""
    _tls, trust = tls_and_trust
    polite = _polite(
        trust, Limit(concurrency=100), retry=RetryPolicy(timeout_retries=0), active=2, active_grace=0.2
    )

    async def main():
        silent_addresses = tuple(f"127.66.9.{i + 1}" for i in range(4))
        async with _server(_silent, silent_addresses) as (silent_port, _), _server(_good) as (good_port, _):
            polite.prober.settings = SmtpSettings(
                ehlo_name="scanner.mxscan.test",
                verifier=Verifier(trust),
                port=silent_port,
                timeouts=SmtpTimeouts(connect=2, banner=2, command=2, handshake=2, quit=0.5),
            )
            silent = [
                asyncio.create_task(polite.probe(f"mx{i}.silent.test", a))
                for i, a in enumerate(silent_addresses)
            ]
            for _ in range(1000):  # progress, not a fixed sleep: the silent ones hold both slots
                if polite.active.locked():
                    break
                await asyncio.sleep(0.01)
            assert polite.active.locked(), "the silent probes never held both active slots"
            good_settings = polite.prober.settings.__class__(
                ehlo_name="scanner.mxscan.test",
                verifier=Verifier(trust),
                port=good_port,
                timeouts=SmtpTimeouts(connect=2, banner=2, command=2, handshake=2, quit=0.5),
            )
            other = _polite(trust, Limit(concurrency=100))
            other.prober = SmtpProber(good_settings)
            other.active, other.sockets = polite.active, polite.sockets  # the same scan-wide slots
            good = (await other.probe("mx.good.test", "127.0.0.1")).result
            pending = sum(not t.done() for t in silent)
            return good, pending, [(await t).result for t in silent], len(polite.unresponsive.targets())

    good, pending, silent, _ = asyncio.run(main())
    assert good.status is Status.SUCCESS
    assert pending == len(silent)  # answered while every silent host still held its connection
    assert all(r.status is Status.IO_TIMEOUT and r.phase is Phase.BANNER for r in silent)

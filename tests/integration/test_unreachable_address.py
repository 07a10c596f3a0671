"""An address whose TCP connect fails is unreachable for every MX name behind it (issue #12:
on loopback every "silent IPv6" host is ::1, on the Internet shared-hosting addresses sit
behind many MX names).  Real listeners on loopback: one that drops SYNs (a full listen(0)
queue that never accepts, as testbed/smtpfleet.py's "syn-drop"), none at all (refused), and
one that accepts and never greets (not an address property: probed for every name)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from engine.backoff import AimdPolicy
from engine.limits import KeyedLimiter, Limit
from engine.status import Status
from probes.retry import RetryPolicy
from probes.smtp.polite import PoliteProber
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.records import Phase, Signal, Starttls
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import Verifier

CONNECT = 0.5
DELAY = 0.3
NAMES = ("mx1.shared.test", "mx2.shared.test", "mx3.shared.test")


def _polite(port: int) -> PoliteProber:
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test",
        verifier=Verifier(load_trust_store("mozilla", [])),  # never reached: no TLS here
        port=port,
        timeouts=SmtpTimeouts(connect=CONNECT, banner=CONNECT, command=CONNECT, handshake=CONNECT, quit=0.2),
    )
    providers = KeyedLimiter(lambda _key: Limit(concurrency=100))
    return PoliteProber(
        prober=SmtpProber(settings),
        address_limits=KeyedLimiter(lambda _key: Limit(concurrency=1)),
        provider_limits=providers,
        backoff=AimdPolicy(providers, base_rate_for=lambda _key: None, floor=2.0, increase=1.0, cooldown=0.1),
        provider_of=lambda host: host,  # each name its own operator, as self-hosted MX are
        active=asyncio.Semaphore(64),
        sockets=asyncio.Semaphore(100),
        retry=RetryPolicy(timeout_retries=1, transient_retries=1, delay=DELAY),
        active_grace=0.1,
        exchange_bound=4 * CONNECT,
    )


@contextmanager
def _syn_dropping(address: str) -> Iterator[int]:
    """A listener whose one-place accept queue is full: the kernel drops later SYNs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((address, 0))
        listener.listen(0)
        filler.settimeout(5)
        filler.connect(listener.getsockname()[:2])
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


def _probe_all(polite: PoliteProber, address: str):
    async def main():
        started = time.monotonic()
        found = await asyncio.gather(*(polite.probe(name, address) for name in NAMES))
        return [f.result for f in found], time.monotonic() - started, len(polite.unresponsive)

    return asyncio.run(main())


def test_names_on_one_syn_dropping_address_cost_one_connect_and_its_retry() -> None:
    """Three MX names on one address that drops SYNs: the first probe connects twice (its
    retry), the others connect never and are recorded connection-timeout at connect with
    attempts 0 and the first probe's ref; all settled within one probe's worst case (2
    connect deadlines + the pause), not three in a row (+2 s of slack)."""
    with _syn_dropping("127.67.0.1") as port:
        results, elapsed, still_waiting = _probe_all(_polite(port), "127.67.0.1")
    assert all((r.status, r.phase, r.starttls) == (Status.CONNECTION_TIMEOUT, Phase.CONNECT, Starttls.UNKNOWN)
               for r in results)  # fmt: skip
    assert sorted(r.attempts for r in results) == [0, 0, 2]
    first = next(r for r in results if r.attempts == 2)
    assert [a.signal for a in first.attempt_log] == [Signal.TIMEOUT, Signal.TIMEOUT]
    for later in (r for r in results if r.attempts == 0):
        assert later.attempt_log == ()
        assert f"smtp:{first.host}@127.67.0.1:{port}" in later.detail and "earlier probe" in later.detail
    assert elapsed < 2 * CONNECT + DELAY + 2
    assert still_waiting == 0


def test_names_on_one_refusing_address_cost_one_connection() -> None:
    """Nothing listens (RST): the first probe is refused once (a refusal is definite), the
    others are recorded refused without connecting."""
    with socket.socket() as probe_port:
        probe_port.bind(("127.67.0.2", 0))
        port = probe_port.getsockname()[1]  # bound, never listening: connects are refused
        results, _, _ = _probe_all(_polite(port), "127.67.0.2")
    assert all((r.status, r.phase) == (Status.CONNECTION_REFUSED, Phase.CONNECT) for r in results)
    assert sorted(r.attempts for r in results) == [0, 0, 1]


def test_names_on_one_silent_after_accept_address_are_each_probed() -> None:
    """Accepts and never greets: silence after the handshake is not an address property
    (virtual hosts differ), so every name gets its own connection and retry."""
    connections = 0

    async def main():
        nonlocal connections
        writers: list[asyncio.StreamWriter] = []

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            writers.append(writer)
            await reader.read()

        server = await asyncio.start_server(on_connect, "127.67.0.3", 0)
        port = server.sockets[0].getsockname()[1]
        polite = _polite(port)
        try:
            found = await asyncio.gather(*(polite.probe(name, "127.67.0.3") for name in NAMES))
        finally:
            for writer in writers:
                writer.close()
            server.close()
        return [f.result for f in found], len(polite.unreachable)

    results, remembered = asyncio.run(main())
    assert all((r.status, r.phase) == (Status.IO_TIMEOUT, Phase.BANNER) for r in results)
    assert [r.attempts for r in results] == [2, 2, 2]
    assert connections == 6 and remembered == 0

"""Politeness around the SMTP probe: exclusions, per-address and per-provider
limits, AIMD back-off on throttling, retries later, and a slow lane.

Composition, not policy: the limiter, the back-off rule and the slow-lane rule
live in ``engine/``; the probe lives in ``probes/``.  This module decides which
outcomes count as "the provider is throttling us" and what happens then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from engine.backoff import AimdPolicy, SlowLane
from engine.exclude import ExcludeList
from engine.limits import KeyedLimiter
from engine.status import Status
from probes.mtasts.fetch import policy_url
from probes.mtasts.records import PolicyFetch
from probes.smtp.probe import SmtpProbe, SmtpProber
from probes.smtp.records import Phase, SmtpResult, Starttls

__all__ = ["PoliteProber", "excluded_fetch", "excluded_result", "is_throttle"]

#: Replies that mean "too many connections / come back later" (RFC 5321 §4.2.2, §3.8).
THROTTLE_CODES = frozenset({421, 450, 451, 452})


def is_throttle(result: SmtpResult) -> bool:
    """Outcomes that say more about our pace than about the server's TLS support:
    a 4xx refusal before EHLO completed, a reset or a timeout before the banner.
    These are retried later at a lower rate, never reported as "no STARTTLS"."""
    if result.status is Status.APPLICATION_ERROR:
        return result.last_code in THROTTLE_CODES and result.phase in (Phase.BANNER, Phase.EHLO)
    if result.status in (Status.CONNECTION_CLOSED, Status.CONNECTION_TIMEOUT):
        return result.phase in (Phase.CONNECT, Phase.BANNER)
    return result.status is Status.IO_TIMEOUT and result.phase is Phase.BANNER


def excluded_result(host: str, address: str, port: int) -> SmtpProbe:
    """The record for an MX address on the opt-out list: never contacted."""
    result = SmtpResult(
        host=host,
        address=address,
        port=port,
        status=Status.SKIPPED,
        phase=Phase.CONNECT,
        starttls=Starttls.UNKNOWN,
        banner_code=None,
        banner="",
        ehlo=None,
        ehlo_tls=None,
        last_code=None,
        last_text="",
        tls=None,
        pkix=None,
        plaintext_injection=False,
        attempts=0,
        detail="excluded",
        duration_ms=0.0,
        phase_ms={},
    )
    return SmtpProbe(result, ())


def excluded_fetch(domain: str, address: str) -> PolicyFetch:
    """The record for a policy host on the opt-out list: never contacted."""
    return PolicyFetch(
        url=policy_url(domain),
        address=address,
        status=Status.SKIPPED,
        http_status=None,
        content_type="",
        location="",
        body_bytes=0,
        tls_version="",
        chain=None,
        pkix=None,
        detail="excluded",
        duration_ms=0.0,
    )


@dataclass
class PoliteProber:
    prober: SmtpProber
    address_limits: KeyedLimiter
    provider_limits: KeyedLimiter
    backoff: AimdPolicy
    slow_lane: SlowLane
    fast_lane: asyncio.Semaphore
    slow_lane_slots: asyncio.Semaphore
    provider_of: Callable[[str], str | None]
    exclude: ExcludeList | None = None
    #: Connections after a throttle signal, each after a longer pause.
    throttle_retries: int = 3
    throttle_delay: float = 5.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def excluded(self, host: str, address: str) -> bool:
        return self.exclude is not None and (
            self.exclude.excludes_name(host) or self.exclude.excludes_address(address)
        )

    @asynccontextmanager
    async def slot(self, host: str, address: str) -> AsyncIterator[None]:
        """The limits one connection to ``host`` at ``address`` waits for (SMTP or HTTPS).

        Address first: waiting for one busy IP must not hold a provider-wide slot.
        """
        provider = self.provider_of(host) or host
        lane = self.slow_lane_slots if self.slow_lane.is_slow(host) else self.fast_lane
        async with self.address_limits.hold(address), self.provider_limits.hold(provider), lane:
            yield

    async def probe(self, host: str, address: str) -> SmtpProbe:
        port = self.prober.settings.port
        if self.excluded(host, address):
            return excluded_result(host, address, port)
        provider = self.provider_of(host) or host
        attempts = 0
        started = 0.0
        while True:
            async with self.slot(host, address):
                if not attempts:
                    started = time.perf_counter()
                exchanged = await self.prober.exchange(host, address)
                ended = time.perf_counter()
            outcome = await self.prober.analyse(exchanged)  # with the connection slot already free
            attempts += outcome.result.attempts
            result = outcome.result
            timed_out = result.status in (Status.IO_TIMEOUT, Status.CONNECTION_TIMEOUT)
            self.slow_lane.observe(host, greeting_delay=None, timed_out=timed_out)
            if not is_throttle(result):
                self.backoff.on_success(provider)
                break
            self.backoff.on_throttle(provider)
            if attempts > self.throttle_retries:
                break
            await self.sleep(self.throttle_delay * 2 ** (attempts - 1))
        if attempts != result.attempts:
            # duration_ms includes the retries: from the first connection to the end of the
            # last exchange, the pauses and slot waits between them included
            duration_ms = round((ended - started) * 1000, 3)
            outcome = SmtpProbe(
                replace(result, attempts=attempts, duration_ms=duration_ms), outcome.chain_der
            )
        return outcome

"""Politeness around the connections of a scan (SMTP probes, MTA-STS policy fetches):
exclusions, per-address and per-provider limits, AIMD back-off on throttling, the one
retry policy (probes/retry.py), and cheap waiting.

Composition, not policy: the limiter, the back-off rule and the slow-lane memory live in
``engine/``; the retry rule in ``probes/retry.py``.  The prober it wraps, the clock and the
pause are injected (``probes/interfaces.py``), so unit tests drive it with fakes.

Three different limits, because they limit different things (issue #12):

* **Politeness** (``address_limits``, ``provider_limits`` and the back-off): what an
  operator sees of us.  A connection holds its address's and provider's slots for its
  whole life, a pause before a retry holds none.
* **Active work** (``active``, ``--smtp-in-flight``): connections that are exchanging
  and handshaking, i.e. using CPU.  A connection that has not finished after
  ``active_grace`` seconds is waiting on a deadline (a silent or tarpitting host), and
  gives its active slot back; a host that was slow before never takes one.
* **Open sockets** (``sockets``, ``--max-open-connections``): every connection, waiting or
  not, so the process stays under its open-file limit.

So a silent host costs a socket and a timer, never a slot that other domains' probes need.

**Unreachable addresses** (``unreachable``): a probe whose connection itself failed after
its retry (SYNs dropped, or refused) leaves its (address, port) in a bounded memory, and a
later probe of another host name at that address is recorded with the same status, phase
connect, ``attempts`` 0 and a detail naming the probe that found it, without connecting.
While the first probe of an address is between a failed connect and its retry, other
probes of that address wait for its verdict instead of connecting in the pause (else N
names on one silent address would still cost N connect deadlines, one after another under
the per-address limit).  Only SMTP probes use it: a policy host is one name per domain.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar

from engine.backoff import AimdPolicy, SlowLane
from engine.exclude import ExcludeList
from engine.limits import KeyedLimiter
from engine.status import Status
from probes.interfaces import Clock, PolicyFetchFn, SmtpExchanger
from probes.mtasts.fetch import policy_url
from probes.mtasts.records import PolicyFetch
from probes.retry import (
    CorrelatedSignals,
    RetryPolicy,
    Unreachable,
    UnreachableAddresses,
    connect_failed,
    fetch_signal,
    smtp_signal,
)
from probes.smtp.probe import Exchange, SmtpProbe
from probes.smtp.records import Signal, SmtpAttempt, SmtpResult
from probes.transport import smtp_ref

__all__ = ["PoliteProber", "Unresponsive", "excluded_fetch", "excluded_result", "remembered_result"]

#: SMTP and policy connections doing work at once (exchanging, handshaking) across the whole
#: scan.  Each costs ~1 ms of client CPU for the handshake; more than this only queues inside
#: the kernel.  A connection still open after ACTIVE_GRACE is waiting on a deadline, not
#: working, and gives its slot back (probes/smtp/polite.py).
SMTP_IN_FLIGHT = 256

#: Seconds a connection counts as active work.  An exchange with an answering server takes a
#: few round trips (~1 s even at 200 ms RTT); one still open after this waits on a silent or
#: tarpitting host and holds only a socket and a timer from then on.
ACTIVE_GRACE = 5.0

#: Connections open at once, waiting or not: the process's open-file limit (20,000 hard
#: here, and typical) minus room for DNS sockets, the results file and the probe process's
#: pipes.  At 2% silent hosts, 1,000 domains/s and 45 s per silent host this is ~900.
MAX_OPEN_CONNECTIONS = 8192

#: Connections at once to one IP address: one, so no server sees us twice at a time.
PER_IP_CONNECTIONS = 1

#: Back-off (AIMD): after a throttle signal a provider's rate is halved, never
#: below this many connections per second ...
BACKOFF_FLOOR_RATE = 0.2
#: ... at most once per this many seconds (one burst of 421s is one signal) ...
BACKOFF_COOLDOWN = 5.0
#: ... and recovers by this many connections per second per quiet cooldown.
BACKOFF_INCREASE = 0.5

T = TypeVar("T")


def excluded_result(host: str, address: str, port: int) -> SmtpProbe:
    """The record for an MX address on the opt-out list: never contacted."""
    return SmtpProbe(SmtpResult.not_measured(host, address, port, Status.SKIPPED, "excluded"), ())


def excluded_fetch(domain: str, address: str) -> PolicyFetch:
    """The record for a policy host on the opt-out list: never contacted."""
    return PolicyFetch.not_fetched(policy_url(domain), address, Status.SKIPPED, "excluded")


def remembered_result(host: str, address: str, port: int, found: Unreachable, ttl: float) -> SmtpResult:
    """The record for a target at an address an earlier probe found unreachable: the same
    status in phase connect, no connection made (``attempts`` 0 unless this probe had made
    some before the verdict came), STARTTLS unknown."""
    when = dt.datetime.fromtimestamp(found.at, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    detail = (
        f"not connected: {found.status.value} at this address and port found by an earlier probe at "
        f"{when} ({found.ref}); remembered for {ttl:g} s"
    )
    return SmtpResult.not_measured(host, address, port, found.status, detail)


def _unreachable_memory() -> UnreachableAddresses:
    """A run's memory when the caller gives none (the scan passes its configured one)."""
    return UnreachableAddresses(ttl=1800.0, max_entries=100_000)


class Unresponsive:
    """The (host, address) targets waiting on a deadline right now: connections past their
    active grace, and pauses before a retry after silence.  Each has the wall-clock time by
    which it is settled at the latest; the progress line shows how many and the latest."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}
        self.peak = 0

    def wait(self, key: tuple[str, str], seconds: float) -> None:
        self._until[key] = self._clock() + seconds
        self.peak = max(self.peak, len(self._until))

    def done(self, key: tuple[str, str]) -> None:
        self._until.pop(key, None)

    def __len__(self) -> int:
        return len(self._until)

    def targets(self) -> list[tuple[str, str]]:
        return list(self._until)

    def latest(self) -> float | None:
        """The wall-clock time (epoch seconds) by which every waiting target is settled."""
        return max(self._until.values(), default=None)


@dataclass
class PoliteProber:
    prober: SmtpExchanger
    address_limits: KeyedLimiter
    provider_limits: KeyedLimiter
    backoff: AimdPolicy
    provider_of: Callable[[str], str | None]
    #: Connections doing work at once (``--smtp-in-flight``).
    active: asyncio.Semaphore
    #: Connections open at once, waiting or not (``--max-open-connections``).
    sockets: asyncio.Semaphore
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Seconds a connection may hold an active slot; longer, it is waiting on a deadline.
    active_grace: float = 5.0
    #: Timeouts and resets count against a provider only when correlated across its hosts.
    correlated: CorrelatedSignals = field(default_factory=lambda: CorrelatedSignals(hosts=5, window=60.0))
    slow_lane: SlowLane = field(default_factory=SlowLane)
    exclude: ExcludeList | None = None
    #: The latest an SMTP exchange / a policy fetch can last (the tail's deadlines).
    exchange_bound: float = 90.0
    fetch_bound: float = 30.0
    unresponsive: Unresponsive = field(default_factory=Unresponsive)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: Durations across retries (the attempts' own come from the prober).
    clock: Clock = time.perf_counter
    #: (address, port) where connecting failed after the retry policy (see the module docstring).
    unreachable: UnreachableAddresses = field(default_factory=_unreachable_memory)
    #: The verdicts pending: (address, port) -> resolved when the probe that owns it ends.
    _verdicts: dict[tuple[str, int], asyncio.Future[None]] = field(
        default_factory=dict, init=False, repr=False
    )

    def excluded(self, host: str, address: str) -> bool:
        return self.exclude is not None and (
            self.exclude.excludes_name(host) or self.exclude.excludes_address(address)
        )

    @asynccontextmanager
    async def slot(self, host: str, address: str) -> AsyncIterator[None]:
        """The politeness limits one connection to ``host`` at ``address`` waits for.

        Address first: waiting for one busy IP must not hold a provider-wide slot.
        """
        provider = self.provider_of(host) or host
        async with self.address_limits.hold(address), self.provider_limits.hold(provider), self.sockets:
            yield

    async def _connection(self, host: str, address: str, bound: float, work: Callable[[], Awaitable[T]]) -> T:
        """Run one connection's ``work`` under the slots (see ``_run``)."""
        async with self.slot(host, address):
            return await self._run((host, address), bound, work)

    async def _run(self, key: tuple[str, str], bound: float, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` (its slots held by the caller); after ``active_grace`` seconds it waits
        on its own deadline without an active slot (structured: the task is awaited or
        cancelled here, never left behind)."""
        if self.slow_lane.is_slow(key[0]):  # known to wait: never takes an active slot
            self.unresponsive.wait(key, bound)
            try:
                return await work()
            finally:
                self.unresponsive.done(key)
        task = asyncio.ensure_future(work())
        try:
            async with self.active:
                done, _ = await asyncio.wait({task}, timeout=self.active_grace)
            if done:
                return task.result()
            self.unresponsive.wait(key, max(0.0, bound - self.active_grace))
            try:
                return await task
            finally:
                self.unresponsive.done(key)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _attempt(
        self, host: str, address: str, port: int, claim: list[asyncio.Future[None]]
    ) -> Exchange | Unreachable:
        """One SMTP connection, unless (address, port) is known unreachable, or its verdict is
        pending at another probe (then wait for it outside the slots and look again).  A
        connect that failed claims the verdict (into ``claim``) before the address slot is
        released, so no other probe slips a connection into this one's retry pause."""
        target, key = (address, port), (host, address)
        while True:
            async with self.slot(host, address):
                pending = self._verdicts.get(target)
                if pending is None or pending in claim:
                    found = self.unreachable.get(address, port)
                    if found is not None:
                        return found
                    exchanged = await self._run(
                        key, self.exchange_bound, lambda: self.prober.exchange(host, address)
                    )
                    obs = exchanged.obs
                    if pending is None and not claim and connect_failed(obs.status, obs.phase):
                        claim.append(asyncio.get_running_loop().create_future())
                        self._verdicts[target] = claim[0]
                    return exchanged
            # the owner settles within its deadlines and one pause
            self.unresponsive.wait(key, 2 * self.exchange_bound + self.retry.delay)
            try:
                await asyncio.wait({pending})  # never cancels the owner's future
            finally:
                self.unresponsive.done(key)

    def _settle(
        self, address: str, port: int, claim: list[asyncio.Future[None]], last: SmtpResult | None
    ) -> None:
        """The probe owning ``claim`` has ended (or crashed, or was cancelled: ``last`` None):
        remember a connect failure, then wake the waiters."""
        if not claim:
            return
        if last is not None and last.attempts and connect_failed(last.status, last.phase):
            self.unreachable.note(address, port, last.status, smtp_ref(last))
        if self._verdicts.get((address, port)) is claim[0]:
            del self._verdicts[(address, port)]
        if not claim[0].done():
            claim[0].set_result(None)

    async def _pause(self, key: tuple[str, str], delay: float, bound: float) -> None:
        self.unresponsive.wait(key, delay + bound)
        try:
            await self.sleep(delay)
        finally:
            self.unresponsive.done(key)

    def _provider_signal(self, provider: str, host: str, signal: Signal, explicit: bool) -> None:
        """The back-off hears explicit throttles at once, timeouts and resets only correlated."""
        if explicit or (signal in (Signal.TIMEOUT, Signal.RESET) and self.correlated.observe(provider, host)):
            self.backoff.on_throttle(provider)
        elif signal is Signal.DEFINITE:
            self.backoff.on_success(provider)

    async def probe(self, host: str, address: str) -> SmtpProbe:
        port = self.prober.settings.port
        if self.excluded(host, address):
            return excluded_result(host, address, port)
        claim: list[asyncio.Future[None]] = []  # the verdict this probe owns, if any
        result: SmtpResult | None = None
        try:
            probed = await self._probe(host, address, port, claim)
            result = probed.result
            return probed
        finally:
            self._settle(address, port, claim, result)

    async def _probe(
        self, host: str, address: str, port: int, claim: list[asyncio.Future[None]]
    ) -> SmtpProbe:
        provider = self.provider_of(host) or host
        key = (host, address)
        started = self.clock()
        log: list[SmtpAttempt] = []
        while True:
            exchanged = await self._attempt(host, address, port, claim)
            if isinstance(exchanged, Unreachable):
                found = remembered_result(host, address, port, exchanged, self.unreachable.ttl)
                return SmtpProbe(replace(found, attempts=len(log), attempt_log=tuple(log)), ())
            # with the connection's slots already free
            outcome = await self.prober.analyse(exchanged)
            result = outcome.result
            signal = smtp_signal(result, first_contact=not log)
            log.append(SmtpAttempt(result.status, result.phase, result.last_code, signal, result.duration_ms))
            timed_out = result.status in (Status.IO_TIMEOUT, Status.CONNECTION_TIMEOUT)
            self.slow_lane.observe(host, greeting_delay=None, timed_out=timed_out)
            decision = self.retry.decide([a.signal for a in log])
            self._provider_signal(provider, host, signal, decision.provider_signal)
            if not decision.retry:
                break
            await self._pause(key, decision.delay, self.exchange_bound)
        # duration_ms spans the retries: from the first connection to the end of the last
        # exchange, the pauses and slot waits between them included
        duration_ms = round((self.clock() - started) * 1000, 3)
        final = replace(
            result,
            attempts=len(log),
            duration_ms=duration_ms if len(log) > 1 else result.duration_ms,
            greylisted=log[0].signal is Signal.GREYLIST and len(log) > 1,
            attempt_log=tuple(log),
        )
        return SmtpProbe(final, outcome.chain_der, outcome.host_line)

    async def fetch(
        self, fetcher: PolicyFetchFn, domain: str, address: str
    ) -> tuple[PolicyFetch, bytes | None]:
        """A policy fetch under the same exclusions, limits and retry policy as SMTP."""
        host = f"mta-sts.{domain}"
        if self.excluded(host, address):
            return excluded_fetch(domain, address), None
        provider = self.provider_of(host) or host
        signals: list[Signal] = []
        started = self.clock()
        while True:
            fetched, body = await self._connection(
                host, address, self.fetch_bound, lambda: fetcher(domain, address)
            )
            signal = fetch_signal(fetched)
            signals.append(signal)
            decision = self.retry.decide(signals)
            self._provider_signal(provider, host, signal, decision.provider_signal)
            if not decision.retry:
                break
            await self._pause((host, address), decision.delay, self.fetch_bound)
        if len(signals) > 1:
            fetched = replace(fetched, duration_ms=round((self.clock() - started) * 1000, 3))
        return fetched, body

"""Keyed limits: a concurrency slot plus a token bucket per key (a stage, a
provider, an IP address), held in a bounded LRU map, each with statistics.

The limiter only decides *when* work may start; adaptive back-off (halving a
rate after throttling) is a separate policy that calls ``set_rate``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["KeyedLimiter", "Limit", "LimitStats", "TokenBucket"]

Clock = Callable[[], float]

#: Idle keys kept: a scan of many self-hosted domains (each its own provider, its own
#: addresses) would otherwise keep a slot (~0.7 KB) per provider and per address for the whole
#: run.  Keys in use or backed off are kept beyond it; a released key returns at its limit.
DEFAULT_MAX_KEYS = 10_000
#: Slots looked at per new key when over the bound: if that many at the least recently used
#: end are all busy, the map stays over the bound until the next new key (never a full scan).
_EVICTION_TRIES = 64


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``concurrency`` holders at once and ``rate`` starts per second
    (``burst`` tokens banked); ``rate`` None means no rate limit."""

    concurrency: int
    rate: float | None = None
    burst: float = 1.0


@dataclass(frozen=True, slots=True)
class LimitStats:
    key: str
    concurrency: int
    rate: float | None
    in_flight: int
    peak_in_flight: int
    acquired: int
    waited: int
    wait_seconds: float


class TokenBucket:
    """Classic token bucket; time comes from an injectable clock."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def delay(self) -> float:
        """Take a token if one is there (0.0), else say how long until one is."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class _Slot:
    __slots__ = (
        "acquired",
        "bucket",
        "in_flight",
        "limit",
        "peak",
        "semaphore",
        "users",
        "wait_seconds",
        "waited",
    )

    def __init__(self, limit: Limit, clock: Clock) -> None:
        self.limit = limit
        self.semaphore = asyncio.Semaphore(limit.concurrency)
        self.bucket = TokenBucket(limit.rate, limit.burst, clock) if limit.rate else None
        self.in_flight = self.peak = self.acquired = self.waited = 0
        #: Inside ``hold`` (waiting for the semaphore or a token, or holding): never released.
        self.users = 0
        self.wait_seconds = 0.0


def _releasable(slot: _Slot) -> bool:
    """Idle, nobody waiting, and no rate of its own (back-off lowered or lifted it)."""
    if slot.users:
        return False
    configured = slot.limit.rate
    current = slot.bucket.rate if slot.bucket is not None else None
    return current == configured


class KeyedLimiter:
    """One slot per key, created on first use from ``limit_for(key)``.

    Idle slots beyond ``max_keys`` are evicted least-recently-used first; a slot
    that is in use, has waiters, or holds a rate ``set_rate`` lowered (back-off) is never
    evicted, so limits hold while work is running and a throttled key stays throttled.
    A released key comes back at its configured limit; ``evicted`` counts releases.
    """

    def __init__(
        self,
        limit_for: Callable[[Hashable], Limit],
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self._limit_for = limit_for
        self._max_keys = max_keys
        self._clock = clock
        self._sleep = sleep
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        #: Idle slots released for the bound, and what they had counted (for run totals).
        self.evicted = 0
        self.evicted_acquired = self.evicted_waited = 0

    def _slot(self, key: Hashable) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            # Room is made before the new slot goes in: it is about to be held, and releasing
            # it would let the key's next holder start on a second slot, past its concurrency.
            self._evict()
            slot = self._slots[key] = _Slot(self._limit_for(key), self._clock)
        else:
            self._slots.move_to_end(key)
        return slot

    def _evict(self) -> None:
        # From the least recently used end; a slot that must stay goes to the other end, so
        # each call looks at a few slots, not all of them (one new key per call in practice).
        tries = min(len(self._slots), _EVICTION_TRIES)
        while len(self._slots) >= self._max_keys and tries > 0:
            tries -= 1
            key, slot = next(iter(self._slots.items()))
            if _releasable(slot):
                del self._slots[key]
                self.evicted += 1
                self.evicted_acquired += slot.acquired
                self.evicted_waited += slot.waited
            else:
                self._slots.move_to_end(key)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        slot = self._slot(key)
        slot.users += 1
        try:
            async with self._held(slot):
                yield
        finally:
            slot.users -= 1

    @asynccontextmanager
    async def _held(self, slot: _Slot) -> AsyncIterator[None]:
        started = self._clock()
        waited = slot.semaphore.locked()
        await slot.semaphore.acquire()
        try:
            if slot.bucket is not None:
                while (delay := slot.bucket.delay()) > 0:
                    waited = True
                    await self._sleep(delay)  # type: ignore[misc]
            if waited:
                slot.waited += 1
                slot.wait_seconds += self._clock() - started
            slot.acquired += 1
            slot.in_flight += 1
            slot.peak = max(slot.peak, slot.in_flight)
        except BaseException:
            slot.semaphore.release()
            raise
        try:
            yield
        finally:
            slot.in_flight -= 1
            slot.semaphore.release()

    def set_rate(self, key: Hashable, rate: float | None) -> None:
        slot = self._slot(key)
        if rate is None:
            slot.bucket = None
        elif slot.bucket is None:
            slot.bucket = TokenBucket(rate, 1.0, self._clock)
        else:
            slot.bucket.rate = rate

    def statistics(self) -> list[LimitStats]:
        return [
            LimitStats(
                key=str(key),
                concurrency=slot.limit.concurrency,
                rate=slot.bucket.rate if slot.bucket else None,
                in_flight=slot.in_flight,
                peak_in_flight=slot.peak,
                acquired=slot.acquired,
                waited=slot.waited,
                wait_seconds=round(slot.wait_seconds, 3),
            )
            for key, slot in self._slots.items()
        ]

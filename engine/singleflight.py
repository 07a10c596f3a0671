"""Single-flight cache: the same key is never computed twice at once, and
answers worth keeping are kept in a bounded LRU.

MX hosts are shared by thousands of domains (the study's top provider serves a
third of all mail domains), so a scan that resolves ``aspmx.l.google.com`` once
instead of 20,000 times is both faster and politer.  Domain-specific questions
join in-flight work but are not retained (``retain=False``), which keeps memory
O(concurrency + shared names) instead of O(domains).

A caller that has used a value can ``replace`` it by a smaller one that still answers
later callers (the SMTP results of a host whose line is written: probes/hostcache.py),
and ``forget`` one it cannot use.  Entries beyond ``max_entries`` are evicted least
recently used first and counted (``evicted``): an evicted answer is only computed again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "SingleFlightStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class SingleFlightStats:
    hits: int
    joins: int
    misses: int
    entries: int
    in_flight: int
    #: Retained answers dropped for the bound (the least recently used first).
    evicted: int = 0
    #: Retained answers replaced by a smaller form (``replace``).
    compacted: int = 0


class _LeaderGone(Exception):
    """The task computing a shared value was cancelled; followers retry."""


class SingleFlight(Generic[K, V]):
    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self._max_entries = max_entries
        self._done: OrderedDict[K, V] = OrderedDict()
        self._running: dict[K, asyncio.Future[V]] = {}
        self._hits = self._joins = self._misses = self._evicted = self._compacted = 0

    async def get(self, key: K, compute: Callable[[], Awaitable[V]], *, retain: bool = True) -> V:
        while True:
            if key in self._done:
                self._done.move_to_end(key)
                self._hits += 1
                return self._done[key]
            running = self._running.get(key)
            if running is None:
                break
            self._joins += 1
            try:
                # shield: a follower's own cancellation must not cancel the shared future
                return await asyncio.shield(running)
            except _LeaderGone:
                continue
        self._misses += 1
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await compute()
        except asyncio.CancelledError:
            future.set_exception(_LeaderGone())
            future.exception()  # retrieved: followers may not exist, asyncio must not log it
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(value)
            if retain and self._max_entries:
                self._done[key] = value
                if len(self._done) > self._max_entries:
                    self._done.popitem(last=False)
                    self._evicted += 1
            return value
        finally:
            del self._running[key]

    def peek(self, key: K) -> V | None:
        """The retained answer for ``key``, if any (no recency update, not counted)."""
        return self._done.get(key)

    def replace(self, key: K, old: V, new: V) -> bool:
        """Retain ``new`` for ``key`` in place of ``old`` (same recency), only while ``old``
        itself is what is retained: an answer computed again since is never overwritten."""
        if self._done.get(key) is not old:
            return False
        self._done[key] = new
        self._compacted += 1
        return True

    def forget(self, key: K, old: V) -> None:
        """Drop the retained answer for ``key`` if it is ``old``: the next caller computes it again."""
        if self._done.get(key) is old:
            del self._done[key]

    def statistics(self) -> SingleFlightStats:
        return SingleFlightStats(
            hits=self._hits,
            joins=self._joins,
            misses=self._misses,
            entries=len(self._done),
            in_flight=len(self._running),
            evicted=self._evicted,
            compacted=self._compacted,
        )

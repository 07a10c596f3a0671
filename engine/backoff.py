"""Adaptive back-off: an AIMD policy that retunes a ``KeyedLimiter``'s rates,
and the slow-lane rule for tarpits.  Pure decisions over an injectable clock;
the only side effect is ``KeyedLimiter.set_rate``.

Theory of operation
-------------------
The adjust rule (one, like TCP congestion control and scrapy's AutoThrottle):

* **Multiplicative decrease.**  A throttle signal for a key (a 421 or 4xx
  "too many connections", a reset, a burst of timeouts) multiplies its rate by
  ``decrease`` (0.5: halve), never below ``floor``.  A burst of throttles from
  the connections already in flight when the provider started refusing is one
  event, not twenty: after a decrease, further throttles within ``cooldown``
  seconds are counted but change nothing.
* **Additive increase.**  A success for a key whose rate is below its base
  adds ``increase`` connections/s, at most once per ``increase_interval``
  seconds after the last change (so a decrease is followed by at least one
  quiet interval), never above the base rate.  Keys that never throttled cost
  one dict lookup per success.

A key whose configured limit has no rate (``base_rate_for`` gives None) starts
from ``unlimited_rate`` when it first throttles and gets its unlimited state
back (``set_rate(key, None)``) once it has recovered to that rate.

If the limiter evicts an idle key and recreates it at its base rate, the
policy's remembered rate is stale low; the next throttle halves from that
lower value, which errs on the polite side.

State is kept only while it matters: a key that has recovered to its base
rate and seen no change for ``release_after`` seconds (at least the cooldown
and the increase interval, so that a new throttle is treated exactly as it
would be with the state kept) is forgotten, its counts added to the run's totals
(``released``, ``released_throttles`` ...).  Without this a long scan keeps one
entry per provider that ever throttled, tens of thousands over a 10M list
(issue #17).  Releases happen lazily, when a throttle or a full recovery is
recorded: the hot path (a success for a key that never throttled) stays one
dict lookup.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from engine.limits import KeyedLimiter

__all__ = [
    "DEFAULT_GREETING_THRESHOLD",
    "DEFAULT_RELEASE_AFTER",
    "AimdPolicy",
    "BackoffStats",
    "SlowLane",
]

Clock = Callable[[], float]

#: Greeting delay (seconds from connect to the 220 banner) above which a host is
#: slow.  Ordinary MTAs greet within a second; greet-pause / tarpit setups
#: (Postfix postscreen, Exim's smtp_banner delays) wait 5-30 s; RFC 5321
#: §4.5.3.2 lets a client wait 5 minutes.  10 s keeps greylisting pauses of a
#: few seconds in the fast lane and every deliberate tarpit out of it.
DEFAULT_GREETING_THRESHOLD = 10.0

#: Seconds a key that recovered to its base rate stays in the statistics before it is
#: released (unless the cooldown or the increase interval is longer): a provider that
#: recovered a minute ago is still worth showing; the state of thousands that recovered
#: long ago is not worth keeping.
DEFAULT_RELEASE_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class BackoffStats:
    """Back-off state of one key.

    Fields:
      key: the limiter key (a provider name, an address), as text.
      rate: the current rate in connections per second (None: unlimited again).
      base_rate: the configured rate it recovers towards (None: unlimited).
      throttles: throttle signals seen, including those absorbed by the cooldown.
      decreases: times the rate was cut.
      increases: times the rate was raised back.
    """

    key: str
    rate: float | None
    base_rate: float | None
    throttles: int
    decreases: int
    increases: int


class _KeyState:
    __slots__ = ("base", "decreases", "increases", "last_change", "last_decrease", "rate", "throttles")

    def __init__(self, base: float | None) -> None:
        self.base = base
        self.rate: float | None = base
        self.throttles = self.decreases = self.increases = 0
        self.last_decrease = self.last_change = float("-inf")


class AimdPolicy:
    """Additive-increase / multiplicative-decrease over a ``KeyedLimiter``'s rates."""

    def __init__(
        self,
        limiter: KeyedLimiter,
        *,
        base_rate_for: Callable[[Hashable], float | None],
        floor: float,
        increase: float,
        decrease: float = 0.5,
        cooldown: float,
        increase_interval: float | None = None,
        unlimited_rate: float = 10.0,
        release_after: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if floor <= 0 or increase <= 0 or unlimited_rate <= 0:
            raise ValueError("floor, increase and unlimited_rate must be > 0")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be in (0, 1)")
        if cooldown < 0 or (increase_interval is not None and increase_interval < 0):
            raise ValueError("cooldown and increase_interval must be >= 0")
        self._limiter = limiter
        self._base_rate_for = base_rate_for
        self.floor = floor
        self.increase = increase
        self.decrease = decrease
        self.cooldown = cooldown
        self.increase_interval = cooldown if increase_interval is None else increase_interval
        self.unlimited_rate = unlimited_rate
        quiet = max(self.cooldown, self.increase_interval)
        if release_after is not None and release_after < quiet:
            raise ValueError("release_after must be >= cooldown and increase_interval")
        #: Seconds a recovered key stays known: a throttle after that starts afresh.
        self.release_after = max(DEFAULT_RELEASE_AFTER, quiet) if release_after is None else release_after
        self._clock = clock
        self._keys: dict[Hashable, _KeyState] = {}
        #: Keys back at their base rate, oldest recovery first (each with its time).
        self._recovered: OrderedDict[Hashable, float] = OrderedDict()
        #: Keys forgotten after recovering, and what they had counted (for run totals).
        self.released = 0
        self.released_throttles = self.released_decreases = self.released_increases = 0

    def rate(self, key: Hashable) -> float | None:
        """The rate this policy last set for ``key`` (its base rate if it never throttled)."""
        state = self._keys.get(key)
        return state.rate if state is not None else self._base_rate_for(key)

    def on_throttle(self, key: Hashable) -> bool:
        """Record a throttle signal; True if it cut the rate."""
        now = self._clock()
        self._release(now)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(self._base_rate_for(key))
        self._recovered.pop(key, None)
        state.throttles += 1
        if now - state.last_decrease < self.cooldown:
            return False  # same burst as the last cut
        current = state.rate if state.rate is not None else self.unlimited_rate
        new = max(self.floor, current * self.decrease)
        state.last_decrease = state.last_change = now
        if state.rate is not None and new >= state.rate:
            return False  # already at the floor
        state.rate = new
        state.decreases += 1
        self._limiter.set_rate(key, new)
        return True

    def on_success(self, key: Hashable) -> bool:
        """Record a success; True if it raised the rate."""
        state = self._keys.get(key)
        if state is None or state.rate is None:
            return False
        ceiling = state.base if state.base is not None else self.unlimited_rate
        if state.rate >= ceiling:
            return False
        now = self._clock()
        if now - state.last_change < self.increase_interval:
            return False
        state.rate = min(ceiling, state.rate + self.increase)
        state.last_change = now
        state.increases += 1
        if state.rate >= ceiling:
            if state.base is None:
                state.rate = None  # fully recovered: unlimited again, as configured
            self._recovered[key] = now
            self._release(now)
        self._limiter.set_rate(key, state.rate)
        return True

    def _release(self, now: float) -> None:
        """Forget keys that recovered at least ``release_after`` seconds ago."""
        recovered = self._recovered
        while recovered:
            key, since = next(iter(recovered.items()))
            if now - since < self.release_after:
                return
            del recovered[key]
            state = self._keys.pop(key)
            self.released += 1
            self.released_throttles += state.throttles
            self.released_decreases += state.decreases
            self.released_increases += state.increases

    def statistics(self) -> list[BackoffStats]:
        """One entry per key that throttled and has not been released since."""
        return [
            BackoffStats(
                key=str(key),
                rate=None if s.rate is None else round(s.rate, 3),
                base_rate=s.base,
                throttles=s.throttles,
                decreases=s.decreases,
                increases=s.increases,
            )
            for key, s in self._keys.items()
        ]


class SlowLane:
    """Decides which hosts go to the slow lane, and remembers them.

    Rule: a host is slow once it has taken longer than ``greeting_threshold``
    seconds to send its greeting, or has timed out in any phase (connect,
    banner, a reply, the TLS handshake).  It stays slow for the rest of the
    scan: tarpits do not speed up, and every later probe of the host (another
    domain's MX, a retry) should wait in the slow lane, with its own small
    concurrency limit and longer deadlines, instead of holding a fast slot.
    Remembers at most ``max_hosts`` hosts (oldest forgotten first).
    """

    def __init__(self, *, greeting_threshold: float = DEFAULT_GREETING_THRESHOLD, max_hosts: int = 100_000):
        if greeting_threshold <= 0 or max_hosts < 1:
            raise ValueError("greeting_threshold must be > 0 and max_hosts >= 1")
        self.greeting_threshold = greeting_threshold
        self._max_hosts = max_hosts
        self._slow: dict[str, None] = {}  # insertion-ordered set

    def classify(self, greeting_delay: float | None, timed_out: bool) -> bool:
        """The rule alone: is one observation slow?  (``greeting_delay`` None: no greeting seen.)"""
        return timed_out or (greeting_delay is not None and greeting_delay > self.greeting_threshold)

    def observe(self, host: str, *, greeting_delay: float | None, timed_out: bool = False) -> bool:
        """Record one observation of ``host``; True if the host is (now) slow."""
        if host in self._slow:
            return True
        if not self.classify(greeting_delay, timed_out):
            return False
        self._slow[host] = None
        if len(self._slow) > self._max_hosts:
            del self._slow[next(iter(self._slow))]
        return True

    def is_slow(self, host: str) -> bool:
        return host in self._slow

    def __len__(self) -> int:
        return len(self._slow)

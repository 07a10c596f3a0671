"""The one retry policy of every connection a scan makes (SMTP probes and MTA-STS policy
fetches): which outcomes deserve another connection, after what pause, and which tell us
something about a provider's patience rather than one host's.

Theory of operation
-------------------
Each attempt's outcome is first reduced to a ``Signal`` (``smtp_signal``,
``fetch_signal``: pure functions of the classified record), then ``RetryPolicy.decide``
looks at the signals of every attempt so far.  Two budgets, so that a host that
greylists and then times out is still judged on each:

* **Timeouts and resets** (``timeout_retries``, default 1): a host that said
  nothing is asked once more, after ``delay``.  A second silence is the
  finding (``timeout`` in its phase), never "no STARTTLS".
* **Transient refusals** (``transient_retries``, default 1): a 450/451 before
  EHLO completed on the first contact is greylisting (RFC 6647 §2.1: the
  client is expected to come back), retried after ``delay``; a 421 (RFC 5321
  §3.8: the server is closing the channel) or any later 4xx is a throttle,
  retried after ``delay`` doubled per throttle already seen.

Only a throttle is a provider-level signal by itself.  A timeout or a reset at
one host is evidence about that host; it lowers a provider's rate only when
many distinct hosts of the provider show it within a window
(``CorrelatedSignals``), so one silent self-hosted server never slows anyone.

``decide`` never sleeps and reads no clock: the caller owns the pause, which is
why the unit tests need no timers.

After the policy has run out, one more rule spares connections: a connect-level
failure (SYNs dropped: ``connection-timeout`` at connect; an RST:
``connection-refused``) is a property of the address and port, not of the host
name, so ``UnreachableAddresses`` remembers it for the run and later targets at
that address get the same classification without connecting (shared-hosting
addresses sit behind many MX names).  Silence after the TCP handshake is not
remembered: virtual hosts behind one address can behave differently.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from engine.status import Status
from probes.mtasts.fetch import timed_out
from probes.mtasts.records import PolicyFetch
from probes.smtp.records import Phase, Signal, SmtpResult
from probes.smtp.session import SMTP_CONNECT_TIMEOUT, SMTP_HOST_TIMEOUT, SMTP_TIMEOUT

__all__ = [
    "CorrelatedSignals",
    "Decision",
    "RetryPolicy",
    "Signal",
    "Unreachable",
    "UnreachableAddresses",
    "connect_failed",
    "fetch_signal",
    "smtp_signal",
]

#: Further connections after silence (a timeout or a reset), and after a transient refusal
#: (greylisting 450/451 on first contact; 421 or a later 4xx before EHLO): each kind at most this
#: many, in the one retry loop of probes/smtp/polite.py (the rule: RetryPolicy below).
#: One: a host silent twice is the finding; a second retry would add another full timeout to
#: the scan's tail for a share of hosts that answers a third time too small to measure.
SMTP_RETRIES = 1
#: Pause before a retry (a throttle's doubles with each throttle seen).  Greylisting servers
#: often want minutes (RFC 6647 §2.1 leaves it to them): those stay "application-error" with
#: greylisted true (the retry was refused too), rather than the whole scan waiting for them.
SMTP_RETRY_DELAY = 5.0

#: The latest a transient refusal (421, 450-452: _TRANSIENT_CODES) can come: it answers the
#: banner or EHLO, so the connect, banner and EHLO deadlines bound it (50 s).
SMTP_REFUSAL_WORST_CASE = min(SMTP_HOST_TIMEOUT, SMTP_CONNECT_TIMEOUT + 2 * SMTP_TIMEOUT)
#: One domain's configured worst case in seconds (README "What to expect on the Internet";
#: benchmarks/internet.py holds scans to it).  Its addresses are probed at once, and one
#: address costs at most 1 + 2 x SMTP_RETRIES connections (the retry loop of
#: probes/smtp/polite.py): SMTP_RETRIES + 1 that end at SMTP_HOST_TIMEOUT, SMTP_RETRIES
#: transient refusals, and a pause before each retry, a throttle's doubled per throttle
#: before it: 2 x 90 + 50 + 5 + 5 = 240 s.  A silent host (accepts, never greets) costs
#: 2 x SMTP_TIMEOUT + SMTP_RETRY_DELAY (45 s), one that drops SYNs 2 x SMTP_CONNECT_TIMEOUT
#: + SMTP_RETRY_DELAY (25 s).  The DNS lookups before, and waits for a provider's or an
#: address's slot, come on top.
DOMAIN_WORST_CASE = (
    (SMTP_RETRIES + 1) * SMTP_HOST_TIMEOUT
    + SMTP_RETRIES * SMTP_REFUSAL_WORST_CASE
    + SMTP_RETRIES * SMTP_RETRY_DELAY
    + sum(SMTP_RETRY_DELAY * 2**k for k in range(SMTP_RETRIES))
)
#: The most --smtp-retries accepts: every retry after silence waits a full timeout again.
MAX_SMTP_RETRIES = 10

#: (address, port) pairs where the TCP connection itself failed after the retry (SYNs dropped,
#: or refused) are remembered this long: a later MX host name at the same address is recorded
#: with the same status without connecting again (shared-hosting addresses sit behind many MX
#: names; on loopback every silent IPv6 host is ::1).  30 minutes outlasts a 100k scan's probes,
#: and an address that comes back is tried again after it.
UNREACHABLE_MEMORY_SECONDS = 1800.0
#: ... at most this many (least recently used forgotten first): ~200 bytes each.
UNREACHABLE_MEMORY_ENTRIES = 100_000

#: Timeouts and resets lower a provider's rate only when this many distinct hosts of the
#: provider show them within THROTTLE_CORRELATION_WINDOW seconds: one silent server is a
#: finding about that server, many at once are the provider shedding load (issue #12).
THROTTLE_CORRELATION_HOSTS = 5
THROTTLE_CORRELATION_WINDOW = 60.0


#: Timeout-like signals (the ``timeout_retries`` budget).
_SILENT = frozenset({Signal.TIMEOUT, Signal.RESET})
#: Transient refusals (the ``transient_retries`` budget).
_TRANSIENT = frozenset({Signal.THROTTLE, Signal.GREYLIST})
#: Greylisting answers (RFC 6647 §2.1 names 451 and also sees 450).
_GREYLIST_CODES = frozenset({450, 451})
#: Every "try again later" code before EHLO completed (RFC 5321 §4.2.2, §3.8).
_TRANSIENT_CODES = frozenset({421, 450, 451, 452})


def smtp_signal(result: SmtpResult, *, first_contact: bool) -> Signal:
    """The signal of one SMTP attempt; ``first_contact``: no earlier attempt to this address."""
    status, phase = result.status, result.phase
    if status is Status.APPLICATION_ERROR and phase in (Phase.BANNER, Phase.EHLO):
        code = result.last_code
        if code in _GREYLIST_CODES and first_contact:
            return Signal.GREYLIST
        if code in _TRANSIENT_CODES:
            return Signal.THROTTLE
        return Signal.DEFINITE
    if status in (Status.CONNECTION_TIMEOUT, Status.IO_TIMEOUT):
        # after a completed handshake the facts are in hand; a retry would only repeat them
        return Signal.DEFINITE if result.tls is not None else Signal.TIMEOUT
    if status is Status.CONNECTION_CLOSED and phase in (Phase.CONNECT, Phase.BANNER):
        return Signal.RESET
    return Signal.DEFINITE


def fetch_signal(fetch: PolicyFetch) -> Signal:
    """The signal of one policy fetch (an HTTP answer of any status is definite)."""
    if timed_out(fetch):
        return Signal.TIMEOUT
    if fetch.status is Status.CONNECTION_CLOSED and not fetch.tls_version:
        return Signal.RESET
    return Signal.DEFINITE


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an attempt.

    Fields:
      retry: connect again.
      delay: seconds to wait first (0 when not retrying).
      provider_signal: the outcome by itself says the provider wants us slower.
    """

    retry: bool
    delay: float
    provider_signal: bool


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Fields:
    timeout_retries: connections again after timeouts and resets (in all).
    transient_retries: connections again after greylisting and throttles (in all).
    delay: seconds before a retry; a throttle's doubles with each throttle already seen.
    """

    timeout_retries: int = 1
    transient_retries: int = 1
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.timeout_retries < 0 or self.transient_retries < 0 or self.delay < 0:
            raise ValueError("retries and delay must be >= 0")

    @property
    def max_attempts(self) -> int:
        """The most connections one target can cost."""
        return 1 + self.timeout_retries + self.transient_retries

    def worst_case_pause(self) -> float:
        """The longest total pause one target can cost between its attempts."""
        throttles = sum(self.delay * (1 << k) for k in range(self.transient_retries))
        return self.delay * self.timeout_retries + throttles

    def decide(self, signals: Sequence[Signal]) -> Decision:
        """After the attempts whose signals are ``signals`` (oldest first, at least one)."""
        last = signals[-1]
        throttle = last is Signal.THROTTLE
        if last in _SILENT:
            used = sum(1 for s in signals if s in _SILENT)
            if used <= self.timeout_retries:
                return Decision(True, self.delay, False)
        elif last in _TRANSIENT:
            used = sum(1 for s in signals if s in _TRANSIENT)
            if used <= self.transient_retries:
                throttles_before = sum(1 for s in signals[:-1] if s is Signal.THROTTLE)
                delay = self.delay * (1 << throttles_before) if throttle else self.delay
                return Decision(True, delay, throttle)
        return Decision(False, 0.0, throttle)


class CorrelatedSignals:
    """Timeouts and resets as a provider-level signal only when correlated: ``hosts`` distinct
    hosts of one provider within ``window`` seconds.  A self-hosted server is its own
    provider with one host, so its silence never cuts anyone's rate.  After firing, a
    provider's evidence starts afresh (the back-off's cooldown absorbs the burst anyway).
    Remembers at most ``max_providers`` providers (least recently signalled forgotten)."""

    def __init__(
        self,
        *,
        hosts: int,
        window: float,
        max_providers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if hosts < 2 or window <= 0 or max_providers < 1:
            raise ValueError("hosts must be >= 2, window > 0, max_providers >= 1")
        self.hosts = hosts
        self.window = window
        self._max = max_providers
        self._clock = clock
        self._seen: OrderedDict[Hashable, deque[tuple[float, str]]] = OrderedDict()

    def observe(self, provider: Hashable, host: str) -> bool:
        """A timeout or reset at ``host`` of ``provider``; True: treat it as a throttle signal."""
        now = self._clock()
        seen = self._seen.pop(provider, None) or deque()
        self._seen[provider] = seen
        while seen and seen[0][0] <= now - self.window:
            seen.popleft()
        if all(h != host for _, h in seen):
            seen.append((now, host))
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        if len(seen) >= self.hosts:
            seen.clear()
            return True
        return False


#: The statuses that say the address itself could not be connected to (in phase connect).
_UNREACHABLE = frozenset({Status.CONNECTION_TIMEOUT, Status.CONNECTION_REFUSED})


def connect_failed(status: Status, phase: Phase) -> bool:
    """The TCP connection itself failed: a property of (address, port), not of the host name."""
    return phase is Phase.CONNECT and status in _UNREACHABLE


@dataclass(frozen=True, slots=True)
class Unreachable:
    """An (address, port) found unreachable in this run.

    Fields:
      status: connection-timeout or connection-refused, as the probe that found it ended.
      at: when it was found (the memory's clock: epoch seconds by default).
      ref: the probe that found it (``smtp:host@address:port``).
    """

    status: Status
    at: float
    ref: str


class UnreachableAddresses:
    """(address, port) pairs where connecting failed after the retry policy ran out, each for
    ``ttl`` seconds; at most ``max_entries`` (the least recently used forgotten first), so a
    scan of millions of dead addresses stays bounded and an address that comes back is tried
    again after ``ttl``."""

    def __init__(self, *, ttl: float, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be > 0 and max_entries >= 1")
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._found: OrderedDict[tuple[str, int], Unreachable] = OrderedDict()

    def note(self, address: str, port: int, status: Status, ref: str) -> bool:
        """A probe of ``address``:``port`` ended with ``status`` at connect; True if remembered
        (only connect-level failures are)."""
        if status not in _UNREACHABLE:
            return False
        key = (address, port)
        self._found.pop(key, None)
        self._found[key] = Unreachable(status, self._clock(), ref)
        if len(self._found) > self._max:
            self._found.popitem(last=False)
        return True

    def get(self, address: str, port: int) -> Unreachable | None:
        """What an earlier probe found at ``address``:``port`` within ``ttl``, else None."""
        key = (address, port)
        found = self._found.get(key)
        if found is None:
            return None
        if self._clock() - found.at >= self.ttl:
            del self._found[key]
            return None
        self._found.move_to_end(key)
        return found

    def __len__(self) -> int:
        return len(self._found)

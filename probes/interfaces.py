"""The typed seams between the per-domain plan (``probes/plan.py``), the polite prober
(``probes/smtp/polite.py``) and what they drive: the resolver, the SMTP probe, the policy
fetch, the reverse lookup and the clock.

Callback protocols with positional-only parameters: any coroutine function of the right
shape is one (a bound method, a closure of the composition root, a fake in a unit test),
and mypy and "go to definition" see the same signature at every call site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Coroutine
from typing import Any, Protocol

from probes.dns.probe import Lookup
from probes.dns.records import MxHost
from probes.dns.reverse import PtrResult
from probes.mtasts.records import PolicyFetch
from probes.smtp.probe import Exchange, SmtpProbe

__all__ = [
    "Clock",
    "Lookup",
    "PolicyFetchFn",
    "PortSettings",
    "PtrLookupFn",
    "SmtpExchanger",
    "SmtpProbeFn",
    "StaleProbe",
    "WallClock",
]


class SmtpProbeFn(Protocol):
    """One SMTP probe of (MX host, address), its politeness and retries included."""

    def __call__(self, host: str, address: str, /) -> Coroutine[Any, Any, SmtpProbe]: ...


class PolicyFetchFn(Protocol):
    """One MTA-STS policy fetch of a domain from an address of ``mta-sts.<domain>``: the
    classified fetch and the body when one was read."""

    def __call__(
        self, domain: str, address: str, /
    ) -> Coroutine[Any, Any, tuple[PolicyFetch, bytes | None]]: ...


class PtrLookupFn(Protocol):
    """The reverse DNS of an address."""

    def __call__(self, address: str, /) -> Coroutine[Any, Any, PtrResult]: ...


class StaleProbe(Protocol):
    """Whether a shared probe of ``host`` cannot serve this domain and must be made again
    (e.g. kept without its chain while this domain's DANE needs it)."""

    def __call__(self, probe: SmtpProbe, host: MxHost, /) -> bool: ...


class WallClock(Protocol):
    """The time certificates and DANE records are judged at (timezone-aware UTC)."""

    def __call__(self) -> dt.datetime: ...


class Clock(Protocol):
    """Seconds on a monotonic clock (durations)."""

    def __call__(self) -> float: ...


class PortSettings(Protocol):
    """What the polite prober reads of a prober's settings."""

    @property
    def port(self) -> int: ...


class SmtpExchanger(Protocol):
    """An SMTP prober split in two: the connection (``exchange``, under the caller's slots)
    and the certificate work (``analyse``, after the slots are released)."""

    @property
    def settings(self) -> PortSettings: ...

    async def exchange(self, host: str, address: str, /) -> Exchange: ...

    async def analyse(self, done: Exchange, /) -> SmtpProbe: ...

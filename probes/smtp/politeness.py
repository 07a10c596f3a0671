"""The figures of a scan's politeness (``PoliteProber``) as the progress line and
``--summary-json`` show them: what the limits, the back-off and the slow lane are doing.

A summary of a big scan must stay small: one entry per provider would be tens of
thousands (most self-hosted domains are their own provider), so the totals cover every
key and only the top ``SUMMARY_TOP_PROVIDERS`` are listed by name.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.backoff import AimdPolicy, BackoffStats
from probes.smtp.polite import PoliteProber

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["SUMMARY_TOP_PROVIDERS", "Politeness", "politeness_of"]

#: Politeness statistics as the summary and the progress line show them.
Politeness = dict[str, Any]

#: Providers (and back-off keys) listed by name in --summary-json, the most connections
#: first; the rest are in its totals.
SUMMARY_TOP_PROVIDERS = 50

_Stats = TypeVar("_Stats", bound="DataclassInstance")


def politeness_of(polite: PoliteProber, *, full: bool = True) -> Politeness:
    """The progress line's figures; ``full`` adds the summary's totals per provider and back-off
    key, with the top ``SUMMARY_TOP_PROVIDERS`` of each.

    ``unresponsive``: the (host, address) targets waiting on a deadline now (at most
    ``--max-open-connections`` of them, plus those pausing before a retry), ``deadline``: the
    wall-clock time by which all of them are settled."""
    backoff = polite.backoff.statistics()
    waiting = polite.unresponsive
    brief: Politeness = {
        "slow_hosts": len(polite.slow_lane),
        "throttled": sum(b.throttles for b in backoff) + polite.backoff.released_throttles,
        "unresponsive": [list(key) for key in waiting.targets()],
        "deadline": waiting.latest(),
        "peak_unresponsive": waiting.peak,
    }
    if not full:
        return brief
    return {
        "providers": _provider_totals(polite),
        "backoff": _backoff_totals(polite.backoff, backoff),
        **brief,
    }


def _provider_totals(polite: PoliteProber) -> Politeness:
    """Totals over every provider, and the top ones by connections."""
    limiter = polite.provider_limits
    slots = limiter.statistics()
    return {
        "keys": len(slots),
        "released": limiter.evicted,
        "connections": sum(s.acquired for s in slots) + limiter.evicted_acquired,
        "waited": sum(s.waited for s in slots) + limiter.evicted_waited,
        "top": _top(slots, key=lambda s: (s.acquired, s.wait_seconds)),
    }


def _backoff_totals(policy: AimdPolicy, backoff: list[BackoffStats]) -> Politeness:
    """Totals over the run (keys released after recovering included), the top keys held."""
    return {
        "keys": len(backoff),
        "released": policy.released,
        "throttles": sum(b.throttles for b in backoff) + policy.released_throttles,
        "decreases": sum(b.decreases for b in backoff) + policy.released_decreases,
        "top": _top(backoff, key=lambda b: (b.throttles, b.decreases)),
    }


def _top(stats: Iterable[_Stats], key: Callable[[_Stats], tuple[float, float]]) -> list[dict[str, Any]]:
    """The ``SUMMARY_TOP_PROVIDERS`` largest of ``stats`` (dataclasses) by ``key``, as the
    summary lists them."""
    return [dataclasses.asdict(s) for s in heapq.nlargest(SUMMARY_TOP_PROVIDERS, stats, key=key)]

"""--summary-json lists the top providers by connections and totals over all of them, not one
entry per provider (issue #17: tens of thousands in a big scan)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from engine.backoff import AimdPolicy, SlowLane
from engine.limits import KeyedLimiter, Limit
from probes.smtp.polite import Unresponsive
from probes.smtp.politeness import SUMMARY_TOP_PROVIDERS, politeness_of


def test_summary_has_totals_and_only_the_top_providers_by_connections() -> None:
    async def main() -> dict[str, Any]:
        limiter = KeyedLimiter(lambda _k: Limit(4), max_keys=100)
        for i in range(300):
            for _ in range(1 + (i % 7 == 0) * i):  # every 7th provider is busier, by its index
                async with limiter.hold(f"p{i}.test"):
                    pass
        backoff = AimdPolicy(limiter, base_rate_for=lambda _k: None, floor=0.2, increase=0.5, cooldown=5.0)
        for i in range(80):
            backoff.on_throttle(f"p{i}.test")
        polite = SimpleNamespace(
            provider_limits=limiter, backoff=backoff, slow_lane=SlowLane(), unresponsive=Unresponsive()
        )
        return politeness_of(polite, full=True)  # type: ignore[arg-type]

    summary = asyncio.run(main())
    providers = summary["providers"]
    connections = 300 + sum(i for i in range(300) if i % 7 == 0)
    assert providers["connections"] == connections  # released providers still counted
    assert providers["released"] > 0 and providers["keys"] <= 100 + 80
    top = providers["top"]
    assert len(top) == SUMMARY_TOP_PROVIDERS
    assert top[0]["key"] == "p294.test" and [t["acquired"] for t in top] == sorted(
        (t["acquired"] for t in top), reverse=True
    )
    assert summary["backoff"]["keys"] == 80 and summary["backoff"]["throttles"] == 80
    assert len(summary["backoff"]["top"]) == SUMMARY_TOP_PROVIDERS

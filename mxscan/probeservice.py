"""The connection-making probes of a scan (SMTP STARTTLS, MTA-STS policy fetch) with
their politeness, either in the scan's own event loop or in a probe process.

In a probe process (the default; ``--inline-probes`` keeps them in-process) the
scan process keeps DNS, assembly and the results file and the probe process
makes every connection, so the two use two cores.  Everything global about
connections lives on one side: the per-address and per-provider limits, the
back-off and the slow lane all live with the probes.  The scan's single-flight
cache sits in front of the calls, so each (host, address) still crosses over
once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import uvloop

from engine.offload import Handler, Offload, Setup, fork_offload
from mxscan.config import ScanConfig
from mxscan.wiring import policy_fetcher, polite_prober
from probes.mtasts.fetch import PolicyFetcher
from probes.mtasts.records import PolicyFetch
from probes.providers import ProviderMap
from probes.services import for_the_wire
from probes.smtp.polite import PoliteProber
from probes.smtp.politeness import Politeness, politeness_of
from probes.smtp.probe import SmtpProbe, SmtpProber

__all__ = ["InlineServices", "Politeness", "probe_process"]


class InlineServices:
    """The probes in the running event loop: every connection goes through one PoliteProber."""

    def __init__(self, polite: PoliteProber, fetcher: PolicyFetcher) -> None:
        self.polite = polite
        self.fetcher = fetcher

    @classmethod
    async def start(
        cls, cfg: ScanConfig, prober: SmtpProber, providers: ProviderMap, stack: contextlib.AsyncExitStack
    ) -> InlineServices:
        """``stack`` closes the policy fetcher."""
        fetcher = await stack.enter_async_context(policy_fetcher(cfg, prober))
        return cls(polite_prober(cfg, prober, providers), fetcher)

    async def probe_smtp(self, host: str, address: str, /) -> SmtpProbe:
        return await self.polite.probe(host, address)

    async def fetch_policy(self, domain: str, address: str, /) -> tuple[PolicyFetch, bytes | None]:
        return await self.polite.fetch(self.fetcher.fetch, domain, address)

    def politeness(self, full: bool = True) -> Politeness:
        return politeness_of(self.polite, full=full)

    async def refresh(self, full: bool = False) -> None:
        return None  # the figures live here


def probe_process(cfg: ScanConfig, prober: SmtpProber, providers: ProviderMap) -> Offload:
    """Fork the probe process (before the scan's event loop starts)."""

    async def setup(stack: contextlib.AsyncExitStack) -> Mapping[str, Handler]:
        services = await InlineServices.start(cfg, prober, providers, stack)

        async def politeness(full: bool) -> Politeness:
            return services.politeness(full)

        async def probe_smtp(host: str, address: str) -> SmtpProbe:
            return for_the_wire(await services.probe_smtp(host, address))

        return {"smtp": probe_smtp, "policy": services.fetch_policy, "politeness": politeness}

    handlers: Setup = setup
    return fork_offload(handlers, uvloop.run)

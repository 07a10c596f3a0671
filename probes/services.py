"""The connection-making probes (SMTP STARTTLS, MTA-STS policy fetch) as a scan calls them:
in its own event loop or in a probe process (``engine.offload``), through one protocol.

A probe process's results cross over slim (``for_the_wire``): the full result travels as
its encoded host line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Protocol

from engine.offload import Offload, OffloadError
from probes.domain import host_line
from probes.mtasts.records import PolicyFetch
from probes.smtp.politeness import Politeness
from probes.smtp.probe import SmtpProbe

__all__ = ["ProbeServices", "RemoteServices", "for_the_wire", "keep_politeness_current"]


class ProbeServices(Protocol):
    """The connection-making probes as the scan calls them, in its own loop or a probe process."""

    async def probe_smtp(self, host: str, address: str, /) -> SmtpProbe:
        """One SMTP probe of (MX host, address), politeness and retries included."""

    async def fetch_policy(self, domain: str, address: str, /) -> tuple[PolicyFetch, bytes | None]:
        """One MTA-STS policy fetch, under the same politeness as SMTP."""

    def politeness(self, full: bool = True) -> Politeness:
        """Politeness statistics (``full``: with the per-provider totals); from a probe
        process, the latest ``refresh`` brought, whatever ``full`` says."""

    async def refresh(self, full: bool = False) -> None:
        """Bring the statistics over from a probe process (nothing to do in-process)."""


class RemoteServices:
    """Calls into a started probe process."""

    def __init__(self, offload: Offload) -> None:
        self.offload = offload
        self.latest: Politeness = {}

    async def probe_smtp(self, host: str, address: str, /) -> SmtpProbe:
        result: SmtpProbe = await self.offload.call("smtp", host, address)
        return result

    async def fetch_policy(self, domain: str, address: str, /) -> tuple[PolicyFetch, bytes | None]:
        result: tuple[PolicyFetch, bytes | None] = await self.offload.call("policy", domain, address)
        return result

    def politeness(self, full: bool = True) -> Politeness:
        return self.latest

    async def refresh(self, full: bool = False) -> None:
        self.latest.update(await self.offload.call("politeness", full))


def for_the_wire(probe: SmtpProbe) -> SmtpProbe:
    """The full result travels as its encoded host line; the object keeps only what the scan
    process reads (status, STARTTLS, PKIX, the host and address for the reference): unpickling
    a chain's certificate facts would cost the scan process more than the probe saved it."""
    slim = dataclasses.replace(probe.result, tls=None, ehlo=None, ehlo_tls=None)
    return SmtpProbe(slim, probe.chain_der, host_line(probe.result))


async def keep_politeness_current(services: ProbeServices) -> None:
    """Refreshes the progress line's politeness figures every second (from a probe process,
    where they live) until cancelled."""
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(OffloadError):
            await services.refresh()

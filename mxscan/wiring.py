"""Building the probes and their politeness from a ScanConfig: the pieces
``scan.py`` wires into the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.backoff import AimdPolicy, SlowLane
from engine.limits import KeyedLimiter, Limit
from engine.limitspec import PER_IP_KEY, provider_limit
from mxscan import defaults
from mxscan.config import ScanConfig
from mxscan.pipeline import PolicyFetchFn
from mxscan.politeness import PoliteProber, excluded_fetch
from probes.mtasts.fetch import FetchTimeouts, PolicyFetcher
from probes.mtasts.records import PolicyFetch
from probes.providers import ProviderMap
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import IntermediatePool

__all__ = ["policy_fetcher", "polite_fetch", "polite_prober", "smtp_prober"]


def smtp_prober(cfg: ScanConfig) -> SmtpProber | None:
    if cfg.dns_only:
        return None
    store = load_trust_store(cfg.trust_store, cfg.ca_files)
    pool = IntermediatePool()
    if cfg.intermediates_file:
        from cryptography.hazmat.primitives.serialization import Encoding
        from cryptography.x509 import load_pem_x509_certificates

        certs = load_pem_x509_certificates(Path(cfg.intermediates_file).read_bytes())
        pool = IntermediatePool.from_der([c.public_bytes(Encoding.DER) for c in certs])
    assert cfg.ehlo_name is not None
    settings = SmtpSettings(
        ehlo_name=cfg.ehlo_name,
        trust_store=store,
        port=cfg.smtp_port,
        timeouts=SmtpTimeouts(
            connect=cfg.smtp_connect_timeout,
            banner=cfg.smtp_timeout,
            command=cfg.smtp_timeout,
            handshake=cfg.smtp_timeout,
            total=cfg.smtp_host_timeout,
        ),
        retries=0,  # retries happen in PoliteProber, under the provider's back-off
        retry_delay=cfg.smtp_retry_delay,
        keep_certs=cfg.keep_certs,
        intermediates=pool,
    )
    return SmtpProber(settings)


def policy_fetcher(cfg: ScanConfig, prober: SmtpProber) -> PolicyFetcher:
    """The MTA-STS policy fetcher: the SMTP probe's trust store, the scan's HTTPS port,
    per-phase deadlines from the SMTP ones (the same servers' patience)."""
    return PolicyFetcher(
        trust_store=prober.settings.trust_store,
        intermediates=prober.settings.intermediates,
        port=cfg.https_port,
        timeouts=FetchTimeouts(
            connect=cfg.smtp_connect_timeout,
            tls=cfg.smtp_timeout,
            headers=cfg.smtp_timeout,
            body=cfg.smtp_timeout,
            total=defaults.HTTPS_TOTAL_TIMEOUT,
        ),
    )


def polite_prober(cfg: ScanConfig, prober: SmtpProber, providers: ProviderMap) -> PoliteProber:
    table = cfg.limits
    per_ip = table.get(PER_IP_KEY, Limit(concurrency=cfg.per_ip_connections))
    address_limits = KeyedLimiter(lambda _key: per_ip)
    provider_limits = KeyedLimiter(lambda key: provider_limit(table, str(key)))
    backoff = AimdPolicy(
        provider_limits,
        base_rate_for=lambda key: provider_limit(table, str(key)).rate,
        floor=defaults.BACKOFF_FLOOR_RATE,
        increase=defaults.BACKOFF_INCREASE,
        cooldown=defaults.BACKOFF_COOLDOWN,
    )
    return PoliteProber(
        prober=prober,
        address_limits=address_limits,
        provider_limits=provider_limits,
        backoff=backoff,
        slow_lane=SlowLane(),
        fast_lane=asyncio.Semaphore(cfg.smtp_in_flight),
        slow_lane_slots=asyncio.Semaphore(defaults.SLOW_LANE_SLOTS),
        provider_of=providers.provider_of,
        exclude=cfg.exclude,
        throttle_retries=cfg.smtp_retries,
        throttle_delay=cfg.smtp_retry_delay,
    )


def polite_fetch(polite: PoliteProber, fetcher: PolicyFetcher) -> PolicyFetchFn:
    """Policy fetches obey the same exclusions and per-address/per-provider limits as SMTP."""

    async def fetch(domain: str, address: str) -> tuple[PolicyFetch, bytes | None]:
        host = f"mta-sts.{domain}"
        if polite.excluded(host, address):
            return excluded_fetch(domain, address), None
        async with polite.slot(host, address):
            return await fetcher.fetch(domain, address)

    return fetch

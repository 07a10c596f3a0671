"""Building the probes and their politeness from a ScanConfig: the pieces
``scan.py`` wires into the engine."""

from __future__ import annotations

import asyncio

from engine.backoff import AimdPolicy
from engine.limits import KeyedLimiter, Limit
from engine.limitspec import PER_IP_KEY, provider_limit
from mxscan.config import ScanConfig
from probes.mtasts.fetch import HTTPS_PHASE_TIMEOUT, HTTPS_TOTAL_TIMEOUT, FetchTimeouts, PolicyFetcher
from probes.providers import ProviderMap
from probes.retry import (
    THROTTLE_CORRELATION_HOSTS,
    THROTTLE_CORRELATION_WINDOW,
    UNREACHABLE_MEMORY_ENTRIES,
    UNREACHABLE_MEMORY_SECONDS,
    CorrelatedSignals,
    RetryPolicy,
    UnreachableAddresses,
)
from probes.smtp.polite import (
    ACTIVE_GRACE,
    BACKOFF_COOLDOWN,
    BACKOFF_FLOOR_RATE,
    BACKOFF_INCREASE,
    PoliteProber,
)
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import IntermediatePool, Verifier

__all__ = ["policy_fetcher", "polite_prober", "retry_policy", "smtp_prober"]


def smtp_prober(cfg: ScanConfig) -> SmtpProber | None:
    if cfg.dns_only:
        return None
    store = load_trust_store(cfg.trust_store, cfg.ca_files)
    assert cfg.ehlo_name is not None
    settings = SmtpSettings(
        ehlo_name=cfg.ehlo_name,
        # The scan's one verifier, shared with the policy fetcher.
        verifier=Verifier(store, IntermediatePool.from_der(cfg.intermediates)),
        port=cfg.smtp_port,
        timeouts=SmtpTimeouts(
            connect=cfg.smtp_connect_timeout,
            banner=cfg.smtp_timeout,
            command=cfg.smtp_timeout,
            handshake=cfg.smtp_timeout,
            total=cfg.smtp_host_timeout,
        ),
        keep_certs=cfg.keep_certs,
    )
    return SmtpProber(settings)


def policy_fetcher(cfg: ScanConfig, prober: SmtpProber) -> PolicyFetcher:
    """The MTA-STS policy fetcher: the SMTP probe's verifier, the scan's HTTPS port,
    per-phase deadlines at most the SMTP ones (short SMTP deadlines shorten fetches too)."""
    phase = min(cfg.smtp_timeout, HTTPS_PHASE_TIMEOUT)
    return PolicyFetcher(
        verifier=prober.settings.verifier,
        port=cfg.https_port,
        timeouts=FetchTimeouts(
            connect=cfg.smtp_connect_timeout,
            tls=phase,
            headers=phase,
            body=phase,
            total=HTTPS_TOTAL_TIMEOUT,
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
        floor=BACKOFF_FLOOR_RATE,
        increase=BACKOFF_INCREASE,
        cooldown=BACKOFF_COOLDOWN,
    )
    return PoliteProber(
        prober=prober,
        address_limits=address_limits,
        provider_limits=provider_limits,
        backoff=backoff,
        provider_of=providers.provider_of,
        active=asyncio.Semaphore(cfg.smtp_in_flight),
        sockets=asyncio.Semaphore(cfg.max_open_connections),
        retry=retry_policy(cfg),
        active_grace=ACTIVE_GRACE,
        correlated=CorrelatedSignals(hosts=THROTTLE_CORRELATION_HOSTS, window=THROTTLE_CORRELATION_WINDOW),
        exclude=cfg.exclude,
        exchange_bound=cfg.smtp_host_timeout,
        fetch_bound=min(cfg.smtp_host_timeout, HTTPS_TOTAL_TIMEOUT),
        unreachable=UnreachableAddresses(
            ttl=UNREACHABLE_MEMORY_SECONDS, max_entries=UNREACHABLE_MEMORY_ENTRIES
        ),
    )


def retry_policy(cfg: ScanConfig) -> RetryPolicy:
    """The one retry policy of SMTP probes and policy fetches (probes/retry.py)."""
    return RetryPolicy(
        timeout_retries=cfg.smtp_retries, transient_retries=cfg.smtp_retries, delay=cfg.smtp_retry_delay
    )

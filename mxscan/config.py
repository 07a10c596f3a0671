"""The frozen configuration of one scan, built by the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.exclude import ExcludeList
from engine.limits import Limit
from engine.limitspec import default_limits
from mxscan import defaults
from report.openmetrics import METRICS_INTERVAL, METRICS_TOP

__all__ = ["ScanConfig"]


@dataclass(frozen=True, slots=True)
class ScanConfig:
    domains: str
    out: Path
    resolver: tuple[str, int]
    fresh: bool = False
    concurrency: int = defaults.CONCURRENCY
    max_parked: int = defaults.MAX_PARKED
    dns_in_flight: int = defaults.DNS_IN_FLIGHT
    dns_timeout: float = defaults.DNS_TIMEOUT
    dns_attempts: int = defaults.DNS_ATTEMPTS
    preflight_signed: str = defaults.PREFLIGHT_SIGNED_NAME
    preflight_bogus: str = defaults.PREFLIGHT_BOGUS_NAME
    require_validation: bool = False
    grace: float = defaults.SHUTDOWN_GRACE
    progress: str = "auto"  # auto | tty | plain | off
    dns_only: bool = False
    ehlo_name: str | None = None
    smtp_port: int = defaults.SMTP_PORT
    smtp_in_flight: int = defaults.SMTP_IN_FLIGHT
    #: SMTP and policy connections in the scan's own process instead of a probe process.
    inline_probes: bool = False
    max_open_connections: int = defaults.MAX_OPEN_CONNECTIONS
    per_ip_connections: int = defaults.PER_IP_CONNECTIONS
    max_addresses_per_host: int = defaults.MAX_ADDRESSES_PER_HOST
    max_addresses_per_domain: int = defaults.MAX_ADDRESSES_PER_DOMAIN
    smtp_connect_timeout: float = defaults.SMTP_CONNECT_TIMEOUT
    smtp_timeout: float = defaults.SMTP_TIMEOUT
    smtp_host_timeout: float = defaults.SMTP_HOST_TIMEOUT
    smtp_retries: int = defaults.SMTP_RETRIES
    smtp_retry_delay: float = defaults.SMTP_RETRY_DELAY
    ipv6: bool = True
    trust_store: str = "mozilla"
    ca_files: tuple[str, ...] = ()
    intermediates_file: str | None = None
    keep_certs: bool = False
    providers_file: str | None = None
    retry_unknown: bool = False
    contact: str = ""
    https_port: int = defaults.HTTPS_PORT
    exclude: ExcludeList | None = None
    limits: dict[str, Limit] = field(default_factory=default_limits)
    summary_json: Path | None = None
    #: --metrics: an OpenMetrics textfile rewritten during and at the end of the scan.
    metrics: Path | None = None
    metrics_interval: float = METRICS_INTERVAL
    metrics_top: int = METRICS_TOP
    extra: dict[str, str] = field(default_factory=dict)
    #: Egress pre-flight targets as (host or address, port); empty: the defaults on --smtp-port.
    egress_check: tuple[tuple[str, int], ...] = ()
    skip_egress_check: bool = False

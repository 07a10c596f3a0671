"""The frozen configuration of one scan: every ``mxscan scan`` option, declared once.

Each field is its own command-line option (``engine.options.option``): the flag, the
value type that validates it, the default (named, with its reason, in ``defaults`` or
beside the probe that applies it) and the help line. ``mxscan/cli.py`` makes the parser
from this class and the config from the parsed arguments; the field order is the order
``mxscan scan --help`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from engine.exclude import ExcludeList
from engine.limits import Limit
from engine.limitspec import PER_IP_KEY, load_limits_toml, parse_limit_spec
from engine.options import endpoint, option, port, prepare_output, seconds, whole
from mxscan import defaults
from probes.dns.client import DNS_ATTEMPTS, DNS_IN_FLIGHT, DNS_TIMEOUT, MAX_DNS_ATTEMPTS
from probes.dns.preflight import PREFLIGHT_BOGUS_NAME, PREFLIGHT_SIGNED_NAME
from probes.egress import parse_target
from probes.mtasts.fetch import HTTPS_PORT
from probes.plan import MAX_ADDRESSES_PER_DOMAIN, MAX_ADDRESSES_PER_HOST
from probes.providers import default_limits, read_provider_toml
from probes.retry import MAX_SMTP_RETRIES, SMTP_RETRIES, SMTP_RETRY_DELAY
from probes.smtp.polite import ACTIVE_GRACE, MAX_OPEN_CONNECTIONS, PER_IP_CONNECTIONS, SMTP_IN_FLIGHT
from probes.smtp.session import SMTP_CONNECT_TIMEOUT, SMTP_HOST_TIMEOUT, SMTP_PORT, SMTP_TIMEOUT
from probes.tls.truststore import read_certificates
from report.openmetrics import METRICS_INTERVAL, METRICS_TOP
from scaleout.cluster import parse_cluster
from scaleout.shard import parse_shard, shard_limits

__all__ = ["ScanConfig"]

POLITE = "politeness"
SMTP = "SMTP STARTTLS"


# The loads below read what an option names now, before any work: a file that cannot be
# used is a usage error said with its flag (engine.options.config_from).


def _exclude(path: str | None, _values: Mapping[str, Any]) -> ExcludeList | None:
    return ExcludeList.from_file(path) if path else None


def _provider_overrides(path: str | None, _values: Mapping[str, Any]) -> str | None:
    return read_provider_toml(path) if path else None


def _provider_limits(specs: tuple[str, ...], _values: Mapping[str, Any]) -> tuple[tuple[str, Limit], ...]:
    return tuple(parse_limit_spec(spec) for spec in specs)


def _limits(path: str | None, values: Mapping[str, Any]) -> dict[str, Limit]:
    """The limit table: built-in defaults < --limits file < --provider-limit < --per-ip-connections."""
    limits = default_limits()
    if path:
        limits.update(load_limits_toml(path))
    limits.update(values["provider_limits"])
    if values["per_ip_connections"] != PER_IP_CONNECTIONS:
        limits[PER_IP_KEY] = Limit(concurrency=values["per_ip_connections"])
    return shard_limits(limits, values["shard"][1]) if values["shard"] else limits


def _ca_files(paths: tuple[str, ...], _values: Mapping[str, Any]) -> tuple[str, ...]:
    for path in paths:
        read_certificates(path)  # the trust store reads them again when the SMTP prober is made
    return paths


def _intermediates(path: str | None, _values: Mapping[str, Any]) -> tuple[bytes, ...]:
    return tuple(cert.public_bytes(Encoding.DER) for cert in read_certificates(path)) if path else ()


def _egress_targets(targets: tuple[str, ...], values: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    return tuple(parse_target(target, values["smtp_port"]) for target in targets)


@dataclass(frozen=True, slots=True)
class ScanConfig:
    domains: str = option(
        "domains",
        metavar="DOMAINS",
        help="domain list (UTF-8 or UTF-16 with BOM; any line endings): text, Radar CSV, Tranco CSV; "
        "a file, a pipe such as <(zcat list.gz), or - for stdin, read once",
    )
    out: Path = option(
        "--out", "-o", required=True, parse=Path, help="results file (NDJSON); also the checkpoint"
    )
    resolver: tuple[str, int] = option(
        "--resolver",
        parse=endpoint(53),
        default=("127.0.0.1", 53),
        help="validating DNS resolver HOST[:PORT] (default 127.0.0.1:53)",
    )
    fresh: bool = option(
        "--fresh", action="store_true", default=False, help="discard an existing results file and start over"
    )
    retry_unknown: bool = option(
        "--retry-unknown",
        action="store_true",
        default=False,
        contradicts=("fresh",),
        help="re-probe, in place, the domains whose results were unknown (timeouts, throttling, SERVFAIL)",
    )
    #: (K, N): this scan measures shard K of N of the list (scaleout.shard); None: the whole list.
    shard: tuple[int, int] | None = option(
        "--shard",
        parse=parse_shard,
        metavar="K/N",
        default=None,
        help="measure only shard K of N of the list (a stable hash of each name: N machines with the "
        "same list and options split it the same way), with 1/N of every provider and address "
        "limit (connections rounded down, at least 1; rates divided); join the N files with "
        "mxscan merge",
    )
    #: "local:N" or a Ray cluster's address: the scan runs over a Ray cluster (scaleout.cluster).
    cluster: str | None = option(
        "--cluster",
        parse=parse_cluster,
        metavar="local:N|ADDRESS",
        default=None,
        contradicts=("shard", "retry_unknown", "metrics", "summary_json"),
        help="scan over a Ray cluster (pip install 'mxscan[ray]'): local:N starts one here with N scan "
        "workers, HOST:PORT joins a running one; one results file, politeness global over the cluster",
    )
    concurrency: int = option(
        "--concurrency", parse=whole(1), default=defaults.CONCURRENCY, help="domains in flight"
    )
    max_parked: int = option(
        "--max-parked",
        parse=whole(0),
        default=defaults.MAX_PARKED,
        help="domains waiting on connection limits that do not count against --concurrency",
    )
    dns_in_flight: int = option(
        "--dns-in-flight", parse=whole(1), default=DNS_IN_FLIGHT, help="DNS queries in flight"
    )
    dns_timeout: float = option(
        "--dns-timeout", parse=seconds, default=DNS_TIMEOUT, help="seconds per DNS attempt"
    )
    dns_attempts: int = option(
        "--dns-attempts",
        parse=whole(1, MAX_DNS_ATTEMPTS),
        default=DNS_ATTEMPTS,
        help="attempts per query",
    )
    preflight_signed: str = option(
        "--preflight-signed",
        default=PREFLIGHT_SIGNED_NAME,
        help="a DNSSEC-signed name the resolver must answer with AD=1 (default: the root)",
    )
    preflight_bogus: str = option(
        "--preflight-bogus",
        default=PREFLIGHT_BOGUS_NAME,
        help="a deliberately bogus name the resolver must SERVFAIL (default: dnssec-failed.org)",
    )
    require_validation: bool = option(
        "--require-validation",
        action="store_true",
        default=False,
        help="exit non-zero instead of scanning unless the pre-flight proves that the resolver validates "
        "DNSSEC (an inconclusive check is refused too)",
    )
    grace: float = option(
        "--grace", parse=seconds, default=defaults.SHUTDOWN_GRACE, help="seconds to finish after Ctrl-C"
    )
    progress: str = option(
        "--progress", choices=("auto", "tty", "plain", "off"), default="auto", help="progress display"
    )
    summary_json: Path | None = option(
        "--summary-json",
        parse=Path,
        default=None,
        check=prepare_output,  # now, not after a scan of hours: the totals have somewhere to go
        help="write run totals (counts, DNS and cache statistics) to this file",
    )
    metrics: Path | None = option(
        "--metrics",
        parse=Path,
        metavar="FILE",
        default=None,
        check=prepare_output,
        help="keep an OpenMetrics textfile (node_exporter textfile collector) of the report's figures "
        "current during the scan and write it at the end (see mxscan report --format openmetrics)",
    )
    metrics_interval: float = option(
        "--metrics-interval",
        parse=seconds,
        default=METRICS_INTERVAL,
        help=f"seconds between rewrites of --metrics during the scan (default {METRICS_INTERVAL:g})",
    )
    metrics_top: int = option(
        "--metrics-top",
        parse=whole(1),
        default=METRICS_TOP,
        help=f"providers with their own series in --metrics (default {METRICS_TOP})",
    )
    #: The --providers file's text (TOML).
    provider_overrides: str | None = option(
        "--providers",
        metavar="TOML",
        load=_provider_overrides,
        default=None,
        help="extra provider attribution overrides ([[override]] suffix = ..., provider = ...)",
    )
    exclude: ExcludeList | None = option(
        "--exclude",
        metavar="FILE",
        load=_exclude,
        default=None,
        group=POLITE,
        help="opt-out list: domains, MX hosts (suffix match), IP addresses or CIDR ranges; never contacted",
    )
    provider_limits: tuple[tuple[str, Limit], ...] = option(
        "--provider-limit",
        action="append",
        metavar="NAME=C[/Ts]",
        load=_provider_limits,
        default=(),
        group=POLITE,
        help="per-provider limit, e.g. google.com=8/2s: 8 connections at once and 8 new per 2 s; repeatable",
    )
    limits: dict[str, Limit] = option(
        "--limits",
        metavar="TOML",
        load=_limits,
        factory=default_limits,
        group=POLITE,
        help='limits file: [limits] "google.com" = "8/2s"; [default] provider/ip',
    )
    dns_only: bool = option(
        "--dns-only",
        action="store_true",
        default=False,
        group=SMTP,
        help="measure DNS only: no SMTP or HTTPS connections",
    )
    ehlo_name: str | None = option(
        "--ehlo-name",
        default=None,
        group=SMTP,
        help="the name mxscan gives in EHLO (required for SMTP; or MXSCAN_EHLO_NAME). Use a name that "
        "identifies your scanner and leads to a contact page",
    )
    contact: str = option(
        "--contact",
        default="",
        metavar="URL",
        group=SMTP,
        help="where operators learn about the scan and opt out; logged in every record",
    )
    smtp_port: int = option(
        "--smtp-port", parse=port, default=SMTP_PORT, group=SMTP, help="SMTP port (default 25)"
    )
    inline_probes: bool = option(
        "--inline-probes",
        action="store_true",
        default=False,
        group=SMTP,
        help="make SMTP and policy connections in the scan process itself (default: a second "
        "process makes them, so the scan uses two cores)",
    )
    smtp_in_flight: int = option(
        "--smtp-in-flight",
        parse=whole(1),
        default=SMTP_IN_FLIGHT,
        group=SMTP,
        help="SMTP and policy connections doing work at once; one waiting on a silent host "
        f"gives its slot back after {ACTIVE_GRACE:g} s (default {SMTP_IN_FLIGHT})",
    )
    max_open_connections: int = option(
        "--max-open-connections",
        parse=whole(1, 16_384),
        default=MAX_OPEN_CONNECTIONS,
        group=SMTP,
        help="connections open at once, waiting or working; keep under the open-file limit "
        f"(default {MAX_OPEN_CONNECTIONS})",
    )
    max_addresses_per_host: int = option(
        "--max-addresses-per-host",
        parse=whole(1),
        default=MAX_ADDRESSES_PER_HOST,
        group=SMTP,
        help="addresses probed per MX host and address family; the rest are recorded as not "
        f"probed (default {MAX_ADDRESSES_PER_HOST})",
    )
    max_addresses_per_domain: int = option(
        "--max-addresses-per-domain",
        parse=whole(1),
        default=MAX_ADDRESSES_PER_DOMAIN,
        group=SMTP,
        help="addresses probed per domain over its MX hosts in preference order; the rest are "
        f"recorded as not probed (default {MAX_ADDRESSES_PER_DOMAIN})",
    )
    per_ip_connections: int = option(
        "--per-ip-connections",
        parse=whole(1),
        default=PER_IP_CONNECTIONS,
        group=SMTP,
        help="connections at once to one IP address (default 1)",
    )
    smtp_connect_timeout: float = option(
        "--smtp-connect-timeout",
        parse=seconds,
        default=SMTP_CONNECT_TIMEOUT,
        group=SMTP,
        help="seconds",
    )
    smtp_timeout: float = option(
        "--smtp-timeout",
        parse=seconds,
        default=SMTP_TIMEOUT,
        group=SMTP,
        help="seconds per SMTP phase (banner, each command, TLS handshake)",
    )
    smtp_host_timeout: float = option(
        "--smtp-host-timeout",
        parse=seconds,
        default=SMTP_HOST_TIMEOUT,
        group=SMTP,
        help="seconds for the whole exchange with one address (default 90)",
    )
    smtp_retries: int = option(
        "--smtp-retries",
        parse=whole(0, MAX_SMTP_RETRIES),
        default=SMTP_RETRIES,
        group=SMTP,
        help="connections again after a timeout or reset, and again after greylisting or a 421 "
        f"(each kind at most this many; default {SMTP_RETRIES})",
    )
    smtp_retry_delay: float = option(
        "--smtp-retry-delay",
        parse=seconds,
        default=SMTP_RETRY_DELAY,
        group=SMTP,
        help=f"pause before a retry in seconds, doubled per 421 (default {SMTP_RETRY_DELAY:g})",
    )
    https_port: int = option(
        "--https-port",
        parse=port,
        default=HTTPS_PORT,
        group=SMTP,
        help="MTA-STS policy port (default 443)",
    )
    ipv6: bool = option(
        "--no-ipv6",
        action="store_false",
        default=True,
        group=SMTP,
        help="probe only the IPv4 addresses of MX hosts",
    )
    #: Egress pre-flight targets as (host or address, port); empty: the defaults on --smtp-port.
    egress_check: tuple[tuple[str, int], ...] = option(
        "--egress-check",
        action="append",
        metavar="HOST[:PORT]",
        load=_egress_targets,
        default=(),
        group=SMTP,
        help="egress pre-flight target (name or address, port default --smtp-port); repeatable; "
        "default: the MX hosts of the largest mailbox providers",
    )
    skip_egress_check: bool = option(
        "--skip-egress-check",
        action="store_true",
        default=False,
        group=SMTP,
        help="do not test outbound port 25 before scanning (recorded as skipped)",
    )
    trust_store: str = option(
        "--trust-store",
        choices=("mozilla", "system", "none"),
        default="mozilla",
        group=SMTP,
        help="roots for PKIX verification: Mozilla's (certifi), the OS bundle, or none (only --ca-file)",
    )
    ca_files: tuple[str, ...] = option(
        "--ca-file",
        action="append",
        load=_ca_files,
        default=(),
        group=SMTP,
        help="extra trusted root(s), PEM; repeatable",
    )
    #: The --intermediates bundle's certificates (DER).
    intermediates: tuple[bytes, ...] = option(
        "--intermediates",
        metavar="INTERMEDIATES",
        load=_intermediates,
        default=(),
        group=SMTP,
        help="PEM bundle of known intermediate CAs: tells 'incomplete-chain' from 'unknown-issuer'",
    )
    keep_certs: bool = option(
        "--keep-certs",
        action="store_true",
        default=False,
        group=SMTP,
        help="store presented chains as PEM in the results",
    )

"""The ``mxscan`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.exclude import ExcludeList
from engine.limits import Limit
from engine.limitspec import PER_IP_KEY, default_limits, load_limits_toml, parse_limit_spec
from engine.options import Parser, prepare_output, seconds, whole
from engine.options import port as port_number
from mxscan import __version__, defaults
from report.commands import add_parsers as add_report_parsers
from report.openmetrics import METRICS_INTERVAL, METRICS_TOP

__all__ = ["main"]


def _endpoint(text: str) -> tuple[str, int]:
    """``127.0.0.1``, ``127.0.0.1:5353``, ``[::1]:53`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "53"
    if not host:
        raise argparse.ArgumentTypeError(f"must be HOST[:PORT] (e.g. 127.0.0.1:53), got {text!r}")
    try:
        number = port_number(port)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be HOST[:PORT] with a port 1-65535, got {text!r}") from None
    return host, number


def _scan_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scan", help="measure the domains in a list, resumably, into an NDJSON results file")
    p.add_argument(
        "domains",
        metavar="DOMAINS",
        help="domain list (UTF-8 or UTF-16 with BOM; any line endings): text, Radar CSV, Tranco CSV; "
        "a file, a pipe such as <(zcat list.gz), or - for stdin, read once",
    )
    p.add_argument("--out", "-o", required=True, type=Path, help="results file (NDJSON); also the checkpoint")
    p.add_argument(
        "--resolver",
        type=_endpoint,
        default=("127.0.0.1", 53),
        help="validating DNS resolver HOST[:PORT] (default 127.0.0.1:53)",
    )
    p.add_argument("--fresh", action="store_true", help="discard an existing results file and start over")
    p.add_argument(
        "--retry-unknown",
        action="store_true",
        help="re-probe, in place, the domains whose results were unknown (timeouts, throttling, SERVFAIL)",
    )
    p.add_argument("--concurrency", type=whole(1), default=defaults.CONCURRENCY, help="domains in flight")
    p.add_argument(
        "--max-parked",
        type=whole(0),
        default=defaults.MAX_PARKED,
        help="domains waiting on connection limits that do not count against --concurrency",
    )
    p.add_argument(
        "--dns-in-flight", type=whole(1), default=defaults.DNS_IN_FLIGHT, help="DNS queries in flight"
    )
    p.add_argument(
        "--dns-timeout", type=seconds, default=defaults.DNS_TIMEOUT, help="seconds per DNS attempt"
    )
    p.add_argument(
        "--dns-attempts",
        type=whole(1, defaults.MAX_DNS_ATTEMPTS),
        default=defaults.DNS_ATTEMPTS,
        help="attempts per query",
    )
    p.add_argument(
        "--preflight-signed",
        default=defaults.PREFLIGHT_SIGNED_NAME,
        help="a DNSSEC-signed name the resolver must answer with AD=1 (default: the root)",
    )
    p.add_argument(
        "--preflight-bogus",
        default=defaults.PREFLIGHT_BOGUS_NAME,
        help="a deliberately bogus name the resolver must SERVFAIL (default: dnssec-failed.org)",
    )
    p.add_argument(
        "--require-validation",
        action="store_true",
        help="exit non-zero instead of scanning unless the pre-flight proves that the resolver validates "
        "DNSSEC (an inconclusive check is refused too)",
    )
    p.add_argument(
        "--grace",
        type=seconds,
        default=defaults.SHUTDOWN_GRACE,
        help="seconds to finish after Ctrl-C",
    )
    p.add_argument(
        "--progress", choices=["auto", "tty", "plain", "off"], default="auto", help="progress display"
    )
    p.add_argument(
        "--summary-json", type=Path, help="write run totals (counts, DNS and cache statistics) to this file"
    )
    p.add_argument(
        "--metrics",
        type=Path,
        metavar="FILE",
        help="keep an OpenMetrics textfile (node_exporter textfile collector) of the report's figures "
        "current during the scan and write it at the end (see mxscan report --format openmetrics)",
    )
    p.add_argument(
        "--metrics-interval",
        type=seconds,
        default=METRICS_INTERVAL,
        help=f"seconds between rewrites of --metrics during the scan (default {METRICS_INTERVAL:g})",
    )
    p.add_argument(
        "--metrics-top",
        type=whole(1),
        default=METRICS_TOP,
        help=f"providers with their own series in --metrics (default {METRICS_TOP})",
    )
    p.add_argument(
        "--providers",
        metavar="TOML",
        help="extra provider attribution overrides ([[override]] suffix = ..., provider = ...)",
    )
    polite = p.add_argument_group("politeness")
    polite.add_argument(
        "--exclude",
        metavar="FILE",
        help="opt-out list: domains, MX hosts (suffix match), IP addresses or CIDR ranges; never contacted",
    )
    polite.add_argument(
        "--provider-limit",
        action="append",
        default=[],
        metavar="NAME=C[/Ts]",
        help="per-provider limit, e.g. google.com=8/2s: 8 connections at once and 8 new per 2 s; repeatable",
    )
    polite.add_argument(
        "--limits", metavar="TOML", help='limits file: [limits] "google.com" = "8/2s"; [default] provider/ip'
    )
    smtp = p.add_argument_group("SMTP STARTTLS")
    smtp.add_argument(
        "--dns-only", action="store_true", help="measure DNS only: no SMTP or HTTPS connections"
    )
    smtp.add_argument(
        "--ehlo-name",
        default=None,
        help="the name mxscan gives in EHLO (required for SMTP; or MXSCAN_EHLO_NAME). Use a name that "
        "identifies your scanner and leads to a contact page",
    )
    smtp.add_argument(
        "--contact",
        default="",
        metavar="URL",
        help="where operators learn about the scan and opt out; logged in every record",
    )
    smtp.add_argument(
        "--smtp-port", type=port_number, default=defaults.SMTP_PORT, help="SMTP port (default 25)"
    )
    smtp.add_argument(
        "--inline-probes",
        action="store_true",
        help="make SMTP and policy connections in the scan process itself (default: a second "
        "process makes them, so the scan uses two cores)",
    )
    smtp.add_argument(
        "--smtp-in-flight",
        type=whole(1),
        default=defaults.SMTP_IN_FLIGHT,
        help="SMTP and policy connections doing work at once; one waiting on a silent host "
        f"gives its slot back after {defaults.ACTIVE_GRACE:g} s (default {defaults.SMTP_IN_FLIGHT})",
    )
    smtp.add_argument(
        "--max-open-connections",
        type=whole(1, 16_384),
        default=defaults.MAX_OPEN_CONNECTIONS,
        help="connections open at once, waiting or working; keep under the open-file limit "
        f"(default {defaults.MAX_OPEN_CONNECTIONS})",
    )
    smtp.add_argument(
        "--max-addresses-per-host",
        type=whole(1),
        default=defaults.MAX_ADDRESSES_PER_HOST,
        help="addresses probed per MX host and address family; the rest are recorded as not "
        f"probed (default {defaults.MAX_ADDRESSES_PER_HOST})",
    )
    smtp.add_argument(
        "--max-addresses-per-domain",
        type=whole(1),
        default=defaults.MAX_ADDRESSES_PER_DOMAIN,
        help="addresses probed per domain over its MX hosts in preference order; the rest are "
        f"recorded as not probed (default {defaults.MAX_ADDRESSES_PER_DOMAIN})",
    )
    smtp.add_argument(
        "--per-ip-connections",
        type=whole(1),
        default=defaults.PER_IP_CONNECTIONS,
        help="connections at once to one IP address (default 1)",
    )
    smtp.add_argument(
        "--smtp-connect-timeout", type=seconds, default=defaults.SMTP_CONNECT_TIMEOUT, help="seconds"
    )
    smtp.add_argument(
        "--smtp-timeout",
        type=seconds,
        default=defaults.SMTP_TIMEOUT,
        help="seconds per SMTP phase (banner, each command, TLS handshake)",
    )
    smtp.add_argument(
        "--smtp-host-timeout",
        type=seconds,
        default=defaults.SMTP_HOST_TIMEOUT,
        help="seconds for the whole exchange with one address (default 90)",
    )
    smtp.add_argument(
        "--smtp-retries",
        type=whole(0, defaults.MAX_SMTP_RETRIES),
        default=defaults.SMTP_RETRIES,
        help="connections again after a timeout or reset, and again after greylisting or a 421 "
        f"(each kind at most this many; default {defaults.SMTP_RETRIES})",
    )
    smtp.add_argument(
        "--smtp-retry-delay",
        type=seconds,
        default=defaults.SMTP_RETRY_DELAY,
        help=f"pause before a retry in seconds, doubled per 421 (default {defaults.SMTP_RETRY_DELAY:g})",
    )
    smtp.add_argument(
        "--https-port",
        type=port_number,
        default=defaults.HTTPS_PORT,
        help="MTA-STS policy port (default 443)",
    )
    smtp.add_argument("--no-ipv6", action="store_true", help="probe only the IPv4 addresses of MX hosts")
    smtp.add_argument(
        "--egress-check",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="egress pre-flight target (name or address, port default --smtp-port); repeatable; "
        "default: the MX hosts of the largest mailbox providers",
    )
    smtp.add_argument(
        "--skip-egress-check",
        action="store_true",
        help="do not test outbound port 25 before scanning (recorded as skipped)",
    )
    smtp.add_argument(
        "--trust-store",
        choices=["mozilla", "system", "none"],
        default="mozilla",
        help="roots for PKIX verification: Mozilla's (certifi), the OS bundle, or none (only --ca-file)",
    )
    smtp.add_argument("--ca-file", action="append", default=[], help="extra trusted root(s), PEM; repeatable")
    smtp.add_argument(
        "--intermediates",
        help="PEM bundle of known intermediate CAs: tells 'incomplete-chain' from 'unknown-issuer'",
    )
    smtp.add_argument(
        "--keep-certs", action="store_true", help="store presented chains as PEM in the results"
    )


def _politeness(args: argparse.Namespace) -> tuple[ExcludeList | None, dict[str, Limit]]:
    """The opt-out list and the limit table: built-in defaults < --limits file < --provider-limit."""
    exclude = ExcludeList.from_file(args.exclude) if args.exclude else None
    limits = default_limits()
    if args.limits:
        limits.update(load_limits_toml(args.limits))
    limits.update(parse_limit_spec(spec) for spec in args.provider_limit)
    if args.per_ip_connections != defaults.PER_IP_CONNECTIONS:
        limits[PER_IP_KEY] = Limit(concurrency=args.per_ip_connections)
    return exclude, limits


def _providers(args: argparse.Namespace) -> int:
    from probes.providers import ProviderMapError, default_psl_path, load_provider_map, update_psl

    try:
        if args.providers_command == "update":
            update_psl(args.source)
            print(f"stored {args.source} as {default_psl_path()}; later scans attribute providers with it")
            return 0
        extra = Path(args.providers).read_text() if args.providers else None
        providers = load_provider_map(extra)
    except (OSError, ProviderMapError) as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return 2
    for host in args.hosts:
        print(f"{host}\t{providers.provider_of(host) or '-'}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="mxscan", description="Measure whether email to a list of domains is confidential in transit."
    )
    parser.add_argument("--version", action="version", version=f"mxscan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _scan_parser(sub)
    tb = sub.add_parser(
        "testbed", help="the local test world: up | down | status | stats | truth", add_help=False
    )
    tb.add_argument("args", nargs=argparse.REMAINDER)
    add_report_parsers(sub)
    prov = sub.add_parser(
        "providers", help="provider attribution: look up hosts, update the Public Suffix List"
    )
    prov_sub = prov.add_subparsers(dest="providers_command", required=True)
    update = prov_sub.add_parser(
        "update",
        help="store a downloaded Public Suffix List (https://publicsuffix.org/list/public_suffix_list.dat)",
    )
    update.add_argument("--from", dest="source", required=True, metavar="FILE", help="the downloaded list")
    lookup = prov_sub.add_parser("lookup", help="print the provider of each host name")
    lookup.add_argument("hosts", nargs="+")
    lookup.add_argument("--providers", metavar="TOML", help="extra overrides, as for scan")
    schema = sub.add_parser("schema", help="print the JSON Schema of a results line")
    schema.add_argument("--out", type=Path, help="write to a file instead of stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["testbed"]:  # argparse.REMAINDER would refuse a leading option such as --help
        from testbed.cli import main as testbed_main

        return testbed_main(argv[1:])
    args = _build_parser().parse_args(argv)
    if hasattr(args, "handler"):  # report, diff, trend
        return int(args.handler(args))
    if args.command == "scan":
        from mxscan.config import ScanConfig
        from mxscan.scan import run_scan

        if args.retry_unknown and args.fresh:
            print("mxscan: --retry-unknown and --fresh contradict each other", file=sys.stderr)
            return 2
        try:
            exclude, limits = _politeness(args)
            from probes.egress import parse_target

            egress_check = tuple(parse_target(t, args.smtp_port) for t in args.egress_check)
        except (OSError, ValueError) as exc:
            print(f"mxscan: {exc}", file=sys.stderr)
            return 2
        # Checked now, not after a scan of hours: the totals have somewhere to go.
        problem = prepare_output(args.summary_json) if args.summary_json is not None else None
        if problem:
            print(f"mxscan: --summary-json: {problem}", file=sys.stderr)
            return 2
        problem = prepare_output(args.metrics) if args.metrics is not None else None
        if problem:
            print(f"mxscan: --metrics: {problem}", file=sys.stderr)
            return 2

        return run_scan(
            ScanConfig(
                domains=args.domains,
                out=args.out,
                resolver=args.resolver,
                fresh=args.fresh,
                concurrency=args.concurrency,
                max_parked=args.max_parked,
                dns_in_flight=args.dns_in_flight,
                dns_timeout=args.dns_timeout,
                dns_attempts=args.dns_attempts,
                preflight_signed=args.preflight_signed,
                preflight_bogus=args.preflight_bogus,
                require_validation=args.require_validation,
                grace=args.grace,
                progress=args.progress,
                dns_only=args.dns_only,
                ehlo_name=args.ehlo_name,
                smtp_port=args.smtp_port,
                smtp_in_flight=args.smtp_in_flight,
                inline_probes=args.inline_probes,
                per_ip_connections=args.per_ip_connections,
                max_open_connections=args.max_open_connections,
                max_addresses_per_host=args.max_addresses_per_host,
                max_addresses_per_domain=args.max_addresses_per_domain,
                smtp_connect_timeout=args.smtp_connect_timeout,
                smtp_timeout=args.smtp_timeout,
                smtp_host_timeout=args.smtp_host_timeout,
                smtp_retries=args.smtp_retries,
                smtp_retry_delay=args.smtp_retry_delay,
                ipv6=not args.no_ipv6,
                trust_store=args.trust_store,
                ca_files=tuple(args.ca_file),
                intermediates_file=args.intermediates,
                keep_certs=args.keep_certs,
                providers_file=args.providers,
                retry_unknown=args.retry_unknown,
                contact=args.contact,
                egress_check=egress_check,
                skip_egress_check=args.skip_egress_check,
                https_port=args.https_port,
                exclude=exclude,
                limits=limits,
                summary_json=args.summary_json,
                metrics=args.metrics,
                metrics_interval=args.metrics_interval,
                metrics_top=args.metrics_top,
            )
        )
    if args.command == "testbed":
        from testbed.cli import main as testbed_main

        return testbed_main(args.args)
    if args.command == "providers":
        return _providers(args)
    if args.command == "schema":
        from mxscan.schema import schema_text

        text = schema_text()
        if args.out is None:
            sys.stdout.write(text)
            return 0
        try:
            problem = prepare_output(args.out)
            if problem is None:
                args.out.write_text(text)
        except OSError as exc:
            problem = f"cannot write {args.out}: {exc.strerror or exc}"
        if problem:
            print(f"mxscan: {problem}", file=sys.stderr)
            return 2
        return 0
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

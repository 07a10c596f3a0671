"""The ``mxscan`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.options import OptionError, Parser, add_options, config_from, prepare_output
from mxscan import __version__
from mxscan.config import ScanConfig
from report.commands import add_parsers as add_report_parsers
from scaleout.commands import add_parsers as add_merge_parser

__all__ = ["main"]


def _providers(args: argparse.Namespace) -> int:
    from probes import providers as attribution

    try:
        if args.providers_command == "update":
            attribution.update_psl(args.source)
            stored = attribution.default_psl_path()
            print(f"stored {args.source} as {stored}; later scans attribute providers with it")
            return 0
        extra = attribution.read_provider_toml(args.providers) if args.providers else None
        providers = attribution.load_provider_map(extra)
    except (OSError, attribution.ProviderMapError) as exc:
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
    scan = sub.add_parser(
        "scan", help="measure the domains in a list, resumably, into an NDJSON results file"
    )
    add_options(scan, ScanConfig)
    scan.set_defaults(handler=_scan)
    tb = sub.add_parser(
        "testbed", help="the local test world: up | down | status | stats | truth", add_help=False
    )
    tb.add_argument("args", nargs=argparse.REMAINDER)
    tb.set_defaults(handler=lambda args: _testbed(args.args))
    add_report_parsers(sub)
    prov = sub.add_parser(
        "providers", help="provider attribution: look up hosts, update the Public Suffix List"
    )
    prov.set_defaults(handler=_providers)
    prov_sub = prov.add_subparsers(dest="providers_command", required=True)
    update = prov_sub.add_parser(
        "update",
        help="store a downloaded Public Suffix List (https://publicsuffix.org/list/public_suffix_list.dat)",
    )
    update.add_argument("--from", dest="source", required=True, metavar="FILE", help="the downloaded list")
    lookup = prov_sub.add_parser("lookup", help="print the provider of each host name")
    lookup.add_argument("hosts", nargs="+")
    lookup.add_argument("--providers", metavar="TOML", help="extra overrides, as for scan")
    add_merge_parser(sub)
    schema = sub.add_parser("schema", help="print the JSON Schema of a results line")
    schema.add_argument("--out", type=Path, help="write to a file instead of stdout")
    schema.set_defaults(handler=lambda args: _schema(args.out))
    return parser


def _scan(args: argparse.Namespace) -> int:
    from mxscan.scan import run_scan

    try:
        cfg = config_from(args, ScanConfig)
    except OptionError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return 2
    return run_scan(cfg, sys.stderr)


def _schema(out: Path | None) -> int:
    from mxscan.schema import schema_text

    text = schema_text()
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        problem = prepare_output(out)
        if problem is None:
            out.write_text(text)
    except OSError as exc:
        problem = f"cannot write {out}: {exc.strerror or exc}"
    if problem:
        print(f"mxscan: {problem}", file=sys.stderr)
        return 2
    return 0


def _testbed(argv: list[str]) -> int:
    from testbed.cli import main as testbed_main

    return testbed_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["testbed"]:  # argparse.REMAINDER would refuse a leading option such as --help
        return _testbed(argv[1:])
    args = _build_parser().parse_args(argv)
    return int(args.handler(args))  # each subcommand's parser sets its handler


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

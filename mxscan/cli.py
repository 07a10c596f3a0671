"""The ``mxscan`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.options import OptionError, Parser, add_options, config_from, prepare_output
from mxscan import __version__
from mxscan.config import ScanConfig
from report.commands import add_parsers as add_report_parsers

__all__ = ["main"]


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
    scan = sub.add_parser(
        "scan", help="measure the domains in a list, resumably, into an NDJSON results file"
    )
    add_options(scan, ScanConfig)
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
    merge = sub.add_parser(
        "merge", help="join the files of a --shard K/N scan into one results file, each domain once, checked"
    )
    merge.add_argument("merged", type=Path, metavar="OUT", help="the merged results file (new; .gz: gzip)")
    merge.add_argument("files", type=Path, nargs="+", metavar="FILE", help="the shard files (plain or .gz)")
    merge.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="merge shard files that are unfinished or missing too (the merged file is then unfinished)",
    )
    schema = sub.add_parser("schema", help="print the JSON Schema of a results line")
    schema.add_argument("--out", type=Path, help="write to a file instead of stdout")
    return parser


def _scan(args: argparse.Namespace) -> int:
    from mxscan.scan import run_scan

    try:
        cfg = config_from(args, ScanConfig)
    except OptionError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return 2
    return run_scan(cfg, sys.stderr)


def _merge(args: argparse.Namespace) -> int:
    from scaleout.merge import MergeError, merge_shards

    try:
        merged = merge_shards(args.merged, args.files, allow_unfinished=args.allow_unfinished)
    except MergeError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return 2
    state = "finished" if merged.finished else "unfinished: not every shard is there and finished"
    print(f"mxscan: merged {merged.files} files into {args.merged}: {merged.domains} domains ({state})")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["testbed"]:  # argparse.REMAINDER would refuse a leading option such as --help
        from testbed.cli import main as testbed_main

        return testbed_main(argv[1:])
    args = _build_parser().parse_args(argv)
    if hasattr(args, "handler"):  # report, diff, trend
        return int(args.handler(args))
    if args.command == "scan":
        return _scan(args)
    if args.command == "testbed":
        from testbed.cli import main as testbed_main

        return testbed_main(args.args)
    if args.command == "providers":
        return _providers(args)
    if args.command == "merge":
        return _merge(args)
    if args.command == "schema":
        return _schema(args.out)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

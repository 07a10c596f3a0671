"""The ``mxscan`` subcommand of scans beyond one machine: ``merge`` joins the files of a
``--shard K/N`` scan (``scaleout.merge``).  Like ``report.commands``, it sets
``handler(args) -> int``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    merge.set_defaults(handler=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from scaleout.merge import MergeError, merge_shards  # reads results files: imported when used

    try:
        merged = merge_shards(args.merged, args.files, allow_unfinished=args.allow_unfinished)
    except MergeError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return 2
    state = "finished" if merged.finished else "unfinished: not every shard is there and finished"
    print(f"mxscan: merged {merged.files} files into {args.merged}: {merged.domains} domains ({state})")
    return 0

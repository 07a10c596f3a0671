"""The ``report``, ``diff`` and ``trend`` subcommands (wired in by mxscan/cli.py).

Each handler reads results files through ``probes.results.read_domain_records``
(streaming, torn last line skipped, SMTP references resolved to what the report
uses of them) and returns an exit code.

A results file whose scan has not finished (no run line at its end:
``engine.checkpoint.finished``) lacks domains: ``diff`` would call them
disappeared and ``trend`` would chart a smaller run, so both refuse it (exit 2)
unless ``--allow-unfinished`` includes it, flagged.  ``report`` describes what
the file holds and warns.  Output directories are created; one that cannot be
is an error (exit 2) before any file is read.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from engine.checkpoint import StoreError, finished
from engine.options import prepare_output, whole
from probes.results import read_domain_records
from report.breakdowns import report_view_of_smtp
from report.diff import diff_records, render_diff_ndjson, render_diff_text
from report.export import (
    LEVELS,
    ExportError,
    ExportStats,
    MissingExtra,
    csv_chunks,
    export_rows,
    write_parquet,
)
from report.openmetrics import render_openmetrics, run_seconds
from report.render_html import render_html
from report.render_text import render_markdown, render_text
from report.summary import summarise
from report.trend import render_trend_csv, render_trend_html, trend_row

__all__ = ["add_parsers", "run_diff", "run_export", "run_report", "run_trend"]

EXIT_OK = 0
EXIT_INPUT = 2
#: As a process killed by SIGPIPE: the reader of stdout went away.
EXIT_SIGPIPE = 128 + signal.SIGPIPE


def _outputs_ready(*paths: Path | None) -> bool:
    """Create the directories of the output files; say why not (before any work is done)."""
    for path in paths:
        problem = prepare_output(path) if path is not None else None
        if problem:
            print(f"mxscan: {problem}", file=sys.stderr)
            return False
    return True


def _unfinished(paths: list[Path], allow: bool) -> list[str] | None:
    """The unfinished files among ``paths`` (flagged), or None after refusing them."""
    found = [str(p) for p in paths if p.exists() and not finished(p)]
    if found and not allow:
        for path in found:
            print(
                f"mxscan: {path}: the scan has not finished (no run line at its end), so the file lacks "
                "domains; finish it by running the same scan command again, or pass --allow-unfinished "
                "to include it flagged",
                file=sys.stderr,
            )
        return None
    for path in found:
        print(f"mxscan: WARNING: {path}: unfinished scan, included as it is", file=sys.stderr)
    return found


def _reader_left() -> int:
    """The reader of stdout went away (``... | head``): nothing more to say.  Point stdout
    at /dev/null so the interpreter's own flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_SIGPIPE


def _write(out: Path | None, data: str | bytes) -> int:
    if out is None:
        try:
            if isinstance(data, bytes):
                sys.stdout.buffer.write(data)
            else:
                sys.stdout.write(data)
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_left()
        return EXIT_OK
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        tmp.replace(out)  # a reader never sees half a report
    except OSError as exc:
        print(f"mxscan: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


def _nothing(_smtp: dict[str, Any]) -> dict[str, Any]:
    """diff compares domain-level facts only: no SMTP result needs keeping."""
    return {}


def run_report(args: argparse.Namespace) -> int:
    if not _outputs_ready(args.out):
        return EXIT_INPUT
    if Path(args.results).exists() and not finished(args.results):
        print(
            f"mxscan: WARNING: {args.results}: the scan has not finished; the figures cover the domains "
            "it holds so far",
            file=sys.stderr,
        )
    try:
        summary = summarise(
            read_domain_records(args.results, report_view_of_smtp), top=args.top, cap=args.cap
        )
    except StoreError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return EXIT_INPUT
    title = f"mxscan report: {Path(args.results).name}"
    rendered: str | bytes
    if args.format == "json":
        rendered = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    elif args.format == "markdown":
        rendered = render_markdown(summary, title)
    elif args.format == "html":
        rendered = render_html(summary, title)
    elif args.format == "openmetrics":
        done = finished(args.results)
        rendered = render_openmetrics(
            summary, finished=done, duration=run_seconds(args.results) if done else None
        )
    else:
        rendered = render_text(summary, title)
    return _write(args.out, rendered)


def run_diff(args: argparse.Namespace) -> int:
    if not _outputs_ready(args.out):
        return EXIT_INPUT
    unfinished = _unfinished([args.old, args.new], args.allow_unfinished)
    if unfinished is None:
        return EXIT_INPUT
    try:
        result = diff_records(
            read_domain_records(args.old, _nothing), read_domain_records(args.new, _nothing)
        )
    except StoreError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return EXIT_INPUT
    result.unfinished = unfinished
    if args.format == "ndjson":
        return _write(args.out, b"".join(render_diff_ndjson(result)))
    return _write(args.out, render_diff_text(result, old_label=str(args.old), new_label=str(args.new)))


def run_trend(args: argparse.Namespace) -> int:
    if not _outputs_ready(args.csv, args.html):
        return EXIT_INPUT
    unfinished = _unfinished(args.runs, args.allow_unfinished)
    if unfinished is None:
        return EXIT_INPUT
    rows: list[dict[str, Any]] = []
    for run in args.runs:
        try:
            summary = summarise(read_domain_records(run, report_view_of_smtp))
            rows.append(trend_row(run, summary, finished=str(run) not in unfinished))
        except StoreError as exc:
            print(f"mxscan: {exc}", file=sys.stderr)
            return EXIT_INPUT
    csv_text = render_trend_csv(rows)
    if args.csv is None and args.html is None:
        return _write(None, csv_text)
    code = _write(args.csv, csv_text) if args.csv is not None else EXIT_OK
    return code or (_write(args.html, render_trend_html(rows)) if args.html is not None else EXIT_OK)


def run_export(args: argparse.Namespace) -> int:
    """Flat tables (report.export); an unfinished file is exported, flagged on stderr."""
    if args.format == "parquet" and args.out is None:
        print("mxscan: --format parquet writes a file: give --out FILE", file=sys.stderr)
        return EXIT_INPUT
    if not _outputs_ready(args.out):
        return EXIT_INPUT
    if not Path(args.results).exists():
        print(f"mxscan: {args.results}: no such file", file=sys.stderr)
        return EXIT_INPUT
    if not finished(args.results):
        print(
            f"mxscan: WARNING: {args.results}: the scan has not finished (no run line at its end); the "
            "export holds the domains written so far",
            file=sys.stderr,
        )
    stats = ExportStats()
    rows = export_rows(args.results, args.level, stats)
    target = None if args.out is None else args.out.with_name(args.out.name + ".tmp")
    try:
        if args.format == "parquet":
            assert target is not None
            write_parquet(target, args.level, rows)
        elif target is None:
            for chunk in csv_chunks(args.level, rows):
                sys.stdout.write(chunk)
            sys.stdout.flush()
        else:
            with target.open("w", encoding="utf-8", newline="") as stream:
                stream.writelines(csv_chunks(args.level, rows))
        if target is not None:
            target.replace(args.out)  # a reader never sees half a table
    except BrokenPipeError:
        return _reader_left()
    except (MissingExtra, ExportError) as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except StoreError as exc:
        print(f"mxscan: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        print(f"mxscan: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        if target is not None and target.exists():
            target.unlink()
    if stats.duplicates:
        print(f"mxscan: {stats.duplicates} repeated domain lines skipped (the first counts)", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report``, ``diff`` and ``trend``; each sets ``handler(args) -> int``."""
    p = sub.add_parser("report", help="the study's figures and tables (and more) from a results file")
    p.add_argument("results", type=Path, help="results file (NDJSON)")
    p.add_argument(
        "--format",
        choices=["text", "markdown", "json", "html", "openmetrics"],
        default="text",
        help="openmetrics: gauges for node_exporter's textfile collector (scheduled re-measurement)",
    )
    p.add_argument("--out", "-o", type=Path, help="write to a file instead of stdout")
    p.add_argument(
        "--top", type=whole(1), default=10, help="providers shown in the provider tables (default 10)"
    )
    p.add_argument(
        "--cap", type=whole(0), default=20, help="rows shown per misconfiguration list (default 20)"
    )
    p.set_defaults(handler=run_report)

    d = sub.add_parser("diff", help="per-domain changes between two results files")
    d.add_argument("old", type=Path, help="the earlier results file")
    d.add_argument("new", type=Path, help="the later results file")
    d.add_argument("--format", choices=["text", "ndjson"], default="text")
    d.add_argument("--out", "-o", type=Path, help="write to a file instead of stdout")
    d.add_argument("--allow-unfinished", action="store_true", help=_ALLOW_UNFINISHED)
    d.set_defaults(handler=run_diff)

    t = sub.add_parser("trend", help="headline figures across dated results files (CSV and HTML chart)")
    t.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="results files, one per dated scan")
    t.add_argument("--csv", type=Path, help="write the CSV here (default: stdout when no --html)")
    t.add_argument("--html", type=Path, help="write an HTML chart here")
    t.add_argument("--allow-unfinished", action="store_true", help=_ALLOW_UNFINISHED)
    t.set_defaults(handler=run_trend)

    e = sub.add_parser(
        "export",
        help="flat tables (CSV or Parquet): one row per domain, MX host or probed address",
        description="Flat tables of a results file, host lines joined in. Columns: schema/export-columns.md.",
    )
    e.add_argument("results", type=Path, help="results file (NDJSON)")
    e.add_argument("--format", choices=["csv", "parquet"], default="csv", help="csv (default) or parquet")
    e.add_argument("--level", choices=list(LEVELS), default="domain", help="one row per ... (default domain)")
    e.add_argument("--out", "-o", type=Path, help="write to a file (required for parquet; csv: stdout)")
    e.set_defaults(handler=run_export)


_ALLOW_UNFINISHED = (
    "include results files whose scan has not finished (flagged); without it they are refused, "
    "since they lack domains"
)

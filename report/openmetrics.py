"""The report's figures as an OpenMetrics text file for node_exporter's textfile collector.

Every value comes from ``report.summary.Summary``, the one computation behind
``mxscan report``: ``render_openmetrics`` turns its result into gauges, and
``LiveMetrics`` feeds it each line a scan writes, so the file a running scan keeps
current and ``mxscan report --format openmetrics`` after it agree.

Only gauges are written (each figure is a level, not a running count), which the
Prometheus text format (0.0.4, what the textfile collector reads) and OpenMetrics
1.0 spell alike; the closing ``# EOF`` is a comment to the former and required by
the latter.  A file is replaced atomically (temporary file + rename in the same
directory), so the collector never reads half of one.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from engine.checkpoint import StoreError, is_marker, read_records
from engine.checkpoint import finished as file_finished
from engine.compressed import is_compressed_path, last_member
from probes.results import domain_records
from report.breakdowns import report_view_of_smtp
from report.summary import Summary

__all__ = [
    "METRICS_INTERVAL",
    "METRICS_TOP",
    "LiveMetrics",
    "render_openmetrics",
    "run_seconds",
    "write_atomically",
]

#: Seconds between rewrites of a running scan's metrics file: the textfile collector is
#: scraped every 15-60 s, so a shorter period only costs CPU.
METRICS_INTERVAL = 30.0
#: Providers with their own per-provider series (by domains): bounds the label cardinality.
METRICS_TOP = 10

_HEADLINE_SKIP = ("scanned", "with_mx")


def _escape(value: object) -> str:
    """A label value as the exposition formats require: backslash, quote and newline escaped
    (provider names derive from MX host names, which anyone can choose)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(
        self, name: str, doc: str, samples: Iterable[tuple[dict[str, object], float | int | None]]
    ) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        self.lines += [f"# HELP {name} {doc}", f"# TYPE {name} gauge"]
        for labels, value in rows:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")


def render_openmetrics(
    summary: dict[str, Any],
    *,
    finished: bool,
    duration: float | None = None,
    updated: float | None = None,
) -> str:
    """The exposition text of one summary (``Summary.result()``)."""
    out = _Out()
    _domains(out, summary)
    _headline(out, summary)
    _providers(out, summary["providers"]["rows"])
    out.gauge(
        "mxscan_misconfigurations",
        "Misconfigurations that make mail fail or travel unprotected, by kind.",
        (({"kind": kind}, table["total"]) for kind, table in sorted(summary["misconfigurations"].items())),
    )
    _run(out, finished, duration, updated)
    return "\n".join([*out.lines, "# EOF", ""])


def _domains(out: _Out, summary: dict[str, Any]) -> None:
    meta = summary["meta"]
    out.gauge(
        "mxscan_domains",
        "Domain lines in the results file by record status (first line per domain).",
        (({"status": s}, n) for s, n in sorted(meta["statuses"].items())),
    )
    figs = {f["key"]: f for f in summary["headline"]}
    out.gauge("mxscan_domains_scanned", "Domains scanned (valid names).", [({}, figs["scanned"]["count"])])
    out.gauge(
        "mxscan_domains_with_mx",
        "Domains with MX: the base of every headline figure.",
        [({}, figs["with_mx"]["count"])],
    )
    out.gauge(
        "mxscan_mx_state_domains",
        "Valid domains by MX state (mx, null-mx, implicit-only, no-mx, unknown, not-measured).",
        (({"state": s}, n) for s, n in sorted(meta["mx_states"].items())),
    )


def _headline(out: _Out, summary: dict[str, Any]) -> None:
    shown = [f for f in summary["headline"] if f["key"] not in _HEADLINE_SKIP]
    out.gauge(
        "mxscan_headline_domains",
        "Domains with MX that have the property (the report's headline count; absent when not measured).",
        (({"figure": f["key"]}, f["count"]) for f in shown),
    )
    out.gauge(
        "mxscan_headline_ratio",
        "The headline count over the domains with MX (0-1; absent when not measured).",
        (
            ({"figure": f["key"]}, None if f["percent"] is None else round(f["percent"] / 100, 6))
            for f in shown
        ),
    )
    out.gauge(
        "mxscan_headline_unknown_domains",
        "Domains with MX whose answer is unknown (a timeout or failure, never counted as no).",
        (({"figure": f["key"]}, f["unknown"]) for f in shown),
    )
    out.gauge(
        "mxscan_headline_not_measured_domains",
        "Domains with MX whose record lacks the section (DNS-only file, a crashed probe).",
        (({"figure": f["key"]}, f["not_measured"]) for f in shown),
    )
    out.gauge(
        "mxscan_unknown_domains",
        "Domains with MX whose answer to a question is unknown, by question and reason.",
        (
            ({"question": q, "reason": r}, n)
            for q, reasons in sorted(summary["unknown_why"].items())
            for r, n in sorted(reasons.items())
        ),
    )


def _run(out: _Out, finished: bool, duration: float | None, updated: float | None) -> None:
    out.gauge(
        "mxscan_scan_finished",
        "1 when the results file is finished (ends with a run line).",
        [({}, int(finished))],
    )
    out.gauge(
        "mxscan_scan_duration_seconds",
        "Wall-clock duration of the scan (so far, while it runs).",
        [({}, duration)],
    )
    stamp = time.time() if updated is None else updated
    out.gauge(
        "mxscan_metrics_updated_timestamp_seconds",
        "When this file was written (Unix time).",
        [({}, round(stamp, 3))],
    )


#: (metric suffix, provider-row key, help)
_PROVIDER_SERIES = (
    ("domains", "domains", "Domains whose most preferred MX host the provider operates (top providers)."),
    ("starttls_domains", "domains_starttls", "The provider's domains with STARTTLS on some MX host."),
    (
        "pkix_valid_domains",
        "domains_pkix_valid",
        "The provider's domains with a PKIX-valid certificate on some MX host.",
    ),
    (
        "dane_domains",
        "dane_domains",
        "The provider's domains that count as DANE (their MX answer signed too).",
    ),
    ("mta_sts_domains", "mta_sts", "The provider's domains with a valid MTA-STS record."),
    ("mta_sts_enforce_domains", "mta_sts_enforce", "The provider's domains with MTA-STS mode enforce."),
    ("tlsrpt_domains", "tlsrpt", "The provider's domains with a valid TLS-RPT record."),
)


def _providers(out: _Out, rows: list[dict[str, Any]]) -> None:
    for suffix, key, doc in _PROVIDER_SERIES:
        out.gauge(f"mxscan_provider_{suffix}", doc, (({"provider": r["provider"]}, r.get(key)) for r in rows))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (same directory, so the same file system)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def run_seconds(path: str | os.PathLike[str]) -> float | None:
    """The duration the file's closing run line records (started to ended), or None
    when the file does not end with one (reads only the file's end: of a compressed
    file its last member, where a run line always stands alone)."""
    try:
        if is_compressed_path(path):
            tail = last_member(path) or b""
        else:
            with open(path, "rb") as stream:
                end = stream.seek(0, os.SEEK_END)
                stream.seek(max(0, end - 4096))
                tail = stream.read()
        last = orjson.loads(tail.rstrip(b"\n").rpartition(b"\n")[2])
        if not is_marker(last):
            return None
        return round(_iso(last["run"]["ended"]) - _iso(last["run"]["started"]), 3)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LiveMetrics:
    """A running scan's metrics file: ``line`` each results line as it is written,
    ``tick`` periodically (rewrites the file every ``interval`` seconds), ``close`` at
    the end.

    Host lines are kept as the report reads them (``report_view_of_smtp``) and a domain
    line's references resolve to the latest one before it, as ``probes.results`` resolves
    a file's (a resumed file's host lines are seeded too).  A reference with no host line
    is left out rather than raised: the metrics must never stop a scan, and the file
    written at the end is computed from the results file by the report's own reader.
    """

    def __init__(
        self,
        path: Path,
        *,
        top: int = METRICS_TOP,
        interval: float = METRICS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        #: Told once when the file cannot be written; the scan goes on (its results matter more).
        self.warn = warn
        self._warned = False
        self.interval = interval
        self.clock = clock
        self.began = clock()
        self.summary = Summary(top=top)
        self._hosts: dict[str, dict[str, Any]] = {}
        self._next = self.began + interval

    def start(self, results: Path) -> LiveMetrics:
        """Seeded with what ``results`` already holds (``seed``) and written once now, so the
        file is there from the scan's start."""
        self.seed(results)
        self.write(finished=False)
        return self

    def seed(self, results: Path) -> None:
        """Count the domains a resumed file already holds (their first lines count), and
        keep its host lines as a domain line written later may reference them too."""
        if results.exists():
            for record in read_records(results):
                self._take(record)

    def line(self, data: bytes) -> None:
        """One line the scan wrote to the results file."""
        self._take(orjson.loads(data))

    def _take(self, record: dict[str, Any]) -> None:
        if "ref" in record and "domain" not in record:  # a host line
            smtp = record.get("smtp")
            if isinstance(smtp, dict):
                if record.get("ptr") is not None:
                    smtp["ptr"] = record["ptr"]  # as probes.results joins it
                self._hosts[str(record["ref"])] = report_view_of_smtp(smtp)
            return
        if "domain" not in record:
            return  # a run line
        for transport in record.get("mx_transport") or ():
            refs = transport.get("smtp_refs") or ()
            transport["addresses"] = [self._hosts[r] for r in refs if r in self._hosts]
        self.summary.add(record)

    def tick(self) -> None:
        now = self.clock()
        if now >= self._next:
            self._next = now + self.interval
            self.write(finished=False)

    def write(self, *, finished: bool) -> None:
        text = render_openmetrics(
            self.summary.result(), finished=finished, duration=round(self.clock() - self.began, 3)
        )
        self._replace(text)

    def _replace(self, text: str) -> None:
        try:
            write_atomically(self.path, text)
        except OSError as exc:
            if self.warn is not None and not self._warned:
                self._warned = True
                self.warn(f"cannot write: {exc.strerror or exc}")

    def close(self, results: Path) -> None:
        """The final file, from the results file as it now stands (after a retry pass's
        merge too), exactly as ``mxscan report --format openmetrics`` computes it."""
        summary = Summary(top=self.summary.top)
        try:
            for record in domain_records(read_records(results), report_view_of_smtp):
                summary.add(record)
        except StoreError as exc:  # the file went missing or was damaged meanwhile
            if self.warn is not None:
                self.warn(f"not rewritten at the end: {exc}")
            return
        duration = round(self.clock() - self.began, 3)
        text = render_openmetrics(summary.result(), finished=file_finished(results), duration=duration)
        self._replace(text)

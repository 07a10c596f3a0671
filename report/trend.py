"""Headline figures across dated scans: CSV rows and an inline-SVG HTML chart.

A run is dated by its records' ``scan.started`` (the most common date, since a
resumed scan repeats its own start), or else by a YYYY-MM-DD (or YYYYMMDD)
date in the file name.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from report.charts import line_chart
from report.render_html import page

__all__ = ["TrendRow", "date_from_name", "render_trend_csv", "render_trend_html", "trend_row"]

_DATE = re.compile(r"(20\d\d)-?([01]\d)-?([0-3]\d)")
_CHARTED = ("starttls", "pkix", "dnssec", "dane", "mta_sts", "mta_sts_enforce", "tlsrpt")

TrendRow = dict[str, Any]


def date_from_name(path: str | Path) -> str | None:
    match = _DATE.search(Path(path).name)
    return f"{match[1]}-{match[2]}-{match[3]}" if match else None


def trend_row(path: str | Path, summary: dict[str, Any], *, finished: bool = True) -> TrendRow:
    """One run's date and headline counts and percentages; ``finished`` false flags a run
    whose scan had not finished (``trend --allow-unfinished``): its figures cover part of it."""
    dates = summary["meta"]["scan_dates"]
    known = {d: n for d, n in dates.items() if _DATE.fullmatch(d)}
    date = max(known, key=lambda d: (known[d], d)) if known else date_from_name(path) or "undated"
    row: TrendRow = {"date": date, "file": str(path)}
    for fig in summary["headline"]:
        row[fig["key"]] = fig["count"]
        if fig["key"] not in ("scanned",):
            row[f"{fig['key']}_pct"] = fig["percent"]
        if fig["key"] not in ("scanned", "with_mx"):
            row[f"{fig['key']}_unknown"] = fig["unknown"]
    row["finished"] = finished
    return row


def _columns(rows: Sequence[TrendRow]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def render_trend_csv(rows: Iterable[TrendRow]) -> str:
    ordered = sorted(rows, key=lambda r: (r["date"], r["file"]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(ordered), lineterminator="\n")
    writer.writeheader()
    for row in ordered:
        # A file name is ours to choose but may hold anything: keep spreadsheets from
        # reading a leading =, +, -, @ as a formula.
        writer.writerow(
            {k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v) for k, v in row.items()}
        )
    return out.getvalue()


def render_trend_html(rows: Iterable[TrendRow], title: str = "mxscan trend") -> str:
    ordered = sorted(rows, key=lambda r: (r["date"], r["file"]))
    labels = {
        "starttls": "STARTTLS",
        "pkix": "Valid certificate",
        "dnssec": "DNSSEC",
        "dane": "DANE",
        "mta_sts": "MTA-STS",
        "mta_sts_enforce": "MTA-STS enforce",
        "tlsrpt": "TLS-RPT",
    }
    dates = [r["date"] for r in ordered]
    series = [(labels[k], [r.get(f"{k}_pct") for r in ordered]) for k in _CHARTED]
    series = [(name, values) for name, values in series if any(v is not None for v in values)]
    chart = line_chart("Adoption among domains with MX, percent", dates, series)
    low = [(name, values) for name, values in series if max((v or 0) for v in values) < 20]
    low_chart = (
        line_chart("The same, figures under 20%", dates, low) if low and len(low) < len(series) else ""
    )
    columns = ["date", "file", "scanned", "with_mx", *(f"{k}_pct" for k in _CHARTED), "finished"]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in columns)
        + "</tr>"
        for r in ordered
    )
    html = (
        f"<h2>Headline figures over time</h2>{chart}{low_chart}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        '<p class="note">Percentages are of domains with MX, with the definitions of mxscan report.</p>'
    )
    return page(title, html)

"""Headline figures across dated scans: CSV rows and inline-SVG HTML charts.

A run is dated by its records' ``scan.started`` (the most common date, since a
resumed scan repeats its own start), or else by a YYYY-MM-DD (or YYYYMMDD)
date in the file name.

Beside the headline figures a row carries the misconfiguration counts (MTA-STS
enforce that would fail, DANE mismatches, expired MX certificates: the report's
totals) and, for the HTML charts only, the per-provider adoption of the report's
provider table (``providers``, not a CSV column: its width would vary by run).
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
from report.figures import QUESTIONS
from report.render_html import page

__all__ = ["TrendRow", "date_from_name", "render_trend_csv", "render_trend_html", "trend_row"]

_DATE = re.compile(r"(20\d\d)-?([01]\d)-?([0-3]\d)")
#: The headline figures charted, with their chart labels: the report's table of questions.
_CHARTED = {q.key: q.short for q in QUESTIONS}
#: (CSV column, the report's misconfiguration table, chart label)
_MISCONFIGURATIONS = (
    ("enforce_would_fail", "MTA-STS enforce that would fail delivery", "MTA-STS enforce would fail"),
    ("dane_mismatch", "DANE mismatches that would bounce mail", "DANE mismatches"),
    ("expired_certificates", "Expired certificates on MX hosts", "Expired MX certificates"),
)
#: (provider-row key, chart title): one chart per question, one line per top provider.
_PROVIDER_CHARTS = (
    ("domains_starttls", "STARTTLS among the provider's domains, percent"),
    ("domains_pkix_valid", "Valid certificate among the provider's domains, percent"),
    ("dane_domains", "DANE among the provider's domains, percent"),
    ("mta_sts", "MTA-STS among the provider's domains, percent"),
)
#: Providers charted: the largest of the latest run (a line each; more would not be legible).
TREND_PROVIDERS = 6

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
    misconfigurations = summary.get("misconfigurations") or {}
    for column, table, _label in _MISCONFIGURATIONS:
        row[column] = (misconfigurations.get(table) or {}).get("total")
    row["finished"] = finished
    row["providers"] = {
        p["provider"]: {"domains": p["domains"], **{k: p.get(k) for k, _ in _PROVIDER_CHARTS}}
        for p in (summary.get("providers") or {}).get("rows") or ()
    }
    return row


def _columns(rows: Sequence[TrendRow]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k != "providers"]
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
            {
                k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
                for k, v in row.items()
                if k != "providers"
            }
        )
    return out.getvalue()


def render_trend_html(rows: Iterable[TrendRow], title: str = "mxscan trend") -> str:
    ordered = sorted(rows, key=lambda r: (r["date"], r["file"]))
    dates = [r["date"] for r in ordered]
    series = [(label, [r.get(f"{k}_pct") for r in ordered]) for k, label in _CHARTED.items()]
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
        f"{_misconfiguration_chart(ordered, dates)}{_provider_charts(ordered, dates)}"
    )
    return page(title, html)


def _misconfiguration_chart(ordered: Sequence[TrendRow], dates: list[str]) -> str:
    series = [(label, [r.get(column) for r in ordered]) for column, _table, label in _MISCONFIGURATIONS]
    series = [(name, values) for name, values in series if any(v is not None for v in values)]
    if not series:
        return ""
    return (
        '<h2 id="misconfigurations">Misconfigurations over time</h2>'
        + line_chart("Misconfigurations, count", dates, series, unit="")
        + '<p class="note">Domains whose MTA-STS policy in enforce mode does not cover their MX hosts, '
        "(domain, MX host) pairs whose TLSA records do not match the certificate, and MX hosts presenting "
        "an expired certificate: the totals of the report's misconfiguration tables.</p>"
    )


def _provider_charts(ordered: Sequence[TrendRow], dates: list[str]) -> str:
    latest: dict[str, Any] = (ordered[-1].get("providers") or {}) if ordered else {}
    top = sorted(latest, key=lambda name: (-latest[name]["domains"], name))[:TREND_PROVIDERS]
    if not top:
        return ""
    out = ['<h2 id="providers">Top providers over time</h2>']
    for key, title in _PROVIDER_CHARTS:
        series = [
            (name, [_share((r.get("providers") or {}).get(name), key) for r in ordered]) for name in top
        ]
        out.append(line_chart(title, dates, series))
    out.append(
        f'<p class="note">The {len(top)} largest providers of the latest run (by domains whose most '
        "preferred MX host they operate); each line is the share of the provider's domains with the "
        "property, as the report's provider table counts it. A run in which a provider is not among the "
        "top rows has no point.</p>"
    )
    return "".join(out)


def _share(row: dict[str, Any] | None, key: str) -> float | None:
    if not row or not row.get("domains") or row.get(key) is None:
        return None
    return round(100.0 * float(row[key]) / float(row["domains"]), 2)

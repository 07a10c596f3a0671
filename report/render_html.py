"""One self-contained HTML report: inline CSS and SVG, no JavaScript, no fetches.

Every string that came from a scan (domain names of invalid input, banners,
EHLO names, policy reasons, error details) is attacker-controlled and goes
through ``html.escape``; the Content-Security-Policy forbids scripts and any
network fetch even if an escape were ever missed.
"""

from __future__ import annotations

from html import escape
from typing import Any

from probes.posture import Answer
from report.charts import bar_chart, funnel_chart
from report.render_text import Section, printable, sections

__all__ = ["CSP", "page", "render_html"]

#: No scripts, no fetches; inline styles and data: images only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1a202c;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #cbd5e0}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{padding:.35em .6em;border:1px dashed #cbd5e0;text-align:left;vertical-align:top}
th{background:#edf2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#4a5568;font-size:.85em;margin:.2em 0}.muted{color:#4a5568}
.yes{color:#276749;font-weight:600}.no{color:#9b2c2c}.optional,.partial{color:#975a16;font-weight:600}
td{word-break:break-word;max-width:28em}
"""


#: The provider tables' labels (``report.providers.all_some_none``) that get a colour.
_MARKED = frozenset({Answer.YES.value, Answer.NO.value, "optional", "partial"})


def _cell(text: str) -> str:
    number = text.replace(",", "").replace("%", "").replace(".", "", 1).strip()
    cls = "num" if number.isdigit() else text if text in _MARKED else ""
    return f'<td class="{cls}">{escape(text)}</td>' if cls else f"<td>{escape(text)}</td>"


def _table(sec: Section) -> str:
    parts = [f'<h2 id="{escape(sec.key)}">{escape(sec.title)}</h2>']
    if sec.rows:
        head = "".join(f"<th>{escape(c)}</th>" for c in sec.columns)
        body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in sec.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts += [f'<p class="note">{escape(note)}</p>' for note in sec.notes]
    return "".join(parts)


def _charts(summary: dict[str, Any]) -> str:
    figs = {f["key"]: f for f in summary["headline"]}
    bars = [
        (f["label"], f["percent"] or 0.0, f"{f['count']:,} ({f['percent']:.1f}%)")
        for f in summary["headline"]
        if f["key"] not in ("scanned", "with_mx") and f["measured"]
    ]
    out = ['<h2 id="adoption">Adoption among domains with MX</h2>']
    out.append(
        bar_chart("Adoption among domains with MX", bars) if bars else "<p>not measured in this file</p>"
    )
    steps = [("Domains with MX", figs["with_mx"]["count"] or 0)]
    for key, label in (
        ("starttls", "STARTTLS"),
        ("pkix", "Valid certificate"),
        ("mta_sts", "MTA-STS"),
        ("dane", "DANE"),
    ):
        if figs[key]["measured"]:
            steps.append((label, figs[key]["count"] or 0))
    out.append('<h2 id="funnel">Funnel: MX → STARTTLS → valid certificate → MTA-STS / DANE</h2>')
    out.append(funnel_chart("Funnel of domains with MX", steps))
    out.append(
        '<p class="note">Each step counts domains with MX that have the property (MTA-STS and DANE are '
        "independent of each other and of the steps above; steps that are not measured in this file are "
        "left out).</p>"
    )
    return "".join(out)


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body`` (already escaped), with the CSP and CSS."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def render_html(summary: dict[str, Any], title: str = "mxscan report") -> str:
    secs = sections(summary)
    head, rest = secs[0], secs[1:]
    body = [_table(head), _charts(summary), *(_table(s) for s in rest)]
    return page(printable(title, 300), "".join(body))

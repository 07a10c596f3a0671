"""Plain-text and Markdown renderings of a report summary (``figures.summarise``).

Both read the same ``sections``: a list of titled tables, which the HTML
renderer reuses, so every format shows the same numbers.  Scanned strings
(domain names of invalid input, banners, reasons) are made printable and
bounded before they reach a terminal; Markdown also escapes its table syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "printable", "render_markdown", "render_text", "sections"]

#: Longest cell shown; banners and details can be long and are attacker-chosen.
MAX_CELL = 120


@dataclass(slots=True)
class Section:
    """One titled table of a report."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def printable(value: object, limit: int = MAX_CELL) -> str:
    """``value`` as one printable line (control characters become "?"), at most ``limit`` characters."""
    text = str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _n(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _headline(summary: dict[str, Any]) -> Section:
    rows: list[list[str]] = []
    notes: list[str] = []
    for number, fig in enumerate(summary["headline"], start=1):
        label = fig["label"] + ("" if fig["study"] else " (beyond the study)")
        if not fig["measured"]:
            rows.append([f"{label} [{number}]", "not measured in this file", "", "", ""])
        else:
            extras = "; ".join(f"{k}: {v:,}" for k, v in fig["extras"].items())
            if fig.get("derived_from_dns"):
                extras = "; ".join(filter(None, [extras, f"derived from DNS: {fig['derived_from_dns']:,}"]))
            rows.append(
                [
                    f"{label} [{number}]",
                    _n(fig["count"]),
                    _pct(fig["percent"]) if fig["key"] != "scanned" else "",
                    f"{fig['unknown']:,} / {fig['not_measured']:,}",
                    extras,
                ]
            )
        notes.append(f"[{number}] {fig['footnote']}")
    notes.append(summary["footnotes"]["unknown"])
    if any(fig.get("derived_from_dns") for fig in summary["headline"]):
        notes.append(summary["footnotes"]["derived"])
    return Section(
        "headline",
        "Headline figures (percent of domains with MX; domains with MX: percent of scanned)",
        ["Figure", "Domains", "Percent", "Unknown / not measured", "Details"],
        rows,
        notes,
    )


def _providers(summary: dict[str, Any]) -> list[Section]:
    p = summary["providers"]
    foot = summary["footnotes"]
    if not p["rows"]:
        note = "not measured in this file (no SMTP transport results: DNS-only or older file)"
        return [Section("providers", "Top providers", ["Provider"], [], [note])]
    study = Section(
        "providers",
        "Top providers: inbound DANE and publicly trusted certificates",
        [
            "Domains",
            "Provider",
            "Inbound DANE",
            "MX hosts with TLSA",
            "DANE domains",
            "Public CA cert",
            "MX hosts valid / probed",
        ],
        [
            [
                f"{r['domains']:,}",
                printable(r["provider"]),
                r["dane"],
                f"{r['hosts_dane']:,} / {r['hosts']:,}"
                + (f" ({r['hosts_dane_unknown']:,} unknown)" if r["hosts_dane_unknown"] else ""),
                f"{r['dane_domains']:,}" + (f" ({r['dane_unknown']:,} unknown)" if r["dane_unknown"] else ""),
                r["pkix"],
                f"{r['hosts_pkix_valid']:,} / {r['hosts']:,}"
                + (f" ({r['hosts_pkix_unknown']:,} unknown)" if r["hosts_pkix_unknown"] else ""),
            ]
            for r in p["rows"]
        ],
        [foot["provider_provider"], foot["provider_dane"], foot["provider_pkix"]],
    )
    adoption = Section(
        "provider_adoption",
        "Per-provider adoption (beyond the study)",
        ["Provider", "Domains", "Valid cert", "MTA-STS", "MTA-STS enforce", "TLS-RPT", "MX hosts DANE-valid"],
        [
            [
                printable(r["provider"]),
                f"{r['domains']:,}",
                f"{r['domains_pkix_valid']:,}",
                f"{r['mta_sts']:,}",
                f"{r['mta_sts_enforce']:,}",
                f"{r['tlsrpt']:,}",
                f"{r['hosts_dane_valid']:,}",
            ]
            for r in p["rows"]
        ],
        [f"{p['measured_domains']:,} domains with measured transport, {p['providers_seen']:,} providers."],
    )
    hosting = Section(
        "policy_hosts",
        "MTA-STS policy hosting providers",
        ["Policy host provider", "Domains"],
        [[printable(k), f"{v:,}"] for k, v in p["policy_hosts"].items()],
        [foot["provider_policy_host"]],
    )
    return [study, adoption, hosting]


def _vantage(ptr: dict[str, Any]) -> Section:
    """Where the scan measured from: the report's context for every SMTP figure."""
    rows = [["vantage", printable(k, 300), f"{v:,}"] for k, v in ptr["vantages"].items()]
    rows += [["egress pre-flight (port 25)", printable(k), f"{v:,}"] for k, v in ptr["egress"].items()]
    note = (
        "Receivers may reject or tarpit a client whose address has no forward-confirmed PTR or whose EHLO "
        "name does not resolve to it, which changes what they answer. Counted per domain line."
    )
    return Section("vantage", "Vantage: where the scan measured from", ["", "Value", "Domains"], rows, [note])


def _ptr(ptr: dict[str, Any]) -> list[Section]:
    total = ptr["addresses"]
    if not total:
        return [
            Section("ptr", "Reverse DNS of probed MX addresses", [], [], ["no probed address in this file"])
        ]

    def share(n: int, of: int) -> str:
        return f"{100 * n / of:.1f}%" if of else ""

    rows = [["with a PTR record", f"{ptr['with_ptr']:,}", share(ptr["with_ptr"], total)]]
    rows += [[printable(k), f"{v:,}", share(v, total)] for k, v in ptr["labels"].items()]
    overall = Section(
        "ptr",
        "Reverse DNS (PTR / FCrDNS) of probed MX addresses",
        ["PTR / FCrDNS", "Addresses", "Share"],
        rows,
        [f"{total:,} distinct probed addresses. {ptr['note']}"],
    )
    by_provider = Section(
        "ptr_providers",
        "Reverse DNS of probed MX addresses by provider (most addresses first)",
        [
            "Provider",
            "Addresses",
            "With PTR",
            "FCrDNS confirmed",
            "Mismatch",
            "No PTR",
            "Unknown",
            "Not looked up",
        ],
        [
            [
                printable(r["provider"]),
                f"{r['addresses']:,}",
                f"{r['with_ptr']:,} ({share(r['with_ptr'], r['addresses'])})",
                f"{r['confirmed']:,} ({share(r['confirmed'], r['addresses'])})",
                f"{r['mismatch']:,}",
                f"{r['no-ptr']:,}",
                f"{r['unknown: forward lookup failed'] + r['unknown: PTR lookup failed']:,}",
                f"{r['not looked up']:,}",
            ]
            for r in ptr["providers"]
        ],
    )
    return [overall, by_provider]


def _counters(title: str, key: str, counts: dict[str, int], note: str = "") -> Section:
    total = sum(counts.values())
    rows = [[printable(k), f"{v:,}", f"{100 * v / total:.1f}%" if total else ""] for k, v in counts.items()]
    notes = ([note] if note else []) + ([] if rows else ["none in this file"])
    return Section(key, title, ["Value", "Count", "Share"], rows, notes)


def sections(summary: dict[str, Any]) -> list[Section]:
    """Every table of the report, in order."""
    ptr = summary.get("ptr")  # absent in summaries made before it
    out = [_headline(summary), *([_vantage(ptr)] if ptr else []), *_providers(summary)]
    out += _ptr(ptr) if ptr else []
    notes = summary.get("failure_notes") or {}
    for title, counts in summary["failures"].items():
        out.append(_counters(title, "failure", counts, notes.get(title, "")))
    for title, listing in summary["misconfigurations"].items():
        shown = f"{listing['total']:,} in total" + (
            f", the first {listing['shown']:,} by name shown" if listing["shown"] < listing["total"] else ""
        )
        rows = [[printable(cell) for cell in row] for row in listing["rows"]]
        out.append(Section("misconfiguration", title, listing["columns"], rows, [shown]))
    failures = summary["smtp_failures"]
    out.append(
        Section(
            "smtp_failures",
            "SMTP probes that did not succeed (examples)",
            failures["columns"],
            [[printable(cell) for cell in row] for row in failures["rows"]],
            [f"{failures['total']:,} distinct host addresses in total"],
        )
    )
    unknown_rows = [
        [question, printable(why), f"{n:,}"]
        for question, reasons in summary["unknown_why"].items()
        for why, n in reasons.items()
    ]
    out.append(
        Section(
            "unknowns",
            'Why results are "unknown" (domains with MX)',
            ["Figure", "Reason", "Domains"],
            unknown_rows,
            [summary["footnotes"]["unknown"]] if unknown_rows else ["no unknown results"],
        )
    )
    meta = summary["meta"]
    records = [
        ["records", f"{meta['records']:,}"],
        ["duplicate lines (first counted)", f"{meta['duplicates']:,}"],
        ["unreadable lines", f"{meta['unreadable']:,}"],
        *[[f"status {printable(k)}", f"{v:,}"] for k, v in meta["statuses"].items()],
        *[[f"MX state {printable(k)}", f"{v:,}"] for k, v in meta["mx_states"].items()],
        *[[f"scan date {printable(k)}", f"{v:,}"] for k, v in meta["scan_dates"].items()],
        *[[f"resolver validating: {printable(k)}", f"{v:,}"] for k, v in meta["dnssec_validating"].items()],
        *[[f"written by {printable(k)}", f"{v:,}"] for k, v in meta["writers"].items()],
    ]
    out.append(Section("meta", "About this file", ["", "Count"], records))
    return out


def _text_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*columns).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*row).rstrip() for row in rows]
    return ["  " + line for line in lines]


def render_text(summary: dict[str, Any], title: str = "mxscan report") -> str:
    lines = [printable(title, 300), "=" * min(len(title), 78), ""]
    for sec in sections(summary):
        lines += [sec.title, "-" * min(len(sec.title), 78)]
        if sec.rows:
            lines += _text_table(sec.columns, sec.rows)
        lines += [f"  {note}" for note in sec.notes]
        lines.append("")
    return "\n".join(lines)


def _md_cell(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(summary: dict[str, Any], title: str = "mxscan report") -> str:
    lines = [f"# {_md_cell(printable(title, 300))}", ""]
    for sec in sections(summary):
        lines += [f"## {sec.title}", ""]
        if sec.rows:
            lines.append("| " + " | ".join(_md_cell(c) for c in sec.columns) + " |")
            lines.append("|" + "|".join(" --- " for _ in sec.columns) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in sec.rows]
            lines.append("")
        lines += [f"{_md_cell(note)}  " for note in sec.notes]
        lines.append("")
    return "\n".join(lines)

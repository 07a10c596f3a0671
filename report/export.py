"""Flat tables of a results file: one row per domain, per (domain, MX host), or per
(domain, MX host, probed address), for CSV and Parquet.

Theory of operation
-------------------
The domain table's answers are ``probes.posture.answers``, the one
computation behind the report's headline figures, so counting a column of the
table gives the report's figure (``has_mx`` true is the base; ``starttls`` true
among those is the STARTTLS figure, and so on).  Every answer is a tri-state:
``true``, ``false``, or null (empty in CSV) for "unknown" or "not measured";
an unknown is never written as false.  The coverage columns (``*_coverage``,
``mx_state``, ``dnssec_mx``) keep the finer vocabulary for those who need it.

Rows are made one record at a time from ``probes.results.read_domain_records``
(host lines resolved, each SMTP result slimmed to the exported fields), so
memory grows with the distinct MX host addresses of the file, not its domains
(plus one set of domain names: a domain seen twice is exported once, its first
line, as the report counts it).

``COLUMNS`` (report.export_columns) is the stable contract: names, types and meanings, rendered as
``schema/export-columns.md`` by ``columns_markdown`` (a test keeps the file
current).  A column is only ever added, never renamed or re-typed.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from probes.posture import DomainAnswers, answers, preferred_transport
from probes.results import read_domain_records
from report.export_columns import COLUMNS, GETTERS, LEVELS, Column, Row, leaf_cert

__all__ = [
    "COLUMNS",
    "LEVELS",
    "Column",
    "ExportError",
    "ExportStats",
    "MissingExtra",
    "columns_markdown",
    "csv_chunks",
    "export_rows",
    "smtp_view",
    "write_parquet",
]


_SMTP_FIELDS = (
    "host", "address", "port", "status", "phase", "starttls", "banner_code", "pkix",
    "greylisted", "attempts", "plaintext_injection", "duration_ms", "detail",
)  # fmt: skip


def smtp_view(smtp: dict[str, Any]) -> dict[str, Any]:
    """What the export reads of one SMTP result: memory grows with distinct host
    addresses, so the TLS session shrinks to its version, cipher and the leaf's issuer
    and expiry."""
    view = {key: smtp.get(key) for key in _SMTP_FIELDS}
    tls = smtp.get("tls")
    if tls is not None:
        leaf = leaf_cert(smtp)
        certs = [{"not_after": leaf.get("not_after"), "issuer": leaf.get("issuer")}] if leaf else []
        view["tls"] = {"version": tls.get("version"), "cipher": tls.get("cipher"), "chain": {"certs": certs}}
    return view


def _slim(_smtp: dict[str, Any]) -> dict[str, Any]:
    """The domain level reads only the posture roll-ups and each probe's status and PKIX reason."""
    return {"status": _smtp.get("status"), "pkix": {"reason": (_smtp.get("pkix") or {}).get("reason")}}


@dataclass(slots=True)
class ExportStats:
    """What an export saw: records read, rows written, duplicate domain lines skipped."""

    records: int = 0
    rows: int = 0
    duplicates: int = 0


def _rows_of(level: str, record: dict[str, Any], facts: DomainAnswers) -> Iterator[Row]:
    if level == "domain":
        yield Row(record, facts, {}, None, {}, False)
        return
    dns_hosts = {h.get("host"): h for h in (record.get("dns") or {}).get("mx_hosts") or ()}
    best = preferred_transport(record)
    for transport in record.get("mx_transport") or ():
        dns_host = dns_hosts.get(transport.get("host"))
        preferred = transport is best
        if level == "host":
            yield Row(record, facts, transport, dns_host, {}, preferred)
            continue
        for probe in transport.get("addresses") or ():
            yield Row(record, facts, transport, dns_host, probe, preferred)


def export_rows(
    path: str | os.PathLike[str], level: str, stats: ExportStats | None = None
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``level`` for the results file at ``path``, one tuple per row in
    ``COLUMNS[level]`` order, streamed.  Raises StoreError (engine.checkpoint) for a file
    that is not a results file or a dangling reference."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    getters = GETTERS[level]
    stats = stats if stats is not None else ExportStats()
    seen: set[str] = set()
    for record in read_domain_records(path, _slim if level == "domain" else smtp_view):
        stats.records += 1
        domain = str(record.get("domain", ""))
        if domain in seen:
            stats.duplicates += 1  # the report counts a domain's first line only; so does the export
            continue
        seen.add(domain)
        facts = answers(record)
        for row in _rows_of(level, record, facts):
            stats.rows += 1
            yield tuple(get(row) for get in getters)


#: CSV text of a bool column's values: unknown / not measured is empty, never "false".
_BOOL_TEXT = {True: "true", False: "false", None: ""}
#: A cell starting with one of these is a formula to a spreadsheet.
_FORMULA = ("=", "+", "-", "@")


def csv_chunks(level: str, rows: Iterable[tuple[Any, ...]], batch: int = 2000) -> Iterator[str]:
    """CSV text (RFC 4180, header first) in chunks of ``batch`` rows.  The csv module
    writes None as an empty cell; bools become true/false, and a string that a
    spreadsheet would read as a formula (peer text: banners, details) gets a leading '."""
    columns = COLUMNS[level]
    bools = [i for i, c in enumerate(columns) if c.type == "bool"]
    strings = [i for i, c in enumerate(columns) if c.type == "string"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    for n, row in enumerate(rows, 1):
        cells = list(row)
        for i in bools:
            cells[i] = _BOOL_TEXT.get(cells[i], cells[i])
        for i in strings:
            value = cells[i]
            if value and value.startswith(_FORMULA):
                cells[i] = "'" + value
        writer.writerow(cells)
        if n % batch == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def columns_markdown() -> str:
    """``schema/export-columns.md``: every level's columns, types and meanings."""
    lines = [
        "# Columns of `mxscan export`",
        "",
        "Generated from `report/export_columns.py` (`COLUMNS`); a test keeps this file current. Column names",
        "and types are stable: columns are only ever added. Booleans are `true`/`false` in CSV and",
        "`bool` in Parquet; an empty CSV cell or a Parquet null means unknown or not measured, never",
        '"no". Lists are `;`-separated strings. Counting a bool column among the rows where `has_mx`',
        "is true gives the report's headline figure of the same name.",
        "",
    ]
    titles = {
        "domain": "one row per domain (`--level domain`, the default)",
        "host": "one row per (domain, MX host) (`--level host`)",
        "address": "one row per (domain, MX host, probed address) (`--level address`)",
    }
    for level in LEVELS:
        lines += [f"## {level}: {titles[level]}", "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {c.doc} |" for c in COLUMNS[level]]
        lines.append("")
    return "\n".join(lines)


class MissingExtra(RuntimeError):
    """An optional dependency of the chosen format is not installed."""


class ExportError(ValueError):
    """A value that does not fit its column's type (a results file edited by hand)."""


_ARROW_TYPES = {"string": "string", "bool": "bool_", "int": "int64", "float": "float64"}


def write_parquet(
    out: str | os.PathLike[str], level: str, rows: Iterable[tuple[Any, ...]], batch: int = 20_000
) -> None:
    """Write ``rows`` to a Parquet file in row groups of ``batch`` rows (streamed: memory
    holds one batch).  pyarrow is the optional extra ``mxscan[parquet]``, imported only here."""
    try:
        import pyarrow as pa  # type: ignore[import-not-found,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise MissingExtra(
            "Parquet needs pyarrow, which a plain install leaves out: pip install 'mxscan[parquet]' "
            "(or pip install pyarrow); --format csv needs nothing more"
        ) from None
    columns = COLUMNS[level]
    schema = pa.schema(
        [
            pa.field(c.name, getattr(pa, _ARROW_TYPES[c.type])(), nullable=True, metadata={"doc": c.doc})
            for c in columns
        ]
    )
    with pq.ParquetWriter(os.fspath(out), schema, compression="zstd") as writer:
        pending: list[tuple[Any, ...]] = []
        for row in rows:
            pending.append(row)
            if len(pending) >= batch:
                writer.write_batch(_batch(pa, schema, pending))
                pending = []
        # Always written (even empty): a file with no rows still carries one row group.
        writer.write_batch(_batch(pa, schema, pending))


def _batch(pa: Any, schema: Any, rows: list[tuple[Any, ...]]) -> Any:
    arrays = []
    for i, field in enumerate(schema):
        try:
            arrays.append(pa.array([row[i] for row in rows], type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ExportError(f"column {field.name}: a value is not of type {field.type} ({exc})") from None
    return pa.record_batch(arrays, schema=schema)


if __name__ == "__main__":  # python -m report.export > schema/export-columns.md
    print(columns_markdown(), end="")

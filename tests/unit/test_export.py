"""``mxscan export``: flat tables over real encoded records (issue #16, "after a scan").

The expected counts here are computed from the exported CSV with the standard
library's csv module, never with the report's code; the report's figures come
from ``report.summary.summarise`` over the same file.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.records import encode
from probes.dane.tlsa import DaneStatus
from probes.domain import RunEnd, run_line
from probes.mtasts.records import Finding
from probes.results import read_domain_records
from report.breakdowns import report_view_of_smtp
from report.export import COLUMNS, columns_markdown, export_rows
from report.summary import summarise
from tests.unit.test_report_figures import as_lines, record, smtp, sts_result

ROOT = Path(__file__).resolve().parents[2]


def _world() -> list[Any]:
    google = (smtp("aspmx.l.google.com"),)
    return [
        record("a.example", mx=((10, "aspmx.l.google.com", "google.com", google),)),
        record("b.example", mx=((10, "aspmx.l.google.com", "google.com", google),), tlsrpt=True),
        record(
            "c.example",
            mx=((10, "mx.c.example", None, (smtp("mx.c.example", pkix="expired", address="192.0.2.3"),)),),
            dnssec="secure",
            tlsa={"mx.c.example": ("3 1 1 " + "ab" * 32,)},
            dane={"mx.c.example": DaneStatus.MISMATCH},
        ),
        record(
            "d.example",
            mx=(
                (
                    10,
                    "mx.d.example",
                    None,
                    (
                        smtp(
                            "mx.d.example",
                            starttls="unknown",
                            pkix=None,
                            status="io-timeout",
                            address="192.0.2.4",
                        ),
                    ),
                ),
            ),
        ),
        record(
            "e.example",
            mx=((10, "aspmx.l.google.com", "google.com", google),),
            mta_sts=sts_result("e.example", mode="enforce", findings=(Finding.ENFORCE_WOULD_FAIL,)),
        ),
        record("f.example"),  # no MX
        record("g.example", mx_outcome="timeout"),  # MX unknown
        record("bad..example", status="invalid-input", reason="empty-label"),
    ]


def _write(path: Path, *, finished: bool = True) -> Path:
    lines = as_lines(*_world())
    if finished:
        lines.append(
            run_line(RunEnd(True, 8, "2024-11-04T00:00:00.000Z", "2024-11-04T00:01:00.000Z", "mxscan", ""))
        )
    path.write_bytes(b"".join(lines))
    return path


def _mxscan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_domain_table_counts_equal_the_reports_headline_figures(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.ndjson")
    run = _mxscan("export", str(results))
    assert run.returncode == 0, run.stderr
    rows = _csv_rows(run.stdout)
    figures = {f["key"]: f for f in summarise(read_domain_records(results, report_view_of_smtp))["headline"]}
    with_mx = [r for r in rows if r["has_mx"] == "true"]
    assert len(with_mx) == figures["with_mx"]["count"] == 5
    for column, key in (
        ("starttls", "starttls"),
        ("pkix_valid", "pkix"),
        ("dnssec_signed", "dnssec"),
        ("dane_published", "dane"),
        ("mta_sts", "mta_sts"),
        ("tlsrpt", "tlsrpt"),
    ):
        assert sum(r[column] == "true" for r in with_mx) == figures[key]["count"], column
        assert sum(r[column] == "" for r in with_mx) == figures[key]["unknown"] + figures[key]["not_measured"]
    assert sum(r["mta_sts_mode"] == "enforce" for r in with_mx) == figures["mta_sts_enforce"]["count"] == 1
    scanned = [r for r in rows if r["status"] != "invalid-input"]
    assert len(scanned) == figures["scanned"]["count"] == 7


def test_an_unknown_answer_is_an_empty_cell_never_false(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.ndjson")
    rows = {r["domain"]: r for r in _csv_rows(_mxscan("export", str(results)).stdout)}
    timeout = rows["d.example"]  # the only MX host's probe timed out
    assert timeout["starttls"] == "" and timeout["starttls_coverage"] == "unknown"
    assert timeout["pkix_valid"] == ""
    mx_unknown = rows["g.example"]  # the MX lookup timed out
    assert mx_unknown["has_mx"] == "" and mx_unknown["mx_state"] == "unknown"
    assert rows["f.example"]["has_mx"] == "false"
    assert rows["c.example"]["pkix_valid"] == "false" and rows["c.example"]["pkix_reasons"] == "expired"


def test_host_and_address_rows_are_joined_from_the_host_lines(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.ndjson")
    hosts = _csv_rows(_mxscan("export", str(results), "--level", "host").stdout)
    assert [(h["domain"], h["host"]) for h in hosts][:2] == [
        ("a.example", "aspmx.l.google.com"),
        ("b.example", "aspmx.l.google.com"),
    ]
    c = next(h for h in hosts if h["domain"] == "c.example")
    assert (c["dane_status"], c["tlsa_published"], c["pkix_valid"]) == ("mismatch", "true", "false")
    addresses = _csv_rows(_mxscan("export", str(results), "--level", "address").stdout)
    google = [a for a in addresses if a["host"] == "aspmx.l.google.com"]
    assert len(google) == 3 and {a["ref"] for a in google} == {"smtp:aspmx.l.google.com@192.0.2.1:25"}
    assert google[0]["tls_version"] == "TLSv1.3" and google[0]["cert_not_after"] == "2030-01-01T00:00:00Z"
    timeout = next(a for a in addresses if a["domain"] == "d.example")
    assert (timeout["status"], timeout["starttls"], timeout["pkix_valid"]) == ("io-timeout", "unknown", "")


def test_an_unfinished_file_exports_with_a_warning(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.ndjson", finished=False)
    run = _mxscan("export", str(results), "--out", str(tmp_path / "d.csv"))
    assert run.returncode == 0
    assert "has not finished" in run.stderr
    assert len(_csv_rows((tmp_path / "d.csv").read_text())) == 8
    finished = _mxscan("export", str(_write(tmp_path / "f.ndjson")), "--out", str(tmp_path / "f.csv"))
    assert finished.returncode == 0 and "WARNING" not in finished.stderr


def test_a_domain_seen_twice_is_exported_once_as_the_report_counts_it(tmp_path: Path) -> None:
    first = record("a.example", mx=((10, "mx.a.example", None, (smtp("mx.a.example"),)),))
    again = record(
        "a.example", mx=((10, "mx.a.example", None, (smtp("mx.a.example", starttls="no", pkix=None),)),)
    )
    path = tmp_path / "r.ndjson"
    path.write_bytes(b"".join(as_lines(first, again)))
    rows = list(export_rows(path, "domain"))
    assert len(rows) == 1
    assert rows[0][[c.name for c in COLUMNS["domain"]].index("starttls")] is True


def test_peer_text_cannot_become_a_spreadsheet_formula(tmp_path: Path) -> None:
    hostile = smtp("mx.h.example", status="protocol-error", detail='=HYPERLINK("x")', pkix=None)
    path = tmp_path / "r.ndjson"
    path.write_bytes(b"".join(as_lines(record("h.example", mx=((10, "mx.h.example", None, (hostile,)),)))))
    rows = _csv_rows(_mxscan("export", str(path), "--level", "address").stdout)
    assert rows[0]["detail"] == '\'=HYPERLINK("x")'


def test_the_parquet_file_has_the_documented_schema(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    results = _write(tmp_path / "r.ndjson")
    for level in ("domain", "host", "address"):
        out = tmp_path / f"{level}.parquet"
        run = _mxscan("export", str(results), "--format", "parquet", "--level", level, "--out", str(out))
        assert run.returncode == 0, run.stderr
        table = pq.read_table(out)
        expected = {"string": "string", "bool": "bool", "int": "int64", "float": "double"}
        assert [(f.name, str(f.type)) for f in table.schema] == [
            (c.name, expected[c.type]) for c in COLUMNS[level]
        ]
    domains = pq.read_table(tmp_path / "domain.parquet").to_pylist()
    by_name = {d["domain"]: d for d in domains}
    assert by_name["d.example"]["starttls"] is None  # unknown stays null, never False
    assert by_name["a.example"]["starttls"] is True and by_name["f.example"]["has_mx"] is False


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.ndjson")
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
        "from mxscan.cli import main\n"
        f"out = {str(tmp_path / 'x.parquet')!r}\n"
        f"sys.exit(main(['export', {str(results)!r}, '--format', 'parquet', '--out', out]))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "mxscan[parquet]" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "x.parquet.tmp").exists()


def test_a_csv_export_never_imports_pyarrow(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.ndjson")
    code = (
        "import sys\nfrom mxscan.cli import main\n"
        f"rc = main(['export', {str(results)!r}, '--out', {str(tmp_path / 'd.csv')!r}])\n"
        "sys.exit(rc or ('pyarrow' in sys.modules) * 3)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_a_file_that_is_not_a_results_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ndjson"
    junk.write_bytes(b"not json\n" + encode(record("a.example")))
    run = _mxscan("export", str(junk), "--out", str(tmp_path / "d.csv"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert not (tmp_path / "d.csv").exists()
    missing = _mxscan("export", str(tmp_path / "missing.ndjson"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    parquet_stdout = _mxscan("export", str(junk), "--format", "parquet")
    assert parquet_stdout.returncode == 2 and "--out" in parquet_stdout.stderr


def test_the_columns_document_is_current() -> None:
    """schema/export-columns.md is generated from report.export.COLUMNS; regenerate it with
    ``.venv/bin/python -m report.export > schema/export-columns.md``."""
    assert (ROOT / "schema" / "export-columns.md").read_text() == columns_markdown()
    for level, columns in COLUMNS.items():
        names = [c.name for c in columns]
        assert len(names) == len(set(names)), level


@pytest.mark.parametrize(
    "command",
    [("export",), ("report", "--format", "json", "--cap", "100000")],
    ids=["export", "report"],
)
def test_a_reader_that_leaves_early_ends_the_command_quietly_with_141(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    def failing(i: int) -> Any:
        host = f"mx{i}.example"
        probe = smtp(
            host, starttls="unknown", pkix=None, status="io-timeout", address=f"192.0.{i // 250}.{i % 250}"
        )
        return record(f"d{i}.example", mx=((10, host, None, (probe,)),))

    path = tmp_path / "r.ndjson"
    path.write_bytes(b"".join(as_lines(*(failing(i) for i in range(3000)))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxscan", command[0], str(path), *command[1:]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # The reader is gone before the first write (as with `| true`): a pipe's buffer may hold
    # far more than 64 KiB on some kernels, so a reader that took one byte first could miss
    # the broken pipe entirely.
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "pipe" not in stderr.lower()


def test_a_hand_edited_value_of_the_wrong_type_is_a_clear_error_in_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    line = encode(record("a.example", mx=((10, "mx.a.example", None, (smtp("mx.a.example"),)),)))
    edited = line.replace(b'"dnssec_validating":true', b'"dnssec_validating":"yes"')
    assert edited != line
    path = tmp_path / "r.ndjson"
    path.write_bytes(
        b"".join(
            [
                *as_lines(record("b.example")),
                *as_lines(record("a.example", mx=((10, "mx.a.example", None, (smtp("mx.a.example"),)),)))[
                    :-1
                ],
                edited,
            ]
        )
    )
    run = _mxscan("export", str(path), "--format", "parquet", "--out", str(tmp_path / "d.parquet"))
    assert run.returncode == 2 and "dnssec_validating" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "d.parquet").exists()
    csv_run = _mxscan("export", str(path))
    assert csv_run.returncode == 0 and _csv_rows(csv_run.stdout)[1]["dnssec_validating"] == "yes"

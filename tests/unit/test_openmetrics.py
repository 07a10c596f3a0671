"""OpenMetrics for scheduled re-measurement (issue #16): the textfile parses with
prometheus_client's parsers (both the OpenMetrics and the Prometheus text format one,
as node_exporter's textfile collector reads the latter) and its gauges equal the
report's figures (``mxscan report --format json`` over the same file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from probes.domain import RunEnd, run_line
from report.openmetrics import LiveMetrics, render_openmetrics, write_atomically
from tests.unit.test_export import _world
from tests.unit.test_report_figures import as_lines, record, smtp

parser = pytest.importorskip("prometheus_client.parser")
om_parser = pytest.importorskip("prometheus_client.openmetrics.parser")

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _results(path: Path, *, finished: bool = True) -> Path:
    lines = as_lines(*_world())
    if finished:
        lines.append(
            run_line(RunEnd(True, 8, "2024-11-04T00:00:00.000Z", "2024-11-04T00:01:40.000Z", "mxscan", ""))
        )
    path.write_bytes(b"".join(lines))
    return path


def _mxscan(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "mxscan", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def _samples(text: str) -> Samples:
    """Parsed with both parsers; they must agree."""
    om = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in om_parser.text_string_to_metric_families(text)
        for s in family.samples
    }
    prom = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }
    assert om == prom
    return om


def _expected(report: dict[str, Any]) -> Samples:
    figs = {f["key"]: f for f in report["headline"]}
    want: Samples = {
        ("mxscan_domains_with_mx", ()): figs["with_mx"]["count"],
        ("mxscan_domains_scanned", ()): figs["scanned"]["count"],
    }
    for key, fig in figs.items():
        if key in ("scanned", "with_mx"):
            continue
        want["mxscan_headline_domains", (("figure", key),)] = fig["count"]
        want["mxscan_headline_unknown_domains", (("figure", key),)] = fig["unknown"]
        want["mxscan_headline_ratio", (("figure", key),)] = round(fig["percent"] / 100, 6)
    for status, n in report["meta"]["statuses"].items():
        want["mxscan_domains", (("status", status),)] = n
    for row in report["providers"]["rows"]:
        label = (("provider", row["provider"]),)
        want["mxscan_provider_domains", label] = row["domains"]
        want["mxscan_provider_starttls_domains", label] = row["domains_starttls"]
        want["mxscan_provider_pkix_valid_domains", label] = row["domains_pkix_valid"]
        want["mxscan_provider_dane_domains", label] = row["dane_domains"]
        want["mxscan_provider_mta_sts_domains", label] = row["mta_sts"]
    for question, reasons in report["unknown_why"].items():
        for reason, n in reasons.items():
            want["mxscan_unknown_domains", (("question", question), ("reason", reason))] = n
    return want


def test_report_openmetrics_parses_and_its_gauges_equal_the_reports_figures(tmp_path: Path) -> None:
    results = _results(tmp_path / "r.ndjson")
    report = orjson.loads(_mxscan("report", str(results), "--format", "json"))
    samples = _samples(_mxscan("report", str(results), "--format", "openmetrics"))
    want = _expected(report)
    assert {k: samples.get(k) for k in want} == want
    assert samples["mxscan_headline_domains", (("figure", "starttls"),)] == 4  # a, b, e (google) and c
    assert samples["mxscan_scan_finished", ()] == 1
    assert samples["mxscan_scan_duration_seconds", ()] == 100.0  # the run line's started..ended
    misconf = {k[1][0][1]: v for k, v in samples.items() if k[0] == "mxscan_misconfigurations"}
    assert misconf == {
        "DANE mismatches that would bounce mail": 1,
        "Expired certificates on MX hosts": 1,
        "MTA-STS enforce that would fail delivery": 1,
    }


def test_an_unfinished_file_reports_finished_0_and_no_duration(tmp_path: Path) -> None:
    samples = _samples(
        _mxscan("report", str(_results(tmp_path / "r.ndjson", finished=False)), "--format", "openmetrics")
    )
    assert samples["mxscan_scan_finished", ()] == 0
    assert ("mxscan_scan_duration_seconds", ()) not in samples


def test_live_metrics_fed_each_written_line_equal_the_report(tmp_path: Path) -> None:
    results = _results(tmp_path / "r.ndjson")
    report_samples = _samples(_mxscan("report", str(results), "--format", "openmetrics"))
    live = LiveMetrics(tmp_path / "m.prom", interval=3600)
    for line in results.read_bytes().splitlines(keepends=True):
        live.line(line)
    live.write(finished=True)
    samples = _samples((tmp_path / "m.prom").read_text())
    moving = {"mxscan_scan_duration_seconds", "mxscan_metrics_updated_timestamp_seconds"}
    assert {k: v for k, v in samples.items() if k[0] not in moving} == {
        k: v for k, v in report_samples.items() if k[0] not in moving
    }


def test_live_metrics_rewrite_the_file_once_per_interval(tmp_path: Path) -> None:
    now = [100.0]
    live = LiveMetrics(tmp_path / "m.prom", interval=30, clock=lambda: now[0])
    live.tick()
    assert not (tmp_path / "m.prom").exists()  # nothing before the first interval
    for line in as_lines(record("a.example", mx=((10, "mx.a.example", None, (smtp("mx.a.example"),)),))):
        live.line(line)
    now[0] = 131.0
    live.tick()
    first = _samples((tmp_path / "m.prom").read_text())
    assert first["mxscan_domains_with_mx", ()] == 1 and first["mxscan_scan_finished", ()] == 0
    assert first["mxscan_scan_duration_seconds", ()] == 31.0
    for line in as_lines(record("b.example", mx=((10, "mx.b.example", None, (smtp("mx.b.example"),)),))):
        live.line(line)
    now[0] = 140.0
    live.tick()  # within the interval: unchanged
    assert _samples((tmp_path / "m.prom").read_text())["mxscan_domains_with_mx", ()] == 1
    now[0] = 162.0
    live.tick()
    assert _samples((tmp_path / "m.prom").read_text())["mxscan_domains_with_mx", ()] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.prom"]  # no temporary file left behind


def test_provider_label_values_are_escaped() -> None:
    hostile = 'evil"\\\nprovider'
    lines = as_lines(record("a.example", mx=((10, "mx.a.example", hostile, (smtp("mx.a.example"),)),)))
    live_summary = LiveMetrics(Path("/nonexistent/never-written"))
    for line in lines:
        live_summary.line(line)
    text = render_openmetrics(live_summary.summary.result(), finished=False)
    samples = _samples(text)
    assert samples["mxscan_provider_domains", (("provider", hostile),)] == 1


def test_write_atomically_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "m.prom"
    write_atomically(target, "one\n")
    write_atomically(target, "two\n")
    assert target.read_text() == "two\n" and [p.name for p in tmp_path.iterdir()] == ["m.prom"]
    with pytest.raises(OSError):
        write_atomically(tmp_path / "missing" / "m.prom", "x")


def test_a_metrics_file_that_cannot_be_written_is_one_warning_never_the_end_of_the_scan(
    tmp_path: Path,
) -> None:
    warnings: list[str] = []
    now = [0.0]
    live = LiveMetrics(tmp_path / "gone" / "m.prom", interval=1, clock=lambda: now[0], warn=warnings.append)
    for step in range(1, 4):
        now[0] = step * 2.0
        live.tick()
    live.write(finished=False)
    assert len(warnings) == 1 and "cannot write" in warnings[0]


def test_live_metrics_of_a_resumed_scan_count_the_lines_already_in_the_file(tmp_path: Path) -> None:
    lines = as_lines(*_world())
    earlier, later = lines[:4], lines[4:]
    results = tmp_path / "r.ndjson"
    results.write_bytes(b"".join(earlier))
    live = LiveMetrics(tmp_path / "m.prom", interval=3600)
    live.seed(results)
    for line in later:  # this run's lines; it writes again every host line it references
        live.line(line)
    results.write_bytes(b"".join(lines))
    live.write(finished=False)
    report_samples = _samples(_mxscan("report", str(results), "--format", "openmetrics"))
    moving = {"mxscan_scan_duration_seconds", "mxscan_metrics_updated_timestamp_seconds"}
    samples = _samples((tmp_path / "m.prom").read_text())
    assert {k: v for k, v in samples.items() if k[0] not in moving} == {
        k: v for k, v in report_samples.items() if k[0] not in moving
    }
    assert samples["mxscan_domains_with_mx", ()] == 5


def test_a_compressed_results_file_gives_the_same_gauges_and_its_duration(tmp_path: Path) -> None:
    from engine.compressed import compress_frame

    plain = _results(tmp_path / "r.ndjson")
    body, _, run = plain.read_bytes().rstrip(b"\n").rpartition(b"\n")
    packed = tmp_path / "r.ndjson.gz"
    packed.write_bytes(compress_frame(body + b"\n") + compress_frame(run + b"\n"))  # as the scan writes it
    moving = {"mxscan_metrics_updated_timestamp_seconds"}
    samples = {
        path.name: {
            k: v
            for k, v in _samples(_mxscan("report", str(path), "--format", "openmetrics")).items()
            if k[0] not in moving
        }
        for path in (plain, packed)
    }
    assert samples["r.ndjson.gz"] == samples["r.ndjson"]
    assert samples["r.ndjson.gz"]["mxscan_scan_duration_seconds", ()] == 100.0

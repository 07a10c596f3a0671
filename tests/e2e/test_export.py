"""End to end (issue #16, "after a scan"): a scale world scanned with ``--metrics``,
then exported.

* The domain table's counts, computed with DuckDB from the CSV and the Parquet file
  (SQL over the file, never mxscan's report code), equal ``mxscan report``'s headline
  figures, their unknowns included.
* pyarrow opens the Parquet files and finds the documented schema.
* The metrics textfile exists while the scan runs (finished 0), and at the end it
  parses with prometheus_client and its gauges equal the report's figures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from report.export import COLUMNS
from testbed.control import WorldSpec
from testbed.harness import RunningWorld, running_world
from tests.e2e.worldscan import world_scan_argv

duckdb = pytest.importorskip("duckdb")
pq = pytest.importorskip("pyarrow.parquet")
prom = pytest.importorskip("prometheus_client.parser")

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = 1500
SEED = 16
PROFILE = "sprinkle = 0.04\n"
LIMITS = ("--provider-limit", "outlook.com=32")
#: (report headline key, the domain table's bool column)
QUESTIONS = (
    ("starttls", "starttls"),
    ("pkix", "pkix_valid"),
    ("dnssec", "dnssec_signed"),
    ("dane", "dane_published"),
    ("mta_sts", "mta_sts"),
    ("tlsrpt", "tlsrpt"),
)


def _mxscan(*args: str) -> bytes:
    run = subprocess.run(
        [sys.executable, "-m", "mxscan", *args], cwd=ROOT, capture_output=True, timeout=240, check=False
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    return run.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    """Private (not the session's scenario world): a scale world of its own size, seed and profile."""
    profile = tmp_path_factory.mktemp("profile") / "scale.toml"
    profile.write_text(PROFILE)
    with running_world(WorldSpec("scale", DOMAINS, SEED, str(profile))) as running:
        yield running


@pytest.fixture(scope="module")
def scanned(world: RunningWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scan, with the metrics file sampled while it runs."""
    tmp = tmp_path_factory.mktemp("scan")
    out, metrics = tmp / "results.ndjson", tmp / "metrics" / "mxscan.prom"
    argv = world_scan_argv(world.endpoints, world.state_dir / "domains.txt", out, *LIMITS)
    argv += ["--metrics", str(metrics), "--metrics-interval", "0.2"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    during: list[str] = []
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists():
            during.append(metrics.read_text())
        time.sleep(0.1)
    _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, stderr.decode()[-2000:]
    report = orjson.loads(_mxscan("report", str(out), "--format", "json"))
    return {"out": out, "metrics": metrics, "during": during, "report": report, "tmp": tmp}


def _headline(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in report["headline"]}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_domain_table_counts_equal_the_report_computed_with_duckdb(scanned: dict[str, Any], fmt: str) -> None:
    table = scanned["tmp"] / f"domains.{fmt}"
    _mxscan("export", str(scanned["out"]), "--format", fmt, "--out", str(table))
    source = f"read_csv('{table}', header=true, auto_detect=true)" if fmt == "csv" else f"'{table}'"
    con = duckdb.connect()
    figures = _headline(scanned["report"])
    scanned_n, with_mx = con.execute(
        "SELECT count(*) FILTER (WHERE status <> 'invalid-input'), count(*) FILTER (WHERE has_mx) "
        f"FROM {source}"
    ).fetchone()
    assert (scanned_n, with_mx) == (figures["scanned"]["count"], figures["with_mx"]["count"])
    assert with_mx > 500
    for key, column in QUESTIONS:
        yes, unknown = con.execute(
            f"SELECT count(*) FILTER (WHERE {column}), count(*) FILTER (WHERE {column} IS NULL) "
            f"FROM {source} WHERE has_mx"
        ).fetchone()
        fig = figures[key]
        assert (key, yes, unknown) == (key, fig["count"], fig["unknown"] + fig["not_measured"])
    enforce = con.execute(
        f"SELECT count(*) FROM {source} WHERE has_mx AND mta_sts_mode = 'enforce'"
    ).fetchone()
    assert enforce[0] == figures["mta_sts_enforce"]["count"]
    providers = dict(
        con.execute(
            f"SELECT provider, count(*) FROM {source} WHERE has_mx AND mx_hosts > 0 GROUP BY 1"
        ).fetchall()
    )
    for row in scanned["report"]["providers"]["rows"][:5]:
        assert providers.get(row["provider"]) == row["domains"], row["provider"]


def test_parquet_files_open_with_pyarrow_with_the_documented_schema(scanned: dict[str, Any]) -> None:
    arrow = {"string": "string", "bool": "bool", "int": "int64", "float": "double"}
    for level in ("domain", "host", "address"):
        path = scanned["tmp"] / f"{level}-level.parquet"
        _mxscan("export", str(scanned["out"]), "--format", "parquet", "--level", level, "--out", str(path))
        table = pq.read_table(path)
        assert [(f.name, str(f.type)) for f in table.schema] == [
            (c.name, arrow[c.type]) for c in COLUMNS[level]
        ]
        assert table.num_rows > 500
    addresses = pq.read_table(scanned["tmp"] / "address-level.parquet").to_pylist()
    refs = {a["ref"] for a in addresses}
    host_lines = sum(
        1
        for line in scanned["out"].read_bytes().splitlines()
        if line.startswith(b'{"schema_version":2,"ref"')
    )
    assert 0 < len(refs) <= host_lines  # every exported probe is a host line of the file


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in prom.text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_file_during_and_after_the_scan_equals_the_report(scanned: dict[str, Any]) -> None:
    assert scanned["during"], "the metrics file was never seen while the scan ran"
    first = _samples(scanned["during"][0])
    assert first[("mxscan_scan_finished", ())] == 0
    final = _samples(scanned["metrics"].read_text())
    assert final[("mxscan_scan_finished", ())] == 1
    figures = _headline(scanned["report"])
    assert final[("mxscan_domains_with_mx", ())] == figures["with_mx"]["count"]
    for key, fig in figures.items():
        if key in ("scanned", "with_mx"):
            continue
        assert final[("mxscan_headline_domains", (("figure", key),))] == fig["count"], key
        assert final[("mxscan_headline_unknown_domains", (("figure", key),))] == fig["unknown"], key
    for row in scanned["report"]["providers"]["rows"]:
        label = (("provider", row["provider"]),)
        assert final[("mxscan_provider_starttls_domains", label)] == row["domains_starttls"]
        assert final[("mxscan_provider_dane_domains", label)] == row["dane_domains"]
    assert [p.name for p in scanned["metrics"].parent.iterdir()] == ["mxscan.prom"]

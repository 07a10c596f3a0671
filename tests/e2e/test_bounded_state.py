"""A real scan keeps per host only its verdict once the host line is written, writes each
host line once, and summarises providers by totals and a top list (issue #17)."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from engine.compressed import open_results
from probes.dns.reverse import PTR_CACHE_ENTRIES
from probes.results import is_host_line, read_domain_records
from probes.smtp.politeness import SUMMARY_TOP_PROVIDERS
from testbed.harness import RunningWorld
from tests.e2e.worldscan import world_scan_argv

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["out.ndjson", "out.ndjson.gz"])
def test_each_host_line_once_and_the_cache_holds_verdicts_after_writing(
    shared_world: RunningWorld, tmp_path: Path, name: str
) -> None:
    out, summary = tmp_path / name, tmp_path / "summary.json"
    argv = world_scan_argv(
        shared_world.endpoints, shared_world.state_dir / "domains.txt", out, "--summary-json", str(summary)
    )
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    with open_results(out) as stream:
        lines = [orjson.loads(line) for line in stream]
    refs = Counter(line["ref"] for line in lines if is_host_line(line))
    assert refs and max(refs.values()) == 1  # no host line written twice in one run
    shared = sum(
        1 for r in read_domain_records(out) for t in r["mx_transport"] for ref in t["smtp_refs"]
    ) - len(refs)
    assert shared > 0  # domains that reused a host written before them
    report = orjson.loads(summary.read_bytes())
    smtp = report["caches"]["smtp"]
    assert smtp["compacted"] == len(refs) - smtp["evicted"] and smtp["evicted"] == 0
    providers = report["politeness"]["providers"]
    assert providers["connections"] >= 1 and len(providers["top"]) <= SUMMARY_TOP_PROVIDERS


def test_reverse_dns_is_looked_up_once_per_address_in_a_bounded_cache_reported_in_the_summary(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    """Issue #17: the PTR results were kept for every address probed, unreported; now a bounded
    LRU (``PTR_CACHE_ENTRIES``) whose size and evictions --summary-json shows."""
    out, summary = tmp_path / "out.ndjson", tmp_path / "summary.json"
    argv = world_scan_argv(
        shared_world.endpoints, shared_world.state_dir / "domains.txt", out, "--summary-json", str(summary)
    )
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    with open_results(out) as stream:
        hosts = [line for line in map(orjson.loads, stream) if is_host_line(line)]
    addresses = {line["smtp"]["address"] for line in hosts if line["ptr"] is not None}
    ptr = orjson.loads(summary.read_bytes())["caches"]["ptr"]
    assert addresses and ptr["misses"] == len(addresses)  # each address asked once
    assert ptr["entries"] == len(addresses) <= PTR_CACHE_ENTRIES and ptr["evicted"] == 0

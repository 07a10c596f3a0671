"""The probe process (SMTP and policy connections in a forked child) against the scenario world.

It must not change a single measured fact (inline and separate runs agree on every
domain), and losing it mid-scan must leave a complete, classified results file,
never a hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.results import read_domain_records
from testbed.control import WorldSpec
from testbed.harness import RunningWorld, running_world
from tests.e2e.worldscan import world_scan_argv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world() -> Iterator[RunningWorld]:
    with running_world(WorldSpec("scenarios")) as running:
        yield running


def _facts(path: Path) -> dict[str, Any]:
    """Per domain: posture, MTA-STS verdict and per-address SMTP facts (no timings)."""
    facts = {}
    for r in read_domain_records(path):
        smtp = sorted(
            (a["host"], a["address"], a["status"], a["starttls"], (a["pkix"] or {}).get("reason"),
             ((a["tls"] or {}).get("chain") or {}).get("certs", [{}])[0].get("sha256"))
            for t in r["mx_transport"] for a in t["addresses"]
        )  # fmt: skip
        sts = r["mta_sts"] or {}
        facts[r["domain"]] = (r["status"], r["posture"], sts.get("mode"), sts.get("findings"), smtp)
    return facts


def test_inline_and_probe_process_scans_measure_the_same(world: RunningWorld, tmp_path: Path) -> None:
    domains = world.state_dir / "domains.txt"
    runs = {}
    for mode, extra in (("separate", ()), ("inline", ("--inline-probes",))):
        out = tmp_path / f"{mode}.ndjson"
        argv = world_scan_argv(world.endpoints, domains, out, *extra)
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=180, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        runs[mode] = _facts(out)
    assert len(runs["separate"]) == len(domains.read_text().split())
    assert runs["separate"] == runs["inline"]


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_probe_process_leaves_every_domain_recorded_and_classified(
    world: RunningWorld, tmp_path: Path
) -> None:
    out = tmp_path / "killed.ndjson"
    argv = world_scan_argv(world.endpoints, world.state_dir / "domains.txt", out, "--concurrency", "4")
    scan = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not out.exists() or out.stat().st_size == 0:  # probing has started
            assert time.monotonic() < deadline and scan.poll() is None
            time.sleep(0.05)
        (probe_process,) = _children(scan.pid)
        os.kill(probe_process, signal.SIGKILL)
        _, stderr = scan.communicate(timeout=120)
    finally:
        if scan.poll() is None:
            scan.kill()
    assert scan.returncode == 0, stderr.decode()[-2000:]
    records = list(read_domain_records(out))
    assert len({r["domain"] for r in records}) == len((world.state_dir / "domains.txt").read_text().split())
    lost = [r for r in records if any("OffloadLost" in e["detail"] for e in r["errors"])]
    assert lost, "domains measured after the kill record the lost probe process"
    for r in lost:
        assert {e["status"] for e in r["errors"]} == {"unknown-error"}
        assert r["posture"] is None or r["posture"]["starttls"] in ("unknown", "not-applicable")

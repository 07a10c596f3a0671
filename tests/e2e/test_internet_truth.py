"""The Internet-like scenario set (issue #12, testbed/internet.py) scanned with the user's
DEFAULT deadlines and retries (connect 10 s, 20 s per phase, one retry after 5 s): every
probed address equals its truth (testbed/truth.py, per address under
testbed/scanpolicy.py's DEFAULT_POLICY, which mirrors the scanner's defaults): status,
phase, STARTTLS, greylisted, connections within the retry policy, the addresses not probed
by reason, and the policy fetch's status and timed-out phase.  Silent hosts set its
duration (~50 s): one such scan in CI, marked slow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.results import read_domain_records
from testbed.control import WorldSpec
from testbed.harness import RunningWorld, running_world
from testbed.internet import internet_scenario_world
from testbed.scanpolicy import DEFAULT_POLICY
from testbed.truth import MX_HOSTS_FOLLOWED, truth
from tests.e2e.worldscan import egress_targets

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world() -> Iterator[RunningWorld]:
    """Private: the Internet-like world remembers clients (greylisting passes a client's second
    connection), so the truth holds only for the first scan of a fresh world."""
    with running_world(WorldSpec("internet-scenarios")) as running:
        yield running


@pytest.fixture(scope="module")
def scanned(world: RunningWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The scan with defaults: only the world's endpoints and the scanner's identity given."""
    out = tmp_path_factory.mktemp("scan") / "results.ndjson"
    e = world.endpoints
    argv = [
        *(sys.executable, "-m", "mxscan", "scan", str(world.state_dir / "domains.txt"), "--out", str(out)),
        *("--resolver", str(e["dns"]), "--smtp-port", str(e["smtp_port"])),
        *("--https-port", str(e["https_port"]), "--trust-store", "none"),
        *("--ca-file", str(e["ca_file"]), "--intermediates", str(e["intermediates"])),
        *("--preflight-bogus", str(e["preflight_bogus"]), "--ehlo-name", "scanner.mxscan.test"),
        *(arg for target in egress_targets(e) for arg in ("--egress-check", target)),
        *("--progress", "off"),
    ]  # fmt: skip
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    return {r["domain"]: r for r in read_domain_records(out)}


TRUTH = {row["domain"]: row for row in truth(internet_scenario_world(), policy=DEFAULT_POLICY)}


def _transports(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["host"]: t for t in record.get("mx_transport") or ()}


def test_every_scenario_domain_is_scanned(scanned: dict[str, dict[str, Any]]) -> None:
    assert set(scanned) == set(TRUTH)


@pytest.mark.parametrize("domain", sorted(TRUTH))
def test_every_probed_address_equals_its_truth(domain: str, scanned: dict[str, dict[str, Any]]) -> None:
    row, record = TRUTH[domain], scanned[domain]
    transports = _transports(record)
    for host in row["mx_hosts"][:MX_HOSTS_FOLLOWED]:
        transport = transports[host["host"]]
        assert transport["not_probed"] == host["not_probed"], host["host"]
        found = {probe["address"]: probe for probe in transport["addresses"]}
        expected = {a["address"]: a for a in host["addresses"] if a["probed"]}
        assert set(found) == set(expected), host["host"]
        for address, truth_address in expected.items():
            want, got = truth_address["smtp"], found[address]
            where = (host["host"], address, truth_address["behaviour"], got["detail"])
            for key in ("status", "phase", "starttls"):
                if want[key] is not None:  # null: the truth has no single verdict (421 above N)
                    assert got[key] == want[key], (key, *where)
            assert bool(got.get("greylisted")) is want["greylisted"], where
            assert got["attempts"] <= want["max_attempts"], where
            assert len(got.get("attempt_log") or ()) == got["attempts"], where


@pytest.mark.parametrize(
    "domain", sorted(d for d, row in TRUTH.items() if (row["mta_sts"] or {}).get("fetch"))
)
def test_the_policy_fetch_equals_its_truth(domain: str, scanned: dict[str, dict[str, Any]]) -> None:
    want = TRUTH[domain]["mta_sts"]["fetch"]
    fetch = scanned[domain]["mta_sts"]["fetch"]
    assert fetch["status"] == want["status"], fetch["detail"]
    if want["timeout"]:
        assert fetch["detail"].startswith(f"timeout in phase {want['phase']}"), fetch["detail"]
    assert TRUTH[domain]["mta_sts"]["mode"] == (scanned[domain]["mta_sts"] or {}).get("mode")

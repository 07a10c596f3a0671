"""End to end (issue #16): the egress pre-flight and PTR/FCrDNS against the scenario world,
with the installed ``mxscan`` run from another directory.

Only loopback is contacted: every scan passes the world's own egress targets or targets on
127.0.0.1 / ::1 that refuse or never accept (the default targets are never used here).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from testbed.harness import RunningWorld
from tests.e2e.worldscan import egress_targets, world_scan_argv

MXSCAN = Path(sys.executable).parent / "mxscan"
EGRESS_DEADLINE = 4.0  # mxscan.defaults.EGRESS_TIMEOUT
PTR_DOMAINS = ("ptr-mismatch.scenario.test", "ptr-missing.scenario.test", "valid-cert.scenario.test")


def _argv(
    shared_world: RunningWorld, tmp: Path, names: tuple[str, ...], *egress: str
) -> tuple[list[str], Path]:
    """The world's scan command line with ``egress`` as the only egress targets."""
    (tmp / "domains.txt").write_text("".join(f"{n}\n" for n in names))
    argv = world_scan_argv(shared_world.endpoints, tmp / "domains.txt", tmp / "results.ndjson")
    kept: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--egress-check":
            i += 2  # the world's own target: replaced by ``egress``
            continue
        kept.append(argv[i])
        i += 1
    for target in egress:
        kept += ["--egress-check", target]
    return [str(MXSCAN), *kept[3:]], tmp / "results.ndjson"


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _lines(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]


def _free_port(host: str, family: socket.AddressFamily) -> int:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def test_a_blocked_port_25_exits_2_in_seconds_naming_the_cause(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    """Nothing listens on the check address: refused, so exit 2 before any domain is scanned."""
    target = f"127.0.0.1:{_free_port('127.0.0.1', socket.AF_INET)}"
    argv, out = _argv(shared_world, tmp_path, PTR_DOMAINS, target)
    began = time.monotonic()
    done = _run(argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - began < EGRESS_DEADLINE + 10
    assert "no outbound connection to port 25 over IPv4" in done.stderr
    assert "refused" in done.stderr and "--skip-egress-check" in done.stderr
    assert not any("domain" in line for line in _lines(out)) if out.exists() else True


def test_a_listener_that_never_accepts_is_blocked_with_the_cloud_as_cause(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:  # fill the accept queue: later SYNs are dropped, connects time out
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    try:
        argv, _ = _argv(shared_world, tmp_path, PTR_DOMAINS, f"127.0.0.1:{port}")
        began = time.monotonic()
        done = _run(argv, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert time.monotonic() - began < EGRESS_DEADLINE + 10
        assert "blocked by the hosting provider or cloud" in done.stderr
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_ipv6_unreachable_with_ipv4_fine_scans_ipv4_only_and_records_it(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    v6 = f"[::1]:{_free_port('::1', socket.AF_INET6)}"
    argv, out = _argv(shared_world, tmp_path, ("ipv6-only.scenario.test", "valid-cert.scenario.test"),
                      *egress_targets(shared_world.endpoints), v6)  # fmt: skip
    done = _run(argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scanning IPv4 only" in done.stderr
    domains = {r["domain"]: r for r in _lines(out) if "domain" in r}
    for record in domains.values():
        egress = record["scan"]["egress"]
        assert (egress["ipv4"], egress["ipv6"], egress["ipv4_only"]) == ("reachable", "blocked", True)
    # the IPv6-only MX host (::1) was not probed; the IPv4 one was
    assert [t["smtp_refs"] for t in domains["ipv6-only.scenario.test"]["mx_transport"]] == [[]]
    assert domains["valid-cert.scenario.test"]["mx_transport"][0]["smtp_refs"]


def test_egress_attempts_are_written_once_per_run_not_on_every_domain_line(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    """Domain lines carry the verdicts only (a line must stand alone, and every byte on it is
    repeated per domain); the attempts are on the run line and in --summary-json."""
    v6 = f"[::1]:{_free_port('::1', socket.AF_INET6)}"
    argv, out = _argv(shared_world, tmp_path, PTR_DOMAINS, *egress_targets(shared_world.endpoints), v6)
    done = _run([*argv, "--summary-json", str(tmp_path / "summary.json")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = _lines(out)
    verdicts = {"skipped": False, "ipv4": "reachable", "ipv6": "blocked", "ipv4_only": True}
    for record in (r for r in lines if "domain" in r):
        assert record["scan"]["egress"] == verdicts
    run = lines[-1]["run"]
    outcomes = [(a["family"], a["outcome"]) for a in run["egress"]["attempts"]]
    assert outcomes == [("ipv4", "connected"), ("ipv6", "refused")]
    assert run["egress"]["attempts"][0]["local_address"] == "127.0.0.1"
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["egress"] == run["egress"]
    assert summary["vantage"]["addresses"] == ["127.0.0.1"]


def test_ptr_matching_mismatching_and_missing_are_recorded_per_address(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    argv, out = _argv(shared_world, tmp_path, PTR_DOMAINS, *egress_targets(shared_world.endpoints))
    done = _run(argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = _lines(out)
    ptr = {r["ref"].split("@")[0].removeprefix("smtp:"): r["ptr"] for r in lines if "ref" in r}
    assert ptr["mx.valid-cert.scenario.test"]["fcrdns"] == "confirmed"
    assert ptr["mx.valid-cert.scenario.test"]["names"] == ["mx.valid-cert.scenario.test"]
    assert ptr["mx.ptr-mismatch.scenario.test"]["fcrdns"] == "mismatch"
    assert ptr["mx.ptr-mismatch.scenario.test"]["names"] == ["mx.valid-cert.scenario.test"]
    assert ptr["mx.ptr-missing.scenario.test"]["fcrdns"] == "no-ptr"
    assert ptr["mx.ptr-missing.scenario.test"]["outcome"] == "nxdomain"
    vantage = next(r for r in lines if "domain" in r)["scan"]["vantage"]
    assert vantage["addresses"] == ["127.0.0.1"]
    assert (
        vantage["ptr"][0]["names"] == ["scanner.mxscan.test"] and vantage["ptr"][0]["fcrdns"] == "confirmed"
    )
    assert vantage["ehlo_matches"] is True


def test_the_report_counts_the_scenario_worlds_ptr_verdicts_and_shows_the_vantage(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    argv, out = _argv(shared_world, tmp_path, PTR_DOMAINS, *egress_targets(shared_world.endpoints))
    assert _run(argv, cwd=tmp_path).returncode == 0
    report = _run([str(MXSCAN), "report", str(out), "--format", "json"], cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    ptr = orjson.loads(report.stdout)["ptr"]
    # one address per scenario: valid-cert confirmed, ptr-mismatch mismatching, ptr-missing without
    assert (ptr["addresses"], ptr["with_ptr"]) == (3, 2)
    assert ptr["labels"] == {"confirmed": 1, "mismatch": 1, "no-ptr": 1}
    assert ptr["egress"] == {"IPv4 reachable, IPv6 untested": 3}
    (vantage,) = ptr["vantages"]
    assert vantage.startswith("127.0.0.1 (PTR scanner.mxscan.test; FCrDNS confirmed)")
    text = _run([str(MXSCAN), "report", str(out)], cwd=tmp_path).stdout
    assert "Vantage: where the scan measured from" in text and "Reverse DNS (PTR / FCrDNS)" in text


def test_an_ehlo_name_that_is_not_the_egress_address_is_warned_about(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    argv, _ = _argv(
        shared_world, tmp_path, ("valid-cert.scenario.test",), *egress_targets(shared_world.endpoints)
    )
    argv[argv.index("scanner.mxscan.test")] = "mx.valid-cert.scenario.test"
    done = _run(argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "WARNING: the EHLO name mx.valid-cert.scenario.test resolves to" in done.stderr

"""The probe process (SMTP and policy connections in a forked child) against the scenario world.

It must not change a single measured fact (inline and separate runs agree on every
domain), and losing it mid-scan must leave a complete, classified results file,
never a hang.

The world and its uninterrupted scan (with a probe process) are the session's
(tests/worlds.py): these tests only read them; each killed scan writes its own file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from probes.results import read_domain_records
from testbed.harness import RunningWorld
from testbed.scenarios import SCENARIO_SUFFIX
from tests.e2e.worldscan import POLL, world_scan_argv

ROOT = Path(__file__).resolve().parents[2]


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


def test_inline_and_probe_process_scans_measure_the_same(
    shared_world: RunningWorld, shared_scan: Path, tmp_path: Path
) -> None:
    domains = shared_world.state_dir / "domains.txt"
    out = tmp_path / "inline.ndjson"
    argv = world_scan_argv(shared_world.endpoints, domains, out, "--inline-probes")
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    separate = _facts(shared_scan)
    assert len(separate) == len(domains.read_text().split())
    assert separate == _facts(out)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _lost(address: dict[str, Any]) -> bool:
    return bool(address["detail"].startswith("OffloadLost"))


#: Measured before the kill: their DNS answers alone make their records (no probe process).
_BEFORE_THE_KILL = ("nxdomain", "null-mx", "refused", "servfail", "no-address-mx")
#: Each holds a scan slot for at least 3 s (no banner; EHLO after the read timeout; a
#: resolver that never answers): with three slots and no parking, no later domain starts
#: before the kill.
_HOLDING_THE_SLOTS = ("blackhole", "tarpit", "timeout")


def _kill_order(names: list[str]) -> list[str]:
    """The held slots come right after the DNS-only domains and the MTA-STS domains come
    last: their policy fetches start after the kill whatever the machine's speed."""
    rank = {f"{label}.{SCENARIO_SUFFIX}": i for i, label in enumerate(_BEFORE_THE_KILL + _HOLDING_THE_SLOTS)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name.startswith("sts-")))


def _connected(peers: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """The IPv4 peers among ``peers`` that some socket of this network namespace has an
    established TCP connection to (/proc/net/tcp: remote address in column 3, state 01)."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if fields[3] != "01":
            continue
        address, port = fields[2].split(":")
        peer = (socket.inet_ntoa(int(address, 16).to_bytes(4, "little")), int(port, 16))
        if peer in peers:
            found.add(peer)
    return found


def _smtp_peers(results: Path, domains: tuple[str, ...], port: int) -> set[tuple[str, int]]:
    wanted = {f"{label}.{SCENARIO_SUFFIX}" for label in domains}
    return {
        (a["address"], port)
        for r in read_domain_records(results) if r["domain"] in wanted
        for t in r["mx_transport"] for a in t["addresses"]
    }  # fmt: skip


def test_a_killed_probe_process_is_recorded_unknown_counted_unknown_and_retried(
    shared_world: RunningWorld, shared_scan: Path, tmp_path: Path
) -> None:
    """Issue #18 item 2: the domains whose SMTP and MTA-STS results were lost with the probe
    process record them as unknown-error (OffloadLost) with STARTTLS unknown, never
    not-applicable; the report counts them unknown; --retry-unknown measures them again.

    The kill point is chosen by the scan's own progress, never by the clock: the probe
    process is killed while it holds connections to the silent and the tarpit host, and at
    most three domains are admitted at once (no parking), so every later domain (the
    MTA-STS ones among them) is measured after the kill on any machine."""
    names = (shared_world.state_dir / "domains.txt").read_text().split()
    domains = tmp_path / "domains.txt"
    domains.write_text("\n".join(_kill_order(names)) + "\n")
    out = tmp_path / "killed.ndjson"
    argv = world_scan_argv(shared_world.endpoints, domains, out, "--concurrency", "3", "--max-parked", "0")
    holders = _smtp_peers(shared_scan, _HOLDING_THE_SLOTS, int(shared_world.endpoints["smtp_port"]))
    assert len(holders) == 2, holders
    scan = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        give_up = time.monotonic() + 120
        while _connected(holders) != holders:
            assert scan.poll() is None, "the scan ended before it reached the silent hosts"
            assert time.monotonic() < give_up, "the scan never reached the silent hosts"
            time.sleep(POLL)
        (probe_process,) = _children(scan.pid)
        os.kill(probe_process, signal.SIGKILL)
        _, stderr = scan.communicate(timeout=120)
    finally:
        if scan.poll() is None:
            scan.kill()
    assert scan.returncode == 0, stderr.decode()[-2000:]
    assert b"WARNING: the probe process is gone" in stderr and b"--retry-unknown" in stderr
    records = list(read_domain_records(out))
    assert len({r["domain"] for r in records}) == len(names)

    # 1. recorded as unknown
    lost = [r for r in records if any(_lost(a) for t in r["mx_transport"] for a in t["addresses"])]
    assert len(lost) >= 10, "domains measured after the kill record the lost probe process"
    in_flight = {f"{label}.{SCENARIO_SUFFIX}" for label in ("blackhole", "tarpit")}
    assert in_flight <= {r["domain"] for r in lost}, "a probe waiting at the kill is lost with it"
    for r in lost:
        addresses = [a for t in r["mx_transport"] for a in t["addresses"]]
        for a in filter(_lost, addresses):
            assert (a["status"], a["starttls"], a["pkix"]) == ("unknown-error", "unknown", None)
        if all(map(_lost, addresses)):
            assert r["posture"]["starttls"] == "unknown" and r["posture"]["pkix_valid"] == "unknown"
    fetches = [r["mta_sts"]["fetch"] for r in records if (r["mta_sts"] or {}).get("fetch")]
    assert any(f["status"] == "unknown-error" and f["detail"].startswith("OffloadLost") for f in fetches)

    # 2. counted as unknown by the report
    report = subprocess.run(
        [*argv[:3], "report", str(out), "--format", "json"], cwd=ROOT, capture_output=True, timeout=60
    )
    assert report.returncode == 0, report.stderr.decode()
    starttls = next(f for f in json.loads(report.stdout)["headline"] if f["key"] == "starttls")
    with_mx = [r for r in records if r["dns"] and r["dns"]["has_mx"]]
    lost_entirely = [
        r for r in lost if r in with_mx and all(_lost(a) for t in r["mx_transport"] for a in t["addresses"])
    ]
    assert lost_entirely
    assert starttls["unknown"] == sum(r["posture"]["starttls"] == "unknown" for r in with_mx)
    assert starttls["unknown"] >= len(lost_entirely)

    # 3. measured again by --retry-unknown: the file then says what an uninterrupted scan says
    again = subprocess.run([*argv, "--retry-unknown"], cwd=ROOT, capture_output=True, timeout=180)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    retried = {r["domain"] for r in lost}
    redone = int(again.stderr.decode().split("retrying ")[1].split()[0])
    assert redone >= len(retried)
    after = list(read_domain_records(out))
    assert not [
        r["domain"] for r in after if any(_lost(a) for t in r["mx_transport"] for a in t["addresses"])
    ]
    assert _facts(out) == _facts(shared_scan)

"""The ``mxscan scan`` command line that measures a running test world, shared by
the end-to-end tests (each adds only what its own case needs), and the one progress-based
wait that chooses where a test kills or stops a running scan."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.compressed import open_results

#: Timeouts short enough for the blackhole/tarpit/resolver-timeout scenarios and longer
#: than slow-banner's 1 s; DNS gets 3 attempts of 2 s so a loaded machine (CI, two test
#: worlds at once) does not turn a slow answer into an "unknown"; no SMTP retries unless a
#: test asks for them.
FAST_SCAN_ARGS = (
    "--ehlo-name", "scanner.mxscan.test", "--trust-store", "none", "--smtp-timeout", "3",
    "--smtp-connect-timeout", "3", "--smtp-retries", "0", "--dns-timeout", "2", "--dns-attempts", "3",
    "--progress", "off",
)  # fmt: skip


def egress_targets(endpoints: Mapping[str, Any]) -> list[str]:
    """The world's egress pre-flight targets (its resolver's TCP listener in a world started
    before ``endpoints.json`` listed them)."""
    return [str(t) for t in endpoints.get("egress_check") or [endpoints["dns"]]]


def world_scan_argv(endpoints: Mapping[str, Any], domains: Path, out: Path, *extra: str) -> list[str]:
    """Every endpoint of the world (resolver, ports, CA, intermediates, bogus name) as options."""
    return [
        *(sys.executable, "-m", "mxscan", "scan", str(domains), "--out", str(out)),
        *("--resolver", str(endpoints["dns"])),
        *("--smtp-port", str(endpoints["smtp_port"]), "--https-port", str(endpoints["https_port"])),
        *("--ca-file", str(endpoints["ca_file"]), "--intermediates", str(endpoints["intermediates"])),
        *("--preflight-bogus", str(endpoints["preflight_bogus"])),
        # The world's own egress pre-flight targets: a test never contacts the default ones.
        *(arg for target in egress_targets(endpoints) for arg in ("--egress-check", target)),
        *FAST_SCAN_ARGS,
        *extra,
    ]


def dns_scan_args(resolver: str, listing: Path, out: Path, *extra: str) -> list[str]:
    """``scan`` of a list with --dns-only against a scenario-world resolver ``HOST:PORT``."""
    return [
        *("scan", str(listing), "--out", str(out), "--dns-only", "--progress", "off"),
        *("--resolver", resolver, "--preflight-bogus", "dnssec-failed.test"),
        *("--dns-timeout", "2", "--dns-attempts", "2", "--concurrency", "1"),
        *extra,
    ]


#: How often a waiting test looks at the results file: often enough to kill a scan within a
#: few records of its target, rarely enough not to take a loaded machine's cores from it.
POLL = 0.02


def domain_lines(path: Path) -> int:
    """Complete domain lines in a results file now, plain or gzip, read while a scan writes it
    (host lines, the run line and a torn last line are not counted)."""
    if not path.exists():
        return 0
    with open_results(path) as stream:
        return sum(1 for line in stream if line.endswith(b"}\n") and "domain" in orjson.loads(line))


def wait_for_domain_lines(proc: subprocess.Popen[Any], path: Path, count: int, deadline: float = 120) -> int:
    """Block until ``path`` holds at least ``count`` domain lines while ``proc`` still runs: a
    kill point chosen by progress, never by the clock (``deadline`` only keeps a scan that
    stopped writing from hanging the test). The count reached."""
    give_up = time.monotonic() + deadline
    while (written := domain_lines(path)) < count:
        assert proc.poll() is None, f"the scan ended before writing {count} domain lines (had {written})"
        assert time.monotonic() < give_up, f"no {count} domain lines within {deadline} s (had {written})"
        time.sleep(POLL)
    return written

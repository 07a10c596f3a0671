"""The visible tail (issue #12): while a domain waits on a silent host, the progress line says
``waiting=1 domains/1 hosts <=Ns`` and ``--summary-json``'s ``tail`` counts it at its peak; when
the scan ends both settle to zero (they once kept the probe process's last snapshot: "waiting=0
domains/1 hosts" and ``tail.hosts`` 1 after the scan had finished). A real scan of the Internet-
like scenario world (testbed/internet.py: "silent-after-accept" accepts TCP and never greets)
beside a domain that answers, with a 6 s phase deadline (past the 5 s active grace, so the
connection is "waiting" before it times out) and one retry after 3 s. Observed through the
progress line, never by wall-clock sleeps."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson

from testbed.control import WorldSpec
from testbed.harness import running_world
from tests.e2e.worldscan import world_scan_argv

SILENT = "silent-after-accept.scenario.test"
ANSWERING = "latency-only.scenario.test"
WAITING = re.compile(r"waiting=(\d+) domains/(\d+) hosts <=(\S+)")


def test_progress_and_summary_show_a_silent_host_while_it_waits_and_zero_at_the_end(tmp_path: Path) -> None:
    domains = tmp_path / "domains.txt"
    domains.write_text(f"{ANSWERING}\n{SILENT}\n")
    out, summary = tmp_path / "out.ndjson", tmp_path / "summary.json"
    # A private Internet-like world: it remembers clients (greylisting), so no other test shares it.
    with running_world(WorldSpec("internet-scenarios")) as world:
        argv = world_scan_argv(world.endpoints, domains, out)
        argv += ["--smtp-timeout", "6", "--smtp-retries", "1", "--smtp-retry-delay", "3"]
        argv += ["--progress", "tty", "--summary-json", str(summary)]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert proc.stderr is not None
        seen_waiting: list[tuple[int, int]] = []
        lines: list[str] = []
        try:
            buffer = b""
            while chunk := proc.stderr.read1(4096):
                buffer += chunk
                *done, buffer = re.split(rb"[\r\n]", buffer)
                for raw in done:
                    line = raw.decode("utf-8", "replace").replace("\x1b[K", "").strip()
                    if not line:
                        continue
                    lines.append(line)
                    if match := WAITING.search(line):
                        seen_waiting.append((int(match[1]), int(match[2])))
            lines.append(buffer.decode("utf-8", "replace").replace("\x1b[K", "").strip())
        finally:
            code = proc.wait(timeout=120)
    assert code == 0, lines[-5:]
    # while the silent host was waited on: one domain on one host (its deadline shown)
    assert (1, 1) in seen_waiting, lines[-20:]
    # the last status lines say nothing waits any more
    final = [line for line in lines if "waiting=" in line][-1]
    assert "waiting=0" in final and not WAITING.search(final), final
    tail = orjson.loads(summary.read_bytes())["tail"]
    assert (tail["domains"], tail["hosts"], tail["settled_within_s"]) == (0, 0, None)
    assert tail["peak_domains"] >= 1 and tail["peak_hosts"] >= 1

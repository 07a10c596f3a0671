"""Shared helpers for the scan benchmarks: run mxscan as a child process and
read back what it did (wall time, peak RSS, per-domain latencies, statuses)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes.results import read_domain_records  # noqa: E402 - after the path setup


@dataclass
class ScanRun:
    domains: int
    wall: float
    peak_rss_mb: float
    cpu_seconds: float
    exit_code: int
    summary: dict[str, object]
    durations_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
    #: Peak of the summed proportional set size of the scan's processes, sampled once a second:
    #: pages the probe process shares with the scan process after the fork count once.
    peak_pss_mb: float = 0.0

    @property
    def rate(self) -> float:
        return self.domains / self.wall if self.wall else 0.0

    @property
    def cpu_us_per_domain(self) -> float:
        """Scanner CPU (user + system) per domain: the cost that must stay flat with size."""
        return self.cpu_seconds / self.domains * 1e6 if self.domains else 0.0

    def percentile(self, p: float) -> float:
        if not self.durations_ms:
            return 0.0
        ordered = sorted(self.durations_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run_mxscan(args: list[str], out: Path, summary: Path, interpreter: list[str] | None = None) -> ScanRun:
    """One ``mxscan scan`` in a child process; wall time and the child's peak RSS via wait4.

    ``interpreter``: what runs ``-m mxscan`` (default: this Python), e.g. a tracing wrapper.
    ``extra["peak_rss_mb"]``: each process's own peak, in the order they were seen."""
    argv = [*(interpreter or [sys.executable]), "-m", "mxscan", "scan", *args, "--out", str(out), "--fresh"]
    argv += ["--progress", "off", "--summary-json", str(summary)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    # Peak RSS from the child's own VmHWM, polled: ru_maxrss would also count the copy
    # of this (large) benchmark process that existed between fork and exec.  The scan's
    # probe process (a fork of it) counts too: the figure is the sum of both peaks.
    # The sum of peaks counts the pages the two share after the fork twice, so the PSS sum is
    # sampled too (less often: the kernel walks every page table to report it).
    peaks: dict[int, int] = {}
    peak_pss_kb = 0
    polls = 0
    while True:
        pids = (proc.pid, *_children(proc.pid))
        for pid in pids:
            peaks[pid] = max(peaks.get(pid, 0), _vm_hwm_kb(pid))
        if polls % 10 == 0:
            peak_pss_kb = max(peak_pss_kb, sum(_pss_kb(pid) for pid in pids))
        polls += 1
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.1)
    peak_kb = sum(peaks.values())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    run = ScanRun(
        domains=0,
        wall=wall,
        peak_rss_mb=peak_kb / 1024,
        peak_pss_mb=peak_pss_kb / 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        exit_code=proc.returncode,
        summary=orjson.loads(summary.read_bytes()) if summary.exists() else {},
        extra={"peak_rss_mb": [round(kb / 1024, 1) for kb in peaks.values()]},
    )
    slow: list[tuple[float, str]] = []
    for record in read_domain_records(out):
        run.domains += 1
        run.statuses[record["status"]] += 1
        run.durations_ms.append(record["duration_ms"])
        slow.append((record["duration_ms"], record["domain"]))
    run.slowest = sorted(slow, reverse=True)[:10]
    return run


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _proc_kb(pid: int, file: str, field: str) -> int:
    """A "<field>: <n> kB" line of /proc/<pid>/<file>, in kB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _vm_hwm_kb(pid: int) -> int:
    return _proc_kb(pid, "status", "VmHWM:")


def _pss_kb(pid: int) -> int:
    return _proc_kb(pid, "smaps_rollup", "Pss:")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0

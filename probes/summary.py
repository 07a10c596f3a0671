"""The run totals of one scan (``mxscan scan --summary-json``): for benchmarks and scheduled
jobs, what the scan wrote, how long it took, and the figures of its scheduler, resolver
client, caches, politeness and unresponsive tail.

Where the scan measured from (every egress pre-flight attempt, the vantage) is written once
here and on the run line; domain lines carry only the verdicts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from engine.progress import Tail
from engine.scheduler import RunStats
from engine.singleflight import SingleFlightStats
from probes.dns.client import ClientStatistics
from probes.smtp.politeness import Politeness
from probes.writer import ResultWriter

__all__ = ["run_summary"]

#: Politeness figures the progress line reads live that are no totals.
_LIVE_ONLY = ("throttled", "unresponsive", "deadline")


def run_summary(
    lines: ResultWriter,
    *,
    seconds: float,
    scheduler: RunStats[Any],
    dns: ClientStatistics,
    caches: Mapping[str, SingleFlightStats],
    politeness: Politeness,
    tail: Tail,
) -> dict[str, object]:
    """The totals as one JSON object (the keys are the file's documented format)."""
    return {
        "records_written": lines.written,
        "resumed_skipped": lines.skipped_done,
        "seconds": round(seconds, 3),
        "scheduler": dataclasses.asdict(scheduler),
        "dns": dataclasses.asdict(dns),
        "caches": {name: dataclasses.asdict(stats) for name, stats in caches.items()},
        "politeness": {k: v for k, v in politeness.items() if k not in _LIVE_ONLY},
        "tail": tail.summary(time.time()),
        "egress": lines.egress,
        "vantage": lines.meta.vantage,
    }

"""The scan-level defaults of the ``mxscan`` command, each with its reason; a probe's own defaults
(deadlines, retries, address caps, politeness) live beside the probe that applies them."""

from __future__ import annotations

#: Domains measured at once.  Each domain issues ~4-8 DNS queries, mostly
#: concurrently, so this keeps ~1-2k queries in flight: enough to hide resolver
#: latency on the Internet without bursts that a resolver drops (measured: a
#: single burst of 5,000 queries once timed out wholesale).
CONCURRENCY = 256

#: Domains waiting on connections (provider limits, probes other domains started)
#: that do not count against CONCURRENCY: a provider throttled to a few connections
#: per second can queue this many domains while the long tail keeps its pace.
#: Each waiting domain holds its DNS results (a few KB), so ~100 MB at most.
MAX_PARKED = 20_000

#: Answers for names shared across domains (MX hosts) kept for the whole run.
#: ~0.5 KB each, so 100k entries stay well under 100 MB.
SHARED_CACHE_ENTRIES = 100_000

#: Seconds in-flight domains get to finish after SIGINT/SIGTERM before they are
#: abandoned (and redone on resume).
SHUTDOWN_GRACE = 10.0

#: Seconds between status lines when stderr is not a terminal.
PROGRESS_INTERVAL_PLAIN = 5.0

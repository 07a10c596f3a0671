"""Every default of the ``mxscan`` command in one place, each with its reason."""

from __future__ import annotations

#: Domains measured at once.  Each domain issues ~4-8 DNS queries, mostly
#: concurrently, so this keeps ~1-2k queries in flight: enough to hide resolver
#: latency on the Internet without bursts that a resolver drops (NOTES.md: a
#: single burst of 5,000 queries once timed out wholesale).
CONCURRENCY = 256

#: Queries in flight to the resolver at once, across all domains.
DNS_IN_FLIGHT = 1024

#: Per-attempt DNS deadline in seconds.  A recursive resolver answering from
#: the Internet needs up to a few seconds for a cold, slow authoritative server.
DNS_TIMEOUT = 3.0

#: Attempts per question before it is recorded as a timeout.
DNS_ATTEMPTS = 2

#: Pre-flight: a name that is signed (AD=1 from a validating resolver) and one
#: that is deliberately bogus (SERVFAIL from a validating resolver).  The root
#: SOA is signed everywhere; dnssec-failed.org is kept broken by Comcast for
#: exactly this kind of check.
PREFLIGHT_SIGNED_NAME = "."
PREFLIGHT_BOGUS_NAME = "dnssec-failed.org"

#: Deadline for the whole pre-flight, after which the resolver is "unreachable".
PREFLIGHT_TIMEOUT = 5.0

#: Answers for names shared across domains (MX hosts) kept for the whole run.
#: ~0.5 KB each, so 100k entries stay well under 100 MB.
SHARED_CACHE_ENTRIES = 100_000

#: Seconds in-flight domains get to finish after SIGINT/SIGTERM before they are
#: abandoned (and redone on resume).
SHUTDOWN_GRACE = 10.0

#: Seconds between status lines when stderr is not a terminal.
PROGRESS_INTERVAL_PLAIN = 5.0

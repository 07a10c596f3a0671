"""Every default of the ``mxscan`` command in one place, each with its reason."""

from __future__ import annotations

#: Domains measured at once.  Each domain issues ~4-8 DNS queries, mostly
#: concurrently, so this keeps ~1-2k queries in flight: enough to hide resolver
#: latency on the Internet without bursts that a resolver drops (NOTES.md: a
#: single burst of 5,000 queries once timed out wholesale).
CONCURRENCY = 256

#: Domains waiting on connections (provider limits, probes other domains started)
#: that do not count against CONCURRENCY: a provider throttled to a few connections
#: per second can queue this many domains while the long tail keeps its pace.
#: Each waiting domain holds its DNS results (a few KB), so ~100 MB at most.
MAX_PARKED = 20_000

#: Queries in flight to the resolver at once, across all domains.
DNS_IN_FLIGHT = 1024

#: Per-attempt DNS deadline in seconds.  A recursive resolver answering from
#: the Internet needs up to a few seconds for a cold, slow authoritative server.
DNS_TIMEOUT = 3.0

#: Attempts per question before it is recorded as a timeout.
DNS_ATTEMPTS = 2
#: The most --dns-attempts accepts: each attempt waits a full --dns-timeout, so more only
#: multiplies the time a dead name costs.
MAX_DNS_ATTEMPTS = 10

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

#: SMTP port.  Port 25 is what senders use; the test world can use another one
#: (each simulated host has its own address, so one port number serves all).
SMTP_PORT = 25

#: SMTP connections open at once across the whole scan.  Each costs ~1 ms of
#: client CPU for the handshake; more than this only queues inside the kernel.
SMTP_IN_FLIGHT = 256

#: Connections at once to one IP address: one, so no server sees us twice at a time.
PER_IP_CONNECTIONS = 1

#: Per-phase SMTP deadlines in seconds; the study used 20 s per operation.
SMTP_CONNECT_TIMEOUT = 10.0
SMTP_TIMEOUT = 20.0

#: The whole exchange with one address (connect to QUIT): bounds a server that answers
#: each phase just inside its own deadline.
SMTP_HOST_TIMEOUT = 90.0

#: Further connections after a 421/450/451 or a timeout, and the first pause
#: between them (doubled each time): transient refusals are not findings.
SMTP_RETRIES = 2
SMTP_RETRY_DELAY = 5.0
#: The most --smtp-retries accepts: the pause doubles each time, so the tenth retry of a
#: 5 s delay already waits ~43 minutes.
MAX_SMTP_RETRIES = 10

#: Probed (host, address) results kept for the run: MX hosts are shared by
#: thousands of domains, and each is probed once.
SMTP_CACHE_ENTRIES = 1_000_000

#: Back-off (AIMD): after a throttle signal a provider's rate is halved, never
#: below this many connections per second ...
BACKOFF_FLOOR_RATE = 0.2
#: ... at most once per this many seconds (one burst of 421s is one signal) ...
BACKOFF_COOLDOWN = 5.0
#: ... and recovers by this many connections per second per quiet cooldown.
BACKOFF_INCREASE = 0.5

#: Connections at once for hosts known to be slow (tarpits, greeting delays),
#: so they never hold the fast lane's slots.
SLOW_LANE_SLOTS = 16

#: HTTPS port of MTA-STS policy hosts (RFC 8461 §3.3 fixes 443; the test world may differ).
HTTPS_PORT = 443

#: Deadline for a whole policy fetch (connect, TLS, headers, 64 KiB body).
HTTPS_TOTAL_TIMEOUT = 60.0

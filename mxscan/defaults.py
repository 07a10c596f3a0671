"""Every default of the ``mxscan`` command in one place, each with its reason."""

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

#: Egress pre-flight targets: the inbound MX hosts of the largest mailbox providers (Gmail,
#: Outlook.com, iCloud, Yahoo), which accept connections on port 25 from anywhere, each
#: resolved through the scan's resolver (first A and first AAAA).  One of them answering is
#: enough to show that outbound port 25 works for that family.
EGRESS_CHECK_HOSTS = (
    "gmail-smtp-in.l.google.com",
    "outlook-com.olc.protection.outlook.com",
    "mx01.mail.icloud.com",
    "mta5.am0.yahoodns.net",
)

#: Seconds each pre-flight connection may take (all run at once).  A working path completes
#: a TCP handshake in well under a second from anywhere; a blocked port never answers.
EGRESS_TIMEOUT = 4.0

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

#: SMTP and policy connections doing work at once (exchanging, handshaking) across the whole
#: scan.  Each costs ~1 ms of client CPU for the handshake; more than this only queues inside
#: the kernel.  A connection still open after ACTIVE_GRACE is waiting on a deadline, not
#: working, and gives its slot back (probes/smtp/polite.py).
SMTP_IN_FLIGHT = 256

#: Seconds a connection counts as active work.  An exchange with an answering server takes a
#: few round trips (~1 s even at 200 ms RTT); one still open after this waits on a silent or
#: tarpitting host and holds only a socket and a timer from then on.
ACTIVE_GRACE = 5.0

#: Connections open at once, waiting or not: the process's open-file limit (20,000 hard
#: here, and typical) minus room for DNS sockets, the results file and the probe process's
#: pipes.  At 2% silent hosts, 1,000 domains/s and 45 s per silent host this is ~900.
MAX_OPEN_CONNECTIONS = 8192

#: Connections at once to one IP address: one, so no server sees us twice at a time.
PER_IP_CONNECTIONS = 1

#: Per-phase SMTP deadlines in seconds; the study used 20 s per operation.
SMTP_CONNECT_TIMEOUT = 10.0
SMTP_TIMEOUT = 20.0

#: The whole exchange with one address (connect to QUIT): bounds a server that answers
#: each phase just inside its own deadline.
SMTP_HOST_TIMEOUT = 90.0

#: Further connections after silence (a timeout or a reset), and after a transient refusal
#: (greylisting 450/451 on first contact; 421 or a later 4xx before EHLO): each kind at most this
#: many, in the one retry loop of probes/smtp/polite.py (the rule: probes/retry.py).
#: One: a host silent twice is the finding; a second retry would add another full timeout to
#: the scan's tail for a share of hosts that answers a third time too small to measure.
SMTP_RETRIES = 1
#: Pause before a retry (a throttle's doubles with each throttle seen).  Greylisting servers
#: often want minutes (RFC 6647 §2.1 leaves it to them): those stay "application-error" with
#: greylisted true (the retry was refused too), rather than the whole scan waiting for them.
SMTP_RETRY_DELAY = 5.0

#: The latest a transient refusal (421, 450-452: probes/retry.py) can come: it answers the
#: banner or EHLO, so the connect, banner and EHLO deadlines bound it (50 s).
SMTP_REFUSAL_WORST_CASE = min(SMTP_HOST_TIMEOUT, SMTP_CONNECT_TIMEOUT + 2 * SMTP_TIMEOUT)
#: One domain's configured worst case in seconds (README "What to expect on the Internet";
#: benchmarks/internet.py holds scans to it).  Its addresses are probed at once, and one
#: address costs at most 1 + 2 x SMTP_RETRIES connections (the retry loop of
#: probes/smtp/polite.py): SMTP_RETRIES + 1 that end at SMTP_HOST_TIMEOUT, SMTP_RETRIES
#: transient refusals, and a pause before each retry, a throttle's doubled per throttle
#: before it: 2 x 90 + 50 + 5 + 5 = 240 s.  A silent host (accepts, never greets) costs
#: 2 x SMTP_TIMEOUT + SMTP_RETRY_DELAY (45 s), one that drops SYNs 2 x SMTP_CONNECT_TIMEOUT
#: + SMTP_RETRY_DELAY (25 s).  The DNS lookups before, and waits for a provider's or an
#: address's slot, come on top.
DOMAIN_WORST_CASE = (
    (SMTP_RETRIES + 1) * SMTP_HOST_TIMEOUT
    + SMTP_RETRIES * SMTP_REFUSAL_WORST_CASE
    + SMTP_RETRIES * SMTP_RETRY_DELAY
    + sum(SMTP_RETRY_DELAY * 2**k for k in range(SMTP_RETRIES))
)
#: The most --smtp-retries accepts: every retry after silence waits a full timeout again.
MAX_SMTP_RETRIES = 10

#: (address, port) pairs where the TCP connection itself failed after the retry (SYNs dropped,
#: or refused) are remembered this long: a later MX host name at the same address is recorded
#: with the same status without connecting again (shared-hosting addresses sit behind many MX
#: names; on loopback every silent IPv6 host is ::1).  30 minutes outlasts a 100k scan's probes,
#: and an address that comes back is tried again after it.
UNREACHABLE_MEMORY_SECONDS = 1800.0
#: ... at most this many (least recently used forgotten first): ~200 bytes each.
UNREACHABLE_MEMORY_ENTRIES = 100_000

#: Timeouts and resets lower a provider's rate only when this many distinct hosts of the
#: provider show them within THROTTLE_CORRELATION_WINDOW seconds: one silent server is a
#: finding about that server, many at once are the provider shedding load (issue #12).
THROTTLE_CORRELATION_HOSTS = 5
THROTTLE_CORRELATION_WINDOW = 60.0

#: Addresses probed per MX host and address family, in answer order (a sender tries a few;
#: a host with 200 addresses would otherwise cost 200 connections).  The rest are recorded
#: as not probed ("host-cap"), never dropped silently.
MAX_ADDRESSES_PER_HOST = 4
#: Addresses probed per domain over its MX hosts in preference order ("domain-cap"): 16 MX
#: hosts with 2 addresses each fit; all are probed at once, so a domain's worst case stays
#: one address's worst case.
MAX_ADDRESSES_PER_DOMAIN = 32

#: Probed (host, address) results kept for the run: MX hosts are shared by
#: thousands of domains, and each is probed once.  Once its line is written an entry is
#: its verdict (~0.5 KB, probes/hostcache.py), so this bounds the cache near 100 MB; the
#: least recently used beyond it are evicted (a later domain probes such a host again and
#: writes a new host line), counted in --summary-json (caches.smtp.evicted).
SMTP_CACHE_ENTRIES = 200_000

#: Reverse DNS results (PTR, FCrDNS) kept per address.  A result is needed again only when
#: another host line for the same address is written (a second MX name on it, a probe made
#: again): the recently used suffice.  ~0.35 KB each, so ~7 MB; kept for every address
#: probed it was the scan's largest unbounded-looking growth after the SMTP verdicts
#: (~9 MB per 100k domains).  An evicted result is looked up again (one PTR query, the
#: forward ones mostly from the shared cache), counted in --summary-json (caches.ptr.evicted).
PTR_CACHE_ENTRIES = 20_000

#: Back-off (AIMD): after a throttle signal a provider's rate is halved, never
#: below this many connections per second ...
BACKOFF_FLOOR_RATE = 0.2
#: ... at most once per this many seconds (one burst of 421s is one signal) ...
BACKOFF_COOLDOWN = 5.0
#: ... and recovers by this many connections per second per quiet cooldown.
BACKOFF_INCREASE = 0.5

#: HTTPS port of MTA-STS policy hosts (RFC 8461 §3.3 fixes 443; the test world may differ).
HTTPS_PORT = 443

#: Deadline of each policy fetch phase (TLS, headers, the whole 64 KiB body), at most the SMTP
#: phase deadline: a policy host is a web server, and 10 s is generous for 64 KiB.
HTTPS_PHASE_TIMEOUT = 10.0
#: Deadline for a whole policy fetch (connect, TLS, headers, 64 KiB body).
HTTPS_TOTAL_TIMEOUT = 30.0

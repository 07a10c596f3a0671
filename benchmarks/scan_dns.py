"""DNS-only scan benchmark (issue 2): mxscan against the test world's resolver.

    python benchmarks/scan_dns.py [--sizes 1000,10000,100000] [--runs 3]

For each size a scale world (seed 1) is started (tier (a) resolver: a fresh
process per run, so no answer is cached from an earlier run), mxscan scans it
with --dns-only, and the benchmark prints domains/s, queries/s, per-domain
p50/p99, peak RSS, cost per domain (CPU-free: wall/domain) and counts by
status, plus the ten slowest domains of the largest run.  In the same run it
measures two references over the same world:

* the study's approach: one query at a time with dnspython (sequential), the
  same questions per domain (MX, A/AAAA of each MX host, two TXT) on a sample;
* the client ceiling: a bare asyncio loop that only sends and receives the
  same number of queries (no parsing, no logic).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
from common import ScanRun, median, run_mxscan
from dns_clients import bare_rate

from testbed.control import WorldSpec
from testbed.harness import running_dns

SAMPLE = 300


def sequential_baseline(server: tuple[str, int], domains: list[str]) -> float:
    """Domains/s when every question waits for the previous answer (the study's scripts)."""

    def ask(name: str, rdtype: str) -> dns.message.Message | None:
        try:
            return dns.query.udp(dns.message.make_query(name, rdtype), server[0], port=server[1], timeout=2)
        except Exception:
            return None

    began = time.perf_counter()
    for domain in domains:
        reply = ask(domain, "MX")
        hosts = []
        if reply is not None:
            for rrset in reply.answer:
                if rrset.rdtype == dns.rdatatype.MX:
                    hosts += [str(r.exchange).rstrip(".") for r in rrset if str(r.exchange) != "."]
        for host in hosts:
            ask(host, "A")
            ask(host, "AAAA")
        ask(f"_mta-sts.{domain}", "TXT")
        ask(f"_smtp._tls.{domain}", "TXT")
    return len(domains) / (time.perf_counter() - began)


def ceiling(spec: WorldSpec, queries: int) -> float:
    """Queries/s of a bare send/receive loop asking a fresh resolver (nothing memoised)
    the same mix of first-time questions as the scan: MX and both TXT per domain, then
    A and AAAA of MX hosts."""
    world = spec.build()
    questions: list[tuple[str, str]] = []
    for domain in world.domains:
        if domain.fault is not None:  # the world's timeout scenarios would stall a bare loop
            continue
        questions += [
            (domain.name, "MX"),
            (f"_mta-sts.{domain.name}", "TXT"),
            (f"_smtp._tls.{domain.name}", "TXT"),
        ]
    questions += [(h.name, t) for h in world.hosts for t in ("A", "AAAA")]
    with running_dns(spec) as endpoint:
        return bare_rate((endpoint.host, endpoint.port), questions[:queries])


def scan(size: int, folder: Path) -> tuple[ScanRun, float, float]:
    spec = WorldSpec("scale", domains=size, seed=1)
    names = [d.name for d in spec.build().domains]
    listing = folder / f"domains-{size}.txt"
    listing.write_text("".join(f"{n}\n" for n in names))
    with running_dns(spec) as endpoint:
        server = (endpoint.host, endpoint.port)
        run = run_mxscan(
            [
                str(listing),
                "--resolver",
                f"{endpoint.host}:{endpoint.port}",
                "--dns-only",
                "--preflight-bogus",
                "dnssec-failed.test",
                "--dns-timeout",
                "1",
            ],
            folder / f"out-{size}.ndjson",
            folder / f"summary-{size}.json",
        )
        sent = int(run.summary.get("dns", {}).get("sent", 0))  # type: ignore[union-attr]
        base = sequential_baseline(server, names[:SAMPLE])
    return run, base, ceiling(spec, sent)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    largest: ScanRun | None = None
    with tempfile.TemporaryDirectory(prefix="mxscan-bench-") as tmp:
        for size in sizes:
            runs = [scan(size, Path(tmp)) for _ in range(args.runs)]
            by_rate = sorted(runs, key=lambda r: r[0].rate)
            run, base, top = by_rate[len(by_rate) // 2]  # the median run by domains/s
            sent = int(run.summary.get("dns", {}).get("sent", 0))  # type: ignore[union-attr]
            qps = sent / run.wall
            rows.append((size, run, qps, median([r[1] for r in runs]), median([r[2] for r in runs])))
            largest = run
    print(f"\nDNS-only scan, tier (a) resolver on loopback, median of {args.runs} runs\n")
    print(
        f"{'domains':>8} {'dom/s':>7} {'q/s':>7} {'CPU µs/dom':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'RSS MB':>7} {'seq dom/s':>9} {'x seq':>6} {'ceil q/s':>8} {'of ceil':>7}"
    )
    for size, run, qps, base, top in rows:
        print(
            f"{size:>8} {run.rate:>7.0f} {qps:>7.0f} {run.cpu_us_per_domain:>10.0f} "
            f"{run.percentile(50):>7.1f} {run.percentile(99):>7.1f} {run.peak_rss_mb:>7.0f} "
            f"{base:>9.0f} {run.rate / base:>6.1f} {top:>8.0f} {qps / top:>7.0%}"
        )
    flat = [r[1].cpu_us_per_domain for r in rows]
    print(
        f"\nscanner CPU per domain, smallest→largest: {flat[0]:.0f} → {flat[-1]:.0f} µs "
        f"({(flat[-1] / flat[0] - 1):+.0%}); wall time at small sizes is bound by the slowest "
        "domain (the world's timeout scenarios), not by cost"
    )
    if largest is not None:
        print(f"statuses ({largest.domains} domains): {dict(largest.statuses)}")
        print("DNS client:", largest.summary.get("dns"))
        print("ten slowest domains:")
        for ms, domain in largest.slowest:
            print(f"  {ms:9.1f} ms  {domain}")


if __name__ == "__main__":
    main()

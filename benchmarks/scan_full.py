"""Full scan benchmark (issues 4 and 5): DNS + SMTP STARTTLS + MTA-STS of a scale world.

    python benchmarks/scan_full.py [--sizes 1000,10000,100000] [--runs 3]
                                   [--rtt 80ms --jitter 40ms --latency-sizes 10000]
                                   [--policy-size 10000] [--polite]

For each size a fresh tier (a) world (``WorldSpec("scale", N, seed=1)``: DNS,
SMTP fleet, HTTPS policy sites) runs beside ``mxscan scan`` on the same two
cores.  Per size the benchmark prints domains/s, STARTTLS handshakes/s
(distinct (host, address) results with a TLS session / scan wall time), p50/p99
of the per-domain time, of the SMTP probe (``SmtpResult.duration_ms``, one per
distinct (host, address)) and of the policy fetch, peak RSS, scanner CPU per
domain, counts by status and the ten slowest domains.  Sizes up to
``--repeat-max`` are run ``--runs`` times (the median run by domains/s is shown).

In the same run, with the same world still up (idle), two references:

* the bare asyncio TLS client/server pair (``tls_pair.measure_pair``: test PKI
  certificate, verification off, uvloop): the scanner's handshakes/s as a
  share of it (aim: >= 70%);
* the study's sequential approach over a sample of domains: MX and A lookups
  with dnspython, then ``smtplib`` one (host, address) at a time (each pair once),
  giving a domains/s ratio.

MTA-STS overhead (issue 5): the same size is scanned with a world profile whose
``mta_sts`` rate is 0 (no policy domains; the world's other draws shift, so the
mix is equal in expectation, not domain for domain); the difference in median
wall time is the cost of the ~1.2% policy domains.  The sum of policy fetch
time against the sum of SMTP probe time is printed too.

By default every provider limit is lifted (``--polite`` keeps the built-in
ones): with the defaults the scan's pace is set by outlook.com's 4 new
connections/s over its per-customer hosts (see ``politeness_bench.py``), not by
the engine.  Every other option is the user's default: the headline table is what a user
gets.  Beside it, labelled, the same sizes in ``--short-sizes`` with shortened deadlines
(``--smtp-timeout 5 --smtp-retry-delay 1 --dns-timeout 1``, the figures this benchmark
printed before issue #12), so that the world's deliberate blackhole and timeout scenarios
(a handful of domains) show what they cost with the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import orjson
from common import ScanRun, median
from tls_pair import PairResult, SequentialResult, measure_pair, sequential_smtplib

from probes.providers import STUDY_TOP_PROVIDERS
from probes.results import read_domain_records
from probes.smtp.records import Phase
from testbed.control import NetOptions, WorldSpec
from testbed.harness import RunningWorld, running_world

__all__ = [
    "FullRun",
    "analyse",
    "isolated_scan",
    "lifted_limits_args",
    "parse_seconds",
    "scan_args",
    "world_scan",
]

EHLO_NAME = "scanner.mxscan.test"
#: Domains of the sequential (study) baseline: at 80 ms RTT each costs ~0.3 s of lookups.
BASELINE_SAMPLE = 150
#: The bare pair's host name: a shared MX host that has a "valid" certificate in every scale world.
PAIR_NAME = "aspmx.l.google.prov.test"


def parse_seconds(text: str) -> float:
    """``"80ms"``, ``"0.08s"``, ``"0.08"`` → seconds."""
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.removesuffix("s"))


def lifted_limits_args(folder: Path) -> list[str]:
    """Scan options that lift every per-provider limit (concurrency 10,000, no rate); the
    per-address limit stays at 1 (each address is probed once anyway: single-flight)."""
    toml = folder / "limits-off.toml"
    toml.write_text('[default]\nprovider = "10000"\nip = "1"\n')
    args = ["--limits", str(toml)]
    for provider in STUDY_TOP_PROVIDERS:
        args.append(f"--provider-limit={provider}=10000")
    return args


def scan_args(world: RunningWorld, extra: list[str]) -> list[str]:
    """The scan command the world prints (minus --out), plus ``extra``."""
    ep = world.endpoints
    return [
        str(world.state_dir / "domains.txt"),
        *("--resolver", ep["dns"], "--smtp-port", str(ep["smtp_port"])),
        *("--https-port", str(ep["https_port"]), "--ca-file", ep["ca_file"]),
        *("--intermediates", ep["intermediates"], "--trust-store", "none"),
        *("--ehlo-name", EHLO_NAME, "--preflight-bogus", ep["preflight_bogus"]),
        # The world's own egress pre-flight targets: a benchmark never contacts the default ones.
        *(arg for target in ep.get("egress_check") or [ep["dns"]] for arg in ("--egress-check", target)),
        *extra,
    ]


@dataclass
class FullRun:
    """One scan plus what the results file says about its SMTP and MTA-STS work."""

    scan: ScanRun
    smtp_ms: list[float] = field(default_factory=list)
    #: SMTP phase -> milliseconds per probe that reached it (the last attempt's).
    phase_ms: dict[str, list[float]] = field(default_factory=dict)
    fetch_ms: list[float] = field(default_factory=list)
    tls_sessions: int = 0
    smtp_status: Counter[str] = field(default_factory=Counter)
    fetch_status: Counter[str] = field(default_factory=Counter)
    #: Seconds from the scan's start until 99% of the domains were written.
    done99: float = 0.0
    pair: PairResult | None = None
    sequential: tuple[float, SequentialResult] | None = None

    @property
    def handshake_rate(self) -> float:
        return self.tls_sessions / self.scan.wall if self.scan.wall else 0.0


_LAUNCHER = """
import json, sys, pathlib
sys.path.insert(0, sys.argv[1])
from common import run_mxscan
run = run_mxscan(json.loads(sys.argv[2]), pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4]),
                 json.loads(sys.argv[5]))
# not dataclasses.asdict: it rebuilds the Counter from (key, value) pairs, counting the pairs
fields = {k: getattr(run, k) for k in ("domains", "wall", "peak_rss_mb", "cpu_seconds", "exit_code",
                                       "summary", "durations_ms", "slowest", "extra", "peak_pss_mb")}
print("\\n" + json.dumps({**fields, "statuses": dict(run.statuses)}))
"""


def isolated_scan(args: list[str], out: Path, summary: Path, interpreter: list[str] | None = None) -> ScanRun:
    """``common.run_mxscan`` from a small launcher process.  Linux carries ru_maxrss across
    fork and exec (the exec'ing process keeps the old image's peak), so a scan spawned by
    this process, which grows to >1 GB holding 100k-domain worlds and results, would report
    this process's size as its own peak RSS."""
    here = str(Path(__file__).resolve().parent)
    argv = [sys.executable, "-c", _LAUNCHER, here, orjson.dumps(args).decode(), str(out), str(summary)]
    argv.append(orjson.dumps(interpreter).decode())
    stdout = subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout
    data = orjson.loads(stdout.strip().rsplit(b"\n", 1)[-1])
    fields = {f.name for f in dataclasses.fields(ScanRun)}
    run = ScanRun(**{k: v for k, v in data.items() if k in fields})
    run.statuses = Counter(run.statuses)
    run.slowest = [(float(ms), str(name)) for ms, name in run.slowest]
    return run


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _instant(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def analyse(run: ScanRun, out: Path) -> FullRun:
    """SMTP probes (each distinct (host, address) once), policy fetches, completion times."""
    full = FullRun(run)
    seen: set[tuple[str, str]] = set()
    ends: list[float] = []
    started = None
    for record in read_domain_records(out):
        if started is None:
            started = _instant(record["scan"]["started"])
        ends.append(_instant(record["measured_at"]))
        for mx in record.get("mx_transport") or ():
            for probe in mx["addresses"]:
                key = (probe["host"], probe["address"])
                if key in seen:
                    continue
                seen.add(key)
                full.smtp_ms.append(probe["duration_ms"])
                for phase, ms in (probe.get("phase_ms") or {}).items():
                    full.phase_ms.setdefault(phase, []).append(ms)
                full.smtp_status[probe["status"]] += 1
                full.tls_sessions += probe.get("tls") is not None
        fetch = (record.get("mta_sts") or {}).get("fetch")
        if fetch is not None:
            full.fetch_ms.append(fetch["duration_ms"])
            full.fetch_status[fetch["status"]] += 1
    if ends and started is not None:
        ends.sort()
        full.done99 = ends[min(len(ends) - 1, int(0.99 * len(ends)))] - started
    return full


@contextmanager
def world_scan(spec: WorldSpec, net: NetOptions | None) -> Iterator[RunningWorld]:
    began = time.perf_counter()
    with running_world(spec, net=net) as world:
        print(f"  world up in {time.perf_counter() - began:.1f}s ({spec.domains} domains)", flush=True)
        yield world


def sequential_baseline(world: RunningWorld, spec: WorldSpec, sample: int) -> tuple[float, SequentialResult]:
    """Domains/s of the study's approach on a sample of ordinary domains (no scenario copies,
    whose tarpits would only measure timeouts): MX, A of each MX host, then smtplib per
    (host, address) not yet probed, all one at a time."""
    names = [d.name for d in spec.build().domains if not d.scenario and d.mx]
    picked = random.Random(7).sample(names, min(sample, len(names)))
    host, port = world.endpoints["dns"].rsplit(":", 1)
    smtp_port = int(world.endpoints["smtp_port"])
    probed: set[tuple[str, str]] = set()
    sessions = SequentialResult(0, 0, 0, 0.0)

    def ask(name: str, rdtype: str) -> list[str]:
        try:
            reply = dns.query.udp(dns.message.make_query(name, rdtype), host, port=int(port), timeout=3)
        except Exception:  # a reference, not the measured tool: any failure is "no answer"
            return []
        out = []
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.MX:
                out += [str(r.exchange).rstrip(".") for r in rrset if str(r.exchange) != "."]
            elif rrset.rdtype == dns.rdatatype.A:
                out += [r.address for r in rrset]
        return out

    began = time.perf_counter()
    for domain in picked:
        for mx in ask(domain, "MX"):
            todo = [(mx, a) for a in ask(mx, "A") if (mx, a) not in probed]
            probed.update(todo)
            if todo:
                one = sequential_smtplib(todo, smtp_port, EHLO_NAME)
                sessions = SequentialResult(
                    sessions.sessions + one.sessions,
                    sessions.tls + one.tls,
                    sessions.failed + one.failed,
                    sessions.seconds + one.seconds,
                )
    return len(picked) / (time.perf_counter() - began), sessions


def one_scan(
    spec: WorldSpec, net: NetOptions | None, folder: Path, extra: list[str], references: bool, sample: int
) -> FullRun:
    tag = f"{spec.domains}-{spec.profile and 'p'}-{net and net.rtt}"
    out, summary = folder / f"out-{tag}.ndjson", folder / f"summary-{tag}.json"
    with world_scan(spec, net) as world:
        run = isolated_scan(scan_args(world, extra), out, summary)
        full = analyse(run, out)
        print(
            f"  scan {spec.domains}: {run.wall:.1f}s, {run.rate:.0f} dom/s, 99% done at {full.done99:.1f}s, "
            f"{full.tls_sessions} TLS sessions, RSS {run.peak_rss_mb:.0f} MB (PSS {run.peak_pss_mb:.0f} MB), "
            f"exit {run.exit_code}",
            flush=True,
        )
        if references:
            full.pair = measure_pair(world.state_dir / "pki", PAIR_NAME)
            print(f"  bare TLS pair: {full.pair.rate:.0f} handshakes/s", flush=True)
            full.sequential = sequential_baseline(world, spec, sample)
            print(f"  sequential: {full.sequential[0]:.1f} dom/s", flush=True)
    out.unlink(missing_ok=True)
    return full


def median_run(runs: list[FullRun]) -> FullRun:
    return sorted(runs, key=lambda r: r.scan.rate)[len(runs) // 2]


def print_table(title: str, rows: list[tuple[str, list[FullRun]]]) -> None:
    print(f"\n{title}\n")
    head = (
        f"{'world':>16} {'runs':>4} {'dom/s':>6} {'dom/s@99%':>9} {'hs/s':>6} {'pair hs/s':>9} "
        f"{'of pair':>7} {'seq dom/s':>9} {'x seq':>6} {'CPU µs/dom':>10} {'RSS MB':>6} {'PSS MB':>6} "
        f"{'dom p50/p99 ms':>15} {'smtp p50/p99 ms':>16} {'fetch p50/p99 ms':>16}"
    )
    print(head)
    for label, runs in rows:
        r = median_run(runs)
        s = r.scan
        pair = median([x.pair.rate for x in runs if x.pair]) or 0.0
        seq = median([x.sequential[0] for x in runs if x.sequential]) or 0.0
        print(
            f"{label:>16} {len(runs):>4} {s.rate:>6.0f} {0.99 * s.domains / max(r.done99, 1e-9):>9.0f} "
            f"{r.handshake_rate:>6.0f} {pair:>9.0f} {r.handshake_rate / pair if pair else 0:>7.0%} "
            f"{seq:>9.1f} {s.rate / seq if seq else 0:>6.1f} {s.cpu_us_per_domain:>10.0f} "
            f"{s.peak_rss_mb:>6.0f} {s.peak_pss_mb:>6.0f} {s.percentile(50):>7.0f}/{s.percentile(99):<7.0f} "
            f"{pct(r.smtp_ms, 50):>8.0f}/{pct(r.smtp_ms, 99):<7.0f} "
            f"{pct(r.fetch_ms, 50):>8.0f}/{pct(r.fetch_ms, 99):<7.0f}"
        )
    for label, runs in rows:
        r = median_run(runs)
        sequential = next((x.sequential for x in runs if x.sequential), None)
        bare = next((x.pair for x in runs if x.pair), None)
        print(
            f"\n[{label}] median run: wall {r.scan.wall:.1f}s, {r.scan.domains} domains, "
            f"{r.tls_sessions} TLS sessions over {len(r.smtp_ms)} (host, address) probes"
        )
        phases = ", ".join(
            f"{phase} {pct(r.phase_ms[phase], 50):.1f}/{pct(r.phase_ms[phase], 99):.1f}"
            for phase in (p.value for p in Phase)
            if phase in r.phase_ms
        )
        print(f"  SMTP phases p50/p99 ms: {phases}")
        print(f"  domain status: {dict(r.scan.statuses)}")
        print(f"  smtp status:   {dict(r.smtp_status)}")
        print(f"  fetch status:  {dict(r.fetch_status)}")
        if bare:
            print(
                f"  bare pair: {bare.handshakes} handshakes in {bare.seconds:.2f}s, client "
                f"{bare.client_cpu_ms:.2f} ms CPU/handshake, server {bare.server_cpu_ms:.2f} ms"
            )
        if sequential:
            per_domain, smtp = sequential
            print(
                f"  sequential smtplib: {smtp.sessions} sessions ({smtp.tls} TLS, {smtp.failed} failed), "
                f"{smtp.rate:.0f} sessions/s; {per_domain:.1f} domains/s with lookups"
            )
        print("  ten slowest domains:")
        for ms, domain in r.scan.slowest:
            print(f"    {ms:9.1f} ms  {domain}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=3, help="runs per size up to --repeat-max")
    parser.add_argument("--repeat-max", type=int, default=10000, help="larger sizes run once")
    parser.add_argument("--rtt", default="80ms", help="world DNS latency for the latency runs")
    parser.add_argument("--jitter", default="40ms")
    parser.add_argument(
        "--latency-sizes", default="10000", help="sizes also run with --rtt/--jitter ('' none)"
    )
    parser.add_argument("--policy-size", type=int, default=10000, help="MTA-STS overhead size (0: skip)")
    parser.add_argument("--polite", action="store_true", help="keep the built-in provider limits")
    parser.add_argument(
        "--short-sizes", default="10000", help="sizes also run with shortened deadlines ('' none)"
    )
    parser.add_argument("--smtp-timeout", default="5", help="the shortened variant's")
    parser.add_argument("--smtp-retry-delay", default="1", help="the shortened variant's")
    parser.add_argument("--dns-timeout", default="1", help="the shortened variant's")
    parser.add_argument("--sample", type=int, default=BASELINE_SAMPLE, help="sequential baseline domains")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    latency_sizes = {int(s) for s in args.latency_sizes.split(",") if s}
    net = NetOptions(rtt=parse_seconds(args.rtt), jitter=parse_seconds(args.jitter))
    rows: list[tuple[str, list[FullRun]]] = []
    with tempfile.TemporaryDirectory(prefix="mxscan-bench-full-") as tmp:
        folder = Path(tmp)
        extra: list[str] = [] if args.polite else lifted_limits_args(folder)  # the user's defaults
        short = ["--smtp-timeout", args.smtp_timeout, "--smtp-retry-delay", args.smtp_retry_delay]
        short += ["--dns-timeout", args.dns_timeout, *extra]
        plans = [(size, None) for size in sizes] + [(size, net) for size in sizes if size in latency_sizes]
        for size, options in plans:
            spec = WorldSpec("scale", domains=size, seed=1)
            count = args.runs if size <= args.repeat_max else 1
            label = f"{size:,}" + (f" rtt {args.rtt}" if options else "")
            print(f"{label}: {count} run(s)", flush=True)
            runs = [one_scan(spec, options, folder, extra, i == 0, args.sample) for i in range(count)]
            rows.append((label, runs))
        print_table(
            f"Full scan (DNS + SMTP + MTA-STS) with the default deadlines and retries, scale world "
            f"seed 1, world beside the scanner, limits {'built-in' if args.polite else 'lifted'}; "
            "median run by dom/s",
            rows,
        )
        short_rows = []
        for size in (int(s) for s in args.short_sizes.split(",") if s):
            spec = WorldSpec("scale", domains=size, seed=1)
            count = args.runs if size <= args.repeat_max else 1
            print(f"{size:,} shortened deadlines: {count} run(s)", flush=True)
            short_rows.append(
                (f"{size:,} short", [one_scan(spec, None, folder, short, False, 0) for _ in range(count)])
            )
        if short_rows:
            print_table(
                "Beside it, NOT the defaults: shortened deadlines "
                f"({' '.join(short[:6])}), same worlds and limits",
                short_rows,
            )
        if args.policy_size:
            policy_overhead(args.policy_size, folder, extra, args.runs, rows)


def policy_overhead(
    size: int, folder: Path, extra: list[str], runs: int, rows: list[tuple[str, list[FullRun]]]
) -> None:
    """Issue 5: the cost of the policy domains, against a world without any (mta_sts = 0)."""
    with_sts = next((r for label, r in rows if label == f"{size:,}"), None)
    if with_sts is None:
        spec = WorldSpec("scale", domains=size, seed=1)
        with_sts = [one_scan(spec, None, folder, extra, False, 0) for _ in range(runs)]
    profile = folder / "no-mta-sts.toml"
    profile.write_text("mta_sts = 0.0\n")
    spec = WorldSpec("scale", domains=size, seed=1, profile=str(profile))
    print(f"{size:,} without MTA-STS: {runs} run(s)", flush=True)
    without = [one_scan(spec, None, folder, extra, False, 0) for _ in range(runs)]
    walls = median([r.scan.wall for r in with_sts]), median([r.scan.wall for r in without])
    bulk = median([r.done99 for r in with_sts]), median([r.done99 for r in without])
    cpu = median([r.scan.cpu_seconds for r in with_sts]), median([r.scan.cpu_seconds for r in without])
    fetches = median([len(r.fetch_ms) for r in with_sts])
    fetch_sum = median([sum(r.fetch_ms) for r in with_sts]) / 1000
    smtp_sum = median([sum(r.smtp_ms) for r in with_sts]) / 1000
    print(
        f"\nMTA-STS overhead at {size:,} domains (median of {runs}; "
        "world without policy domains: mta_sts = 0)\n"
    )
    print(f"{'':>22} {'with MTA-STS':>13} {'mta_sts = 0':>12} {'difference':>11}")
    for name, (a, b) in (("wall s", walls), ("99% done s", bulk), ("scanner CPU s", cpu)):
        print(f"{name:>22} {a:>13.2f} {b:>12.2f} {(a - b) / b if b else 0:>+11.1%}")
    print(
        f"\npolicy fetches: {fetches:.0f}; sum of fetch time {fetch_sum:.1f}s vs sum of SMTP probe time "
        f"{smtp_sum:.1f}s ({fetch_sum / (fetch_sum + smtp_sum) if smtp_sum else 0:.1%} of connection time)"
    )


if __name__ == "__main__":
    main()

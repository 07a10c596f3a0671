"""Internet-like conditions (issue #12): a scan with DEFAULT timeouts and retries on the
Internet-like profile, and in the same run the same world with no unresponsive hosts.

    python benchmarks/internet.py [--domains 100000] [--seed 1]

Both worlds are ``WorldSpec("scale", N, seed, profile)``: the ``internet`` profile
(testbed/internet.toml: latency with jitter on DNS, SMTP and HTTPS; silent, SYN-dropping,
tarpitting, greylisting, 421-above-N and many-address MX hosts, silent IPv6, silent and
slow policy hosts) and a profile that extends it with every hostile share set to 0 (the
baseline: the same domains, providers and latency, every host answering).  The scan runs
with the user's defaults (no --smtp-timeout, --smtp-retry-delay or --dns-timeout); only the
providers' politeness limits are lifted, as in scan_full.py, so that the figures measure
the tail and not outlook.com's 4 connections/s.

Printed per world: time to 99%, 99.9% and 100% of the domains written (from each line's
``measured_at``), domains/s to 99%, connections per MX host counted by the world's mail
servers (``testbed stats``: the max, and how many hosts got more than the retry policy
allows, i.e. more than (1 + 2 x --smtp-retries) per probed address: must be 0), peak open
sockets of the scanner's processes (sampled from /proc every 0.1 s), peak RSS (sum of the
scan process's and the probe process's VmHWM) and the tail at its peak (--summary-json); and
per world the scanner's CPU seconds (its processes' rusage) with the load average at the
start and end of the scan, so that a run slowed by other work on the machine can be told
from one slowed by the scanner, and how many probes the unreachable-address memory recorded
without connecting (names behind an address that dropped SYNs or refused).

The aims (issue #12): time to 100% <= time to 99% + one domain's configured worst case
(WORST_CASE below, from probes/retry.py); time to 99% within 10% of the baseline's;
>= 1,000 domains/s to 99%; peak RSS < 1 GB.  The world shares the machine's cores with
the scanner (and, here, with other users of the machine): note the load with the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from common import ROOT, _children, _vm_hwm_kb
from scan_full import lifted_limits_args, scan_args

from probes.results import read_domain_records
from probes.retry import DOMAIN_WORST_CASE, SMTP_RETRIES, SMTP_RETRY_DELAY
from probes.smtp.session import SMTP_CONNECT_TIMEOUT, SMTP_HOST_TIMEOUT, SMTP_TIMEOUT
from testbed import control
from testbed.control import WorldSpec
from testbed.harness import running_world

#: One domain's configured worst case with the defaults (how it is reached: probes/retry.py).
WORST_CASE = DOMAIN_WORST_CASE
#: The worst case of the hosts the profile makes silent (accept, never greet): banner deadline
#: twice plus the pause; SYN-dropping: the connect deadline twice plus the pause.
SILENT_CASE = 2 * SMTP_TIMEOUT + SMTP_RETRY_DELAY
#: Connections one probed address may cost under the default retry policy (probes/retry.py).
ALLOWED_PER_ADDRESS = 1 + 2 * SMTP_RETRIES

BASELINE_PROFILE = """extends = "internet"
silent = 0.0
syn_drop = 0.0
tarpit = 0.0
greylist = 0.0
client_limit = 0.0
many_addresses = 0.0
ipv6_silent = 0.0
sts_silent = 0.0
sts_slow_body = 0.0
"""


@dataclass
class Run:
    label: str
    domains: int = 0
    wall: float = 0.0
    to: dict[float, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_sockets: int = 0
    max_connections: int = 0
    over_policy: list[tuple[str, int, int]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    smtp: Counter[str] = field(default_factory=Counter)
    greylisted: int = 0
    #: Probes recorded from the unreachable-address memory (no connection made).
    remembered: int = 0
    not_probed: Counter[str] = field(default_factory=Counter)
    tail: dict[str, object] = field(default_factory=dict)
    exit_code: int = 0
    #: CPU seconds of the scanner's processes (the scan process and its probe process).
    cpu: float = 0.0
    #: The machine's 1-minute load average when the scan started and when it ended.
    load: tuple[float, float] = (0.0, 0.0)
    #: CPU seconds the world's servers spent while the scan ran (they share the 2 cores).
    world_cpu: float = 0.0


def _sockets(pid: int) -> int:
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return 0
    return sum(link.startswith("socket:") for link in links)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` have used so far (gone ones: 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _scan(args: list[str], out: Path, summary: Path, run: Run, world_pids: list[int]) -> None:
    """Run the scan; fill ``run``'s wall time, peaks, exit code, tail, CPU (its own and the
    world's) and load."""
    argv = [sys.executable, "-m", "mxscan", "scan", *args, "--out", str(out), "--fresh"]
    argv += ["--progress", "off", "--summary-json", str(summary)]
    load_before, cpu_before, world_before = os.getloadavg()[0], _children_cpu(), _process_cpu(world_pids)
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    peaks: dict[int, int] = {}
    sockets = 0
    while proc.poll() is None:
        pids = (proc.pid, *_children(proc.pid))
        for pid in pids:
            peaks[pid] = max(peaks.get(pid, 0), _vm_hwm_kb(pid))
        sockets = max(sockets, sum(_sockets(pid) for pid in pids))
        time.sleep(0.1)
    run.wall = time.perf_counter() - began
    run.world_cpu = _process_cpu(world_pids) - world_before
    # the world's servers are children too, but reaped only at the end: this is the scan's CPU
    run.cpu = _children_cpu() - cpu_before
    run.load = (load_before, os.getloadavg()[0])
    run.tail = orjson.loads(summary.read_bytes()).get("tail", {}) if summary.exists() else {}
    run.peak_rss_mb, run.peak_sockets, run.exit_code = sum(peaks.values()) / 1024, sockets, proc.returncode


def _instant(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_world(label: str, spec: WorldSpec, folder: Path) -> Run:
    run = Run(label)
    out, summary = folder / f"out-{label}.ndjson", folder / f"summary-{label}.json"
    began = time.perf_counter()
    with running_world(spec) as world:
        print(f"  {label}: world up in {time.perf_counter() - began:.0f}s", flush=True)
        control.mail_stats(world.state_dir, reset=True)
        extra = lifted_limits_args(folder)  # defaults for everything else: the point
        world_pids = [server["pid"] for server in world.state.get("servers", ())]
        _scan(scan_args(world, extra), out, summary, run, world_pids)
        merged = control.merge_stats(control.mail_stats(world.state_dir))
    addresses: Counter[str] = Counter()  # distinct probed addresses per MX host
    ends: list[float] = []
    started = None
    seen: set[tuple[str, str]] = set()
    for record in read_domain_records(out):
        run.domains += 1
        run.statuses[record["status"]] += 1
        started = started or _instant(record["scan"]["started"])
        ends.append(_instant(record["measured_at"]))
        for mx in record.get("mx_transport") or ():
            run.not_probed.update(mx.get("not_probed") or {})
            for probe in mx["addresses"]:
                key = (probe["host"], probe["address"])
                if key not in seen:
                    seen.add(key)
                    addresses[probe["host"]] += 1
                    run.smtp[probe["status"]] += 1
                    run.greylisted += bool(probe.get("greylisted"))
                    run.remembered += probe["attempts"] == 0 and probe["status"].startswith("connection-")
    connections: dict[str, int] = merged["connections"]
    run.max_connections = max(connections.values(), default=0)
    run.over_policy = sorted(
        (host, n, ALLOWED_PER_ADDRESS * addresses[host])
        for host, n in connections.items()
        if n > ALLOWED_PER_ADDRESS * max(addresses[host], 1)
    )
    if ends and started is not None:
        ends.sort()
        for share in (0.99, 0.999, 1.0):
            run.to[share] = ends[min(len(ends) - 1, int(share * len(ends)) - (share == 1.0))] - started
    out.unlink(missing_ok=True)
    return run


def report(runs: list[Run]) -> None:
    print(
        f"\nDefaults: --smtp-connect-timeout {SMTP_CONNECT_TIMEOUT:g} --smtp-timeout "
        f"{SMTP_TIMEOUT:g} --smtp-host-timeout {SMTP_HOST_TIMEOUT:g} --smtp-retries "
        f"{SMTP_RETRIES} --smtp-retry-delay {SMTP_RETRY_DELAY:g}; a domain's worst case "
        f"{WORST_CASE:g} s, a silent host's {SILENT_CASE:g} s\n"
    )
    head = (
        f"{'world':>12} {'domains':>8} {'to 99%':>7} {'to 99.9%':>8} {'to 100%':>8} {'dom/s@99%':>9} "
        f"{'conn/host max':>13} {'over policy':>11} {'sockets':>7} {'RSS MB':>6} {'tail peak':>16}"
    )
    print(head)
    for r in runs:
        t99 = r.to.get(0.99, 0.0)
        peak = f"{r.tail.get('peak_domains', 0)} dom/{r.tail.get('peak_hosts', 0)} hosts"
        print(
            f"{r.label:>12} {r.domains:>8} {t99:>7.1f} {r.to.get(0.999, 0):>8.1f} {r.to.get(1.0, 0):>8.1f} "
            f"{0.99 * r.domains / max(t99, 1e-9):>9.0f} {r.max_connections:>13} {len(r.over_policy):>11} "
            f"{r.peak_sockets:>7} {r.peak_rss_mb:>6.0f} {peak:>16}"
        )
    for r in runs:
        print(
            f"\n{r.label}: scanner CPU {r.cpu:.0f} s ({1e6 * r.cpu / max(r.domains, 1):.0f} us/domain), "
            f"wall {r.wall:.0f} s, load average {r.load[0]:.1f} at the start, {r.load[1]:.1f} at the end"
        )
        both = 1e6 * (r.cpu + r.world_cpu) / max(r.domains, 1)
        print(
            f"  the world's servers: CPU {r.world_cpu:.0f} s ({1e6 * r.world_cpu / max(r.domains, 1):.0f} "
            f"us/domain); scanner + world {both:.0f} us/domain, so these 2 cores can carry at most "
            f"{2e6 / max(both, 1e-9):.0f} domains/s of this world"
        )
        # On the Internet the servers' CPU is not on the scanning machine: what the scanner alone
        # would carry on 2 cores, printed beside (never instead of) the measured rate.
        alone = 2e6 / max(1e6 * r.cpu / max(r.domains, 1), 1e-9)
        print(f"  the scanner alone on 2 cores (servers elsewhere): at most {alone:.0f} domains/s")
        print(f"  exit {r.exit_code}; domains {dict(r.statuses)}; SMTP probes {dict(r.smtp)}")
        print(f"  greylisted then answered: {r.greylisted}; addresses not probed: {dict(r.not_probed)}")
        print(f"  recorded from the unreachable-address memory (no connection): {r.remembered}")
        for host, n, allowed in r.over_policy[:10]:
            print(f"  over the retry policy: {host} {n} connections (allowed {allowed})")
    internet, baseline = runs
    t99, t100 = internet.to.get(0.99, 0.0), internet.to.get(1.0, 0.0)
    b99 = baseline.to.get(0.99, 0.0)
    print("\nAims")
    print(f"  100% <= 99% + worst case: {t100:.1f} <= {t99 + WORST_CASE:.1f}: {t100 <= t99 + WORST_CASE}")
    print(f"  99% within 10% of baseline: {t99:.1f} vs {b99:.1f}: {t99 <= 1.1 * b99}")
    rate = 0.99 * internet.domains / max(t99, 1e-9)
    print(f"  >= 1,000 domains/s to 99%: {rate:.0f}: {rate >= 1000}")
    per = [1e6 * r.cpu / max(r.domains, 1) for r in (internet, baseline)]
    print(f"  (scanner CPU per domain, independent of the machine's load: {per[0]:.0f} vs {per[1]:.0f} us)")
    print(f"  peak RSS < 1 GB: {internet.peak_rss_mb:.0f} MB: {internet.peak_rss_mb < 1024}")
    print(f"  hosts over the retry policy: {len(internet.over_policy)} (must be 0)")
    print(f"  load average at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mxscan-bench-internet-") as tmp:
        folder = Path(tmp)
        baseline = folder / "no-unresponsive.toml"
        baseline.write_text(BASELINE_PROFILE)
        print(
            f"Internet-like world, {args.domains:,} domains, seed {args.seed}; load {os.getloadavg()}",
            flush=True,
        )
        runs = [
            one_world("internet", WorldSpec("scale", args.domains, args.seed, "internet"), folder),
            one_world("baseline", WorldSpec("scale", args.domains, args.seed, str(baseline)), folder),
        ]
        report(runs)


if __name__ == "__main__":
    main()

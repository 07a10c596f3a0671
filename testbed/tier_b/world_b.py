"""Tier (b): the world's zones in NSD behind a validating unbound, started and stopped by PID.

    with running_tier_b(scenario_world()) as ep:
        dns.query.udp(query, ep.host, port=ep.port)

    python -m testbed.tier_b.world_b --scenarios --state-dir run/tier-b

Theory of operation
-------------------
``prepare`` writes everything into ``<state_dir>/tier-b``: one key per signed
zone, every zone file (``zonefiles.build_zones`` + ``signing.sign_zone``), the
root key as unbound's trust anchor, the root hints, nsd.conf and unbound.conf.
``start_tier_b`` then starts NSD (authoritative for every zone on
``NsLayout.nsd`` port 53) and unbound (the resolver endpoint, default
127.0.0.54:53), each in its own session, and returns when unbound answers the
root SOA with AD=1 — the whole chain works.  Root is needed for port 53.

Differences from tier (a) (``TIER_A_DIFFERENCES``), all about the form of the
resolver faults (both tiers apply a fault to the domain and the names below it):

- ``timeout``: unbound drops the queries (``local-zone deny``); same as tier (a)
  over UDP; over TCP unbound closes the connection unanswered (tier (a) keeps
  it open).
- ``refused``: unbound answers REFUSED (``always_refuse``), with AA set (tier
  (a): no AA).
- ``servfail``: a delegation with no usable server; unbound answers SERVFAIL
  at once, also with CD=1, no EDE, like tier (a).
- ``ns1.testbed.test`` / ``ns-lame.testbed.test`` exist in tier (b) (the
  servers' names), and are NXDOMAIN in tier (a).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from testbed.tier_b.nsd import render_nsd_conf
from testbed.tier_b.signing import ZoneKey, ds_rdata, make_key, sign_zone, validity_now
from testbed.tier_b.unbound import fault_local_zones, render_root_hints, render_unbound_conf
from testbed.tier_b.zonefiles import DEFAULT_LAYOUT, NAMESERVER, NsLayout, build_zones, write_zone
from testbed.world import World, ZoneStatus
from testbed.zones import TlsaData, WorldIndex, placeholder_tlsa_data

__all__ = [
    "DEFAULT_RESOLVER_ADDR",
    "TIER_A_DIFFERENCES",
    "Endpoint",
    "Prepared",
    "TierBError",
    "descendants",
    "main",
    "prepare",
    "running_tier_b",
    "start_tier_b",
    "stop_tier_b",
    "tools_missing",
]

#: The resolver endpoint (tier (a) uses 127.0.0.53:10053); 127.0.0.0/16 is for servers.
DEFAULT_RESOLVER_ADDR = "127.0.0.54"
#: Seconds to wait for NSD and unbound to answer (NSD reads 100k zone files at start).
READY_TIMEOUT = 300.0
#: Seconds between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
#: Scenario key -> how tier (b) answers differently from tier (a) (module docstring).
TIER_A_DIFFERENCES = {
    "timeout": "dropped by unbound (local-zone deny); over TCP closed unanswered (tier (a) keeps it open)",
    "refused": "REFUSED by unbound (always_refuse) with AA set (tier (a): no AA)",
    "servfail": "delegation with no usable server: SERVFAIL also with CD=1, no EDE, like tier (a)",
}


class TierBError(RuntimeError):
    """Tier (b) could not be prepared or started; the message says why."""


class Endpoint(NamedTuple):
    """The resolver to point a scan at, the PIDs we started, and how long each step took."""

    host: str
    port: int
    #: "nsd" and "unbound" -> PID, each a session leader.  NSD's PID is its xfrd process, which
    #: forks NSD's main process, which forks the servers; stop_tier_b stops them all by PID.
    pids: dict[str, int]
    #: Seconds per step and counts: zones, signed, generate_s, nsd_start_s, unbound_start_s.
    stats: dict[str, float]


class Prepared(NamedTuple):
    directory: Path
    nsd_conf: Path
    unbound_conf: Path
    stats: dict[str, float]


def tools_missing() -> list[str]:
    """The Debian programs tier (b) needs that are not installed (nsd, unbound)."""
    return [tool for tool in ("nsd", "unbound") if _which(tool) is None]


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def prepare(
    world: World,
    directory: Path,
    resolver: tuple[str, int] = (DEFAULT_RESOLVER_ADDR, 53),
    layout: NsLayout = DEFAULT_LAYOUT,
    tlsa_data: TlsaData = placeholder_tlsa_data,
) -> Prepared:
    """Write keys, zone files and configs for ``world`` into ``directory`` (emptied first)."""
    t0 = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    zones_dir = directory / "zones"
    zones_dir.mkdir(parents=True)
    (directory / "xfr").mkdir()
    index = WorldIndex(world, tlsa_data)
    keys: dict[str, ZoneKey] = {
        apex: make_key() for apex, status in index.zones.items() if status is not ZoneStatus.UNSIGNED
    }
    if "" not in keys:
        raise TierBError("the world's root zone is unsigned: unbound needs its key as the trust anchor")
    zones = build_zones(index, layout, lambda apex: ds_rdata(apex, keys[apex]) if apex in keys else None)
    t1 = time.perf_counter()
    validity = validity_now()
    for apex, zone in zones.items():
        records = zone.records
        if zone.status is not ZoneStatus.UNSIGNED:
            records = sign_zone(apex, records, keys[apex], validity, bogus=zone.status is ZoneStatus.BOGUS)
        write_zone(zones_dir, apex, records)
    t2 = time.perf_counter()
    anchor = directory / "root.key"
    anchor.write_text(f".\t300\tIN\tDNSKEY\t{keys[''].dnskey_text}\n")
    hints = directory / "root.hints"
    hints.write_text(render_root_hints(NAMESERVER, layout.nsd))
    nsd_conf = directory / "nsd.conf"
    nsd_conf.write_text(render_nsd_conf(directory, zones_dir, (layout.nsd,), zones))
    unbound_conf = directory / "unbound.conf"
    unbound_conf.write_text(
        render_unbound_conf(directory, *resolver, hints, anchor, fault_local_zones(world), (layout.lame,))
    )
    signed = sum(1 for z in zones.values() if z.status is not ZoneStatus.UNSIGNED)
    stats = {"zones": len(zones), "signed": signed, "build_s": t1 - t0, "sign_write_s": t2 - t1}
    return Prepared(directory, nsd_conf, unbound_conf, stats)


def _answers(addr: str, port: int, name: str, want_ad: bool, timeout: float = 0.25) -> bool:
    query = dns.message.make_query(name, "SOA", use_edns=0)
    query.flags |= dns.flags.AD
    try:
        reply = dns.query.udp(query, addr, port=port, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return False
    return reply.rcode() == dns.rcode.NOERROR and (not want_ad or bool(reply.flags & dns.flags.AD))


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait(proc: subprocess.Popen[bytes], ready: Iterator[bool], log: Path, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise TierBError(f"{proc.args!r} exited with {proc.returncode}\n{tail}")
        if next(ready):
            return time.monotonic() - start
        time.sleep(0.05)
    raise TierBError(f"{proc.args!r} not answering after {timeout:.0f}s (log: {log})")


def _poll(addr: str, port: int, name: str, want_ad: bool) -> Iterator[bool]:
    while True:
        yield _answers(addr, port, name, want_ad)


def start_tier_b(
    world: World,
    state_dir: Path,
    *,
    addr: str = DEFAULT_RESOLVER_ADDR,
    port: int = 53,
    layout: NsLayout = DEFAULT_LAYOUT,
    tlsa_data: TlsaData = placeholder_tlsa_data,
    timeout: float = READY_TIMEOUT,
) -> Endpoint:
    """Prepare ``<state_dir>/tier-b`` and start NSD and unbound; stop both if either fails."""
    prep = prepare(world, state_dir / "tier-b", (addr, port), layout, tlsa_data)
    endpoint = start_dns(prep.nsd_conf, prep.unbound_conf, prep.directory, addr, port, layout, timeout)
    return endpoint._replace(stats={**prep.stats, **endpoint.stats})


def start_dns(
    nsd_conf: Path,
    unbound_conf: Path,
    directory: Path,
    addr: str = DEFAULT_RESOLVER_ADDR,
    port: int = 53,
    layout: NsLayout = DEFAULT_LAYOUT,
    timeout: float = READY_TIMEOUT,
) -> Endpoint:
    """Start NSD and unbound from prepared configs; stop both if either fails."""
    missing = tools_missing()
    if missing:
        raise TierBError(f"not installed: {', '.join(missing)} (apt-get install nsd unbound)")
    pids: dict[str, int] = {}
    try:
        nsd_log = directory / "nsd.out"
        nsd = _spawn([str(_which("nsd")), "-d", "-c", str(nsd_conf)], nsd_log)
        pids["nsd"] = nsd.pid
        nsd_s = _wait(nsd, _poll(layout.nsd, 53, ".", False), nsd_log, timeout)
        ub_log = directory / "unbound.log"
        unbound = _spawn([str(_which("unbound")), "-d", "-c", str(unbound_conf)], ub_log)
        pids["unbound"] = unbound.pid
        ub_s = _wait(unbound, _poll(addr, port, ".", True), ub_log, timeout)
    except BaseException:
        stop_tier_b(pids)
        raise
    return Endpoint(addr, port, pids, {"nsd_start_s": nsd_s, "unbound_start_s": ub_s})


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid`` (NSD: xfrd -> main -> server processes)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (int(c) for c in (task / "children").read_text().split()):
                found += [child, *descendants(child)]
    return found


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap our own child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _stop_pid(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not _gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not _gone(pid):
            time.sleep(0.02)


def stop_tier_b(pids: dict[str, int] | Endpoint, grace: float = STOP_GRACE) -> None:
    """Stop unbound, then NSD and any NSD child left behind, each by its PID."""
    if isinstance(pids, Endpoint):
        pids = pids.pids
    for name in ("unbound", "nsd"):
        pid = pids.get(name)
        if pid is None:
            continue
        children = descendants(pid)  # NSD's main and server processes
        _stop_pid(pid, grace)
        for child in children:
            with contextlib.suppress(OSError):
                if not Path(f"/proc/{child}/comm").read_text().startswith("nsd"):
                    continue  # already gone and its PID reused: not ours to signal
            _stop_pid(child, grace)


@contextlib.contextmanager
def running_tier_b(
    world: World,
    state_dir: Path | None = None,
    *,
    addr: str = DEFAULT_RESOLVER_ADDR,
    port: int = 53,
    layout: NsLayout = DEFAULT_LAYOUT,
    tlsa_data: TlsaData = placeholder_tlsa_data,
) -> Iterator[Endpoint]:
    """Tier (b) for the duration of a block; a temporary state dir unless one is given."""
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="testbed-b-")))
        endpoint = start_tier_b(world, state_dir, addr=addr, port=port, layout=layout, tlsa_data=tlsa_data)
        try:
            yield endpoint
        finally:
            stop_tier_b(endpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.tier_b.world_b", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--scenarios", action="store_true", help="one domain per scenario")
    group.add_argument("--domains", type=int, metavar="N", help="a scale world of N domains")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--addr", default=DEFAULT_RESOLVER_ADDR, help="resolver address")
    parser.add_argument("--port", type=int, default=53, help="resolver port")
    args = parser.parse_args(argv)
    from testbed.scale import scale_world
    from testbed.scenarios import scenario_world

    world = scenario_world() if args.scenarios else scale_world(args.domains, args.seed)
    stop = False

    def _on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        endpoint = start_tier_b(world, args.state_dir, addr=args.addr, port=args.port)
    except TierBError as exc:
        print(f"tier (b): {exc}", file=sys.stderr)
        return 1
    stats = " ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in endpoint.stats.items()
    )
    print(f"resolver {endpoint.host}:{endpoint.port} pids {endpoint.pids} {stats}", flush=True)
    try:
        while not stop:
            time.sleep(0.2)
    finally:
        stop_tier_b(endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())

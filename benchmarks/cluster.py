"""A cluster scan's cost against one machine's, and how many records a second the cluster
driver writes (issue #14).

``--scale-world N``: the scale world of N domains (seed 1) scanned, in the same run and against
the same world, by the single-machine ``mxscan scan`` and by ``mxscan scan --cluster`` on a
local 2-node Ray cluster (head and one more node of one CPU each, as tests/cluster starts them:
two scan workers, one probe actor), both with the user's defaults (``--lifted``: again with
every provider limit lifted, as scan_full.py lifts them).  Per run: wall time, domains/s, CPU
of every process involved and CPU per domain (the scan by wait4: for one machine the scan and
its probe process; for the cluster the driver, and from /proc, sampled every 0.1 s, the scan
workers, the probe actors and Ray's own processes -- raylet, gcs_server, agents, idle workers),
the ratio cluster/single (aim <= 1.3x CPU per domain), the driver's peak RSS, how many domains'
records differ (timestamps and timings aside; certificate fingerprints counted apart: a scale
world issues an evicted leaf again), and one probe actor's CPU per probe against the largest
default provider budget.  The 100k world takes ~5-6 minutes here (two scans of ~1.5-3 minutes).

``--ray-calls N``: the CPU (caller and actor) of N plain calls to a trivial async actor, and of
N yields of one streaming call (back to back, and 1 ms apart): what a batched probe call pays per
batch sent and per group of answers returned (``scaleout.cluster.calls``).

Without ``--scale-world`` or ``--ray-calls``: the driver's own rate (it must not be the bottleneck
below ~20k domains/s).  The real driver (``scaleout.cluster.driver.run_cluster``) on a local Ray cluster of
``--workers`` CPUs, with fake scan workers that measure nothing: each returns, for every
domain of its batch, a record line of ``--line-bytes`` bytes (a scenario-world record is
~1-3 KB; host lines are written once per host and are not counted).  The driver does all it
does in a real scan: reads the list, batches it, receives the lines through Ray, checks each
domain against the file's key set and appends through the results store.

Ray's start-up is taken out by difference: two runs, N and 2N domains, and the rate is
N / (wall(2N) - wall(N)).  Ray binds to the machine's interface address, so run this only
inside a private network namespace:

    unshare -n -- .venv/bin/python tests/cluster/netns.py .venv/bin/python benchmarks/cluster.py
        [--scale-world 100000 [--lifted] | --ray-calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from common import _vm_hwm_kb

from engine.inputs import DomainReader, InputItem
from engine.limitspec import BIG_PROVIDER_LIMIT
from mxscan.config import ScanConfig
from probes.results import read_domain_records
from scaleout.cluster.actors import Line, WorkerStatus
from scaleout.cluster.driver import run_cluster
from testbed.control import WorldSpec
from tests.cluster.netns import only_loopback

ROOT = Path(__file__).resolve().parent.parent


class FakeWorker:
    """``ScanWorker``'s methods, without a pipeline: a record line per domain at once."""

    def __init__(self, _cfg: ScanConfig, _probe_actors: object) -> None:
        self.pad = "x" * max(0, int(os.environ.get("MXSCAN_BENCH_LINE_BYTES", "1500")) - 80)

    async def setup(self) -> tuple[bool, str]:
        return True, ""

    async def measure(self, batch: list[InputItem]) -> list[Line]:
        return [
            (
                item.domain,
                "success",
                f'{{"schema_version":2,"domain":"{item.domain}","pad":"{self.pad}"}}\n'.encode(),
            )
            for item in batch
        ]

    async def status(self, _unresponsive: list[tuple[str, str]]) -> WorkerStatus:
        return [], 0, 0, 0


def _run(where: Path, domains: int, workers: int) -> tuple[float, float]:
    """(wall seconds, driver CPU seconds) of one cluster run over ``domains`` names."""
    names = where / f"list-{domains}.txt"
    names.write_text("".join(f"d{i}.bench.test\n" for i in range(domains)))
    out = where / f"out-{domains}.ndjson"
    cfg = ScanConfig(domains=str(names), out=out, cluster=f"local:{workers}", dns_only=True, progress="off")
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    code = run_cluster(cfg, io.StringIO(), iter(DomainReader(str(names))), domains, worker=FakeWorker)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert code == 0, code
    lines = sum(1 for _ in out.open("rb"))
    assert lines == domains + 1, (lines, domains)  # every record once, and the run line
    out.unlink()
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


# --- the scale world: one machine against a local 2-node cluster (--scale-world N) ---------

#: Seconds between looks at the processes' CPU (a process that exits loses at most this much)
#: and between walks of the process tree (Ray starts actor processes as they are needed).
CPU_SAMPLE = 0.1
TREE_WALK = 1.0
#: Process titles Ray gives the processes of our actors (``setproctitle``: ``ray::Class...``).
ACTOR_TITLES = {"ray::ScanWorker": "scan workers", "ray::ProbeActor": "probe actors"}


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a child forked by any of its threads counts)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


class CpuWatch:
    """The CPU the processes below this one spend from ``start`` on, by group: our actors'
    processes by their Ray title, everything else (raylet, gcs_server, Ray's agents, idle
    workers) as "ray's own"; the processes in ``ignore`` (the world's servers) and the
    scan's own process (measured by wait4) left out."""

    def __init__(self, ignore: set[int]) -> None:
        self.ignore = ignore
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}

    def _walk(self, skip: int | None) -> None:
        if skip is not None:  # the scan's own process and children: in its wait4 figures
            self.ignore.update((skip, *_descendants(skip)))
        for pid in _descendants(os.getpid()):
            if pid in self.ignore or pid in self.last:
                continue
            if (cpu := _cpu_seconds(pid)) is not None:
                self.last[pid] = cpu
                self.base[pid] = cpu if skip is None else 0.0  # new during the scan: all of it
                self.group[pid] = "ray's own"

    def start(self) -> None:
        self._walk(None)

    def sample(self, skip: int, walk: bool) -> None:
        if walk:
            self._walk(skip)
        for pid in list(self.last):
            if (cpu := _cpu_seconds(pid)) is not None:
                self.last[pid] = cpu
                title = _title(pid)
                for prefix, group in ACTOR_TITLES.items():
                    if title.startswith(prefix):
                        self.group[pid] = group  # sticky: an actor's process stays its actor's

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, cpu in self.last.items():
            out[self.group[pid]] = out.get(self.group[pid], 0.0) + cpu - self.base.get(pid, 0.0)
        return out


@dataclass
class WorldRun:
    label: str
    domains: int
    wall: float
    #: CPU seconds by group: "scan" (the mxscan process and its children, by wait4), and for a
    #: cluster scan the groups of ``CpuWatch``.
    cpu: dict[str, float]
    driver_rss_mb: float
    exit_code: int
    digests: dict[str, tuple[bytes, bytes]]
    out: Path
    #: A cluster scan: the probes (connections) each probe actor made.
    probes: list[int]
    #: A cluster scan: the driver's count of batched probe calls ("N probe calls of R requests
    #: on average"), or "".
    calls: str = ""

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    def per_domain_us(self, cpu: float) -> float:
        return cpu / self.domains * 1e6 if self.domains else 0.0


def _unsigned(value: Any) -> Any:
    """``value`` without certificate fingerprints (``certs[].sha256``)."""
    if isinstance(value, dict):
        return {
            k: _unsigned(v) if k != "certs" else [_drop(c, "sha256") for c in v] for k, v in value.items()
        }
    if isinstance(value, list):
        return [_unsigned(item) for item in value]
    return value


def _drop(value: Any, key: str) -> Any:
    return {k: v for k, v in value.items() if k != key} if isinstance(value, dict) else value


def _digests(out: Path) -> dict[str, tuple[bytes, bytes]]:
    """Each domain's record without what differs between two runs by nature (as the cluster
    tests compare them), as 16-byte digests: two 100k files fit in a few MB.  The second
    digest leaves out certificate fingerprints too: a scale world's mail process that evicts
    a server context (``testbed.worldpki.CONTEXT_CACHE``) issues the leaf again, the same
    key and names with a new ECDSA signature, so two single-machine scans of one world
    differ there too (measured: 2,502 of 5,000 domains, nothing else)."""
    from tests.e2e.test_shard_merge import _stable as stable

    digests: dict[str, tuple[bytes, bytes]] = {}
    for record in read_domain_records(out):
        kept = stable(record)
        full = hashlib.blake2b(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS), digest_size=16)
        rest = hashlib.blake2b(orjson.dumps(_unsigned(kept), option=orjson.OPT_SORT_KEYS), digest_size=16)
        digests[record["domain"]] = (full.digest(), rest.digest())
    return digests


def _world_scan(label: str, argv: list[str], out: Path, watch: CpuWatch | None) -> WorldRun:
    """One ``mxscan scan`` child to its end: wall, CPU, the driver's peak RSS, the digests."""
    argv = [sys.executable, "-m", "mxscan", "scan", *argv, "--out", str(out), "--fresh", "--progress", "off"]
    if watch is not None:
        watch.start()
    began = time.perf_counter()
    log = out.with_suffix(".stderr")
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=stderr)
    peak_kb, last_walk = 0, 0.0
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
        if watch is not None:
            walk = time.monotonic() - last_walk >= TREE_WALK
            last_walk = time.monotonic() if walk else last_walk
            watch.sample(proc.pid, walk)
        time.sleep(CPU_SAMPLE)
    if watch is not None:
        watch.sample(proc.pid, False)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    cpu = {"scan": usage.ru_utime + usage.ru_stime, **(watch.totals() if watch is not None else {})}
    code = os.waitstatus_to_exitcode(status)
    said = log.read_text(errors="replace")
    if code != 0:
        print(said[-3000:])
    found = re.search(r"probes per probe actor: ([\d, ]+);", said)
    probes = [int(n) for n in found[1].split(",")] if found else []
    calls = re.search(r"\d+ probe calls of [\d.]+ requests on average[^;]*", said)
    digests = _digests(out)
    return WorldRun(
        label, len(digests), wall, cpu, peak_kb / 1024, code, digests, out, probes, calls[0] if calls else ""
    )


def _paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """A record flattened to ``a.b[0].c`` paths and their values."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _paths(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _paths(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def _what_differs(single: WorldRun, cluster: WorldRun, domains: list[str]) -> dict[str, int]:
    """Over ``domains``: how many differ at each path (list indexes dropped), timings aside."""
    from tests.e2e.test_shard_merge import _stable as stable

    wanted = set(domains)
    records: dict[str, list[dict[str, Any]]] = {}
    for run in (single, cluster):
        for record in read_domain_records(run.out):
            if record["domain"] in wanted:
                records.setdefault(record["domain"], []).append(_paths(stable(record)))
    counts: dict[str, int] = {}
    for one, other in records.values():
        paths = {re.sub(r"\[\d+\]", "[]", k) for k in one.keys() | other.keys() if one.get(k) != other.get(k)}
        for path in paths:
            counts[path] = counts.get(path, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _print_world_runs(single: WorldRun, cluster: WorldRun) -> None:
    print(
        f"\n{'run':>22} {'domains':>8} {'exit':>4} {'wall s':>7} {'dom/s':>7} {'CPU s':>7} "
        f"{'CPU µs/dom':>10} {'driver RSS MB':>13}"
    )
    for run in (single, cluster):
        print(
            f"{run.label:>22} {run.domains:>8} {run.exit_code:>4} {run.wall:>7.1f} "
            f"{run.domains / run.wall:>7.0f} {run.total_cpu:>7.1f} {run.per_domain_us(run.total_cpu):>10.0f} "
            f"{run.driver_rss_mb:>13.0f}"
        )
    print("  CPU by process group (µs per domain):")
    for run in (single, cluster):
        parts = ", ".join(
            f"{group} {seconds:.1f} s ({run.per_domain_us(seconds):.0f})"
            for group, seconds in run.cpu.items()
        )
        print(f"    {run.label}: {parts}")
    ours = cluster.total_cpu - cluster.cpu.get("ray's own", 0.0)
    ratio = cluster.per_domain_us(cluster.total_cpu) / single.per_domain_us(single.total_cpu)
    print(
        f"  cluster / single, CPU per domain: {ratio:.2f}x all processes (aim <= 1.3x), "
        f"{cluster.per_domain_us(ours) / single.per_domain_us(single.total_cpu):.2f}x without Ray's own; "
        f"wall {cluster.wall / single.wall:.2f}x"
    )
    missing = set(single.digests) ^ set(cluster.digests)
    both = set(single.digests) & set(cluster.digests)
    different = sorted(d for d in both if single.digests[d][0] != cluster.digests[d][0])
    beyond = [d for d in different if single.digests[d][1] != cluster.digests[d][1]]
    print(
        f"  results: {len(beyond)} domains differ, {len(missing)} in one file only; and "
        f"{len(different) - len(beyond)} only in certificate fingerprints, as between two single-machine "
        f"scans of this world (per domain, timestamps and timings aside)"
        f"{': ' + ', '.join(beyond[:10]) if beyond else ''}"
    )
    probes, probe_cpu = sum(cluster.probes), cluster.cpu.get("probe actors", 0.0)
    budget = BIG_PROVIDER_LIMIT.rate or 1.0  # new connections a second (its rate is set)
    if probes and probe_cpu:
        ceiling = probes / probe_cpu
        print(
            f"  probe actors: {probes} probes ({', '.join(map(str, cluster.probes))} per actor), "
            f"{probe_cpu / probes * 1e6:.0f} µs of CPU per probe: one probe actor's ceiling "
            f"~{ceiling:,.0f} probes/s on a core of its own, {ceiling / budget:.1f}x the "
            f"largest default provider budget ({budget:.0f} new connections/s)"
        )
    if cluster.calls:
        print(f"  scan workers to probe actors: {cluster.calls}")
    if beyond:
        sample = beyond[:500]
        print(f"  where they differ (of {len(sample)}): {_what_differs(single, cluster, sample)}")


def scale_world(size: int, lifted: bool) -> int:
    """The scale world of ``size`` domains scanned by one machine and by a local 2-node
    cluster (head and one more node of one CPU each, as tests/cluster does), same world."""
    from memory import world_pids
    from ray.cluster_utils import Cluster
    from scan_full import lifted_limits_args, scan_args, world_scan

    with (
        tempfile.TemporaryDirectory(prefix="mxscan-cluster-bench-") as tmp,
        world_scan(WorldSpec("scale", domains=size, seed=1), None) as world,
    ):
        ray_temp = tempfile.mkdtemp(prefix="mxscan-ray-bench-")
        began = time.perf_counter()
        nodes: Any = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": ray_temp},
        )
        try:
            nodes.add_node(num_cpus=1)
            nodes.wait_for_nodes()
            print(f"  2-node Ray cluster up in {time.perf_counter() - began:.1f}s", flush=True)
            variants: list[tuple[str, list[str]]] = [("defaults", [])] + (
                [("limits lifted", lifted_limits_args(Path(tmp)))] if lifted else []
            )
            for name, extra in variants:
                args = scan_args(world, extra)
                single = _world_scan(f"single ({name})", args, Path(tmp) / "single.ndjson", None)
                print(f"  {single.label}: {single.wall:.1f}s, exit {single.exit_code}", flush=True)
                watch = CpuWatch(set(world_pids(world)))
                cluster = _world_scan(
                    f"cluster ({name})",
                    [*args, "--cluster", nodes.address],
                    Path(tmp) / "cluster.ndjson",
                    watch,
                )
                print(f"  {cluster.label}: {cluster.wall:.1f}s, exit {cluster.exit_code}", flush=True)
                _print_world_runs(single, cluster)
                single.out.unlink()
                cluster.out.unlink()
        finally:
            nodes.shutdown()
            shutil.rmtree(ray_temp, ignore_errors=True)
    return 0


# --- Ray's round trips: a plain actor call against one yield of a streaming call (--ray-calls) --


class _Echo:
    """A trivial async actor: what a Ray round trip costs without any work in it."""

    async def one(self, value: int) -> int:
        return value

    async def stream(self, count: int, gap: float) -> Any:
        for value in range(count):
            if gap:
                await asyncio.sleep(gap)
            yield value

    def cpu(self) -> float:
        return _cpu_self()


def ray_calls(count: int) -> int:
    """CPU (caller and actor) per plain actor call and per yield of a streaming call: what
    ``scaleout.cluster.calls`` pays per batch sent and per group of answers returned (a submit
    call plus a poll call per group would pay a plain call for each)."""
    import ray

    temp = tempfile.mkdtemp(prefix="mxb-ray-", dir="/tmp")  # short: Ray's socket paths
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=temp)
    try:
        echo = ray.remote(num_cpus=0, max_concurrency=1000, enable_task_events=False)(_Echo).remote()

        async def calls() -> None:
            for value in range(count):
                await echo.one.remote(value)

        async def streamed(gap: float) -> None:
            async for ref in echo.stream.options(num_returns="streaming").remote(count, gap):
                await ref

        ray.get(echo.one.remote(0))
        runs = [("plain call", calls), ("yield, back to back", lambda: streamed(0.0))]
        for label, run in [*runs, ("yield, 1 ms apart", lambda: streamed(0.001))]:
            mine, theirs = _cpu_self(), ray.get(echo.cpu.remote())
            asyncio.run(run())
            mine, theirs = _cpu_self() - mine, ray.get(echo.cpu.remote()) - theirs
            print(
                f"  {label:>20}: caller {mine / count * 1e6:5.0f} µs, actor {theirs / count * 1e6:5.0f} µs,"
                f" {(mine + theirs) / count * 1e6:5.0f} µs of CPU each"
            )
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    return 0


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=100_000, help="N (the second run has 2N)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--line-bytes", type=int, default=1500)
    parser.add_argument(
        "--scale-world",
        type=int,
        metavar="N",
        help="scan the scale world of N domains, one machine against 2 nodes",
    )
    parser.add_argument(
        "--lifted", action="store_true", help="with --scale-world: also with provider limits lifted"
    )
    parser.add_argument(
        "--ray-calls",
        type=int,
        metavar="N",
        help="CPU of N plain Ray actor calls against N yields of one streaming call",
    )
    args = parser.parse_args()
    if not only_loopback():
        parser.error("Ray binds to every interface: run this under unshare -n through tests/cluster/netns.py")
    if args.scale_world:
        return scale_world(args.scale_world, args.lifted)
    if args.ray_calls:
        return ray_calls(args.ray_calls)
    os.environ["MXSCAN_BENCH_LINE_BYTES"] = str(args.line_bytes)  # seen by the worker processes
    with tempfile.TemporaryDirectory(prefix="mxscan-cluster-bench-") as tmp:
        small = _run(Path(tmp), args.domains, args.workers)
        large = _run(Path(tmp), 2 * args.domains, args.workers)
    extra_wall, extra_cpu = large[0] - small[0], large[1] - small[1]
    print(f"driver, {args.workers} fake workers, {args.line_bytes} B record lines")
    print(f"  {args.domains:>9,} domains: {small[0]:6.1f} s wall, {small[1]:6.1f} s driver CPU")
    print(f"  {2 * args.domains:>9,} domains: {large[0]:6.1f} s wall, {large[1]:6.1f} s driver CPU")
    print(
        f"  by difference: {args.domains / extra_wall:,.0f} records/s written, "
        f"{extra_cpu / args.domains * 1e6:.1f} us of driver CPU per record"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

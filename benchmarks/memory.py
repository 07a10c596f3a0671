"""Memory and output size against list size (issue #17).

    python benchmarks/memory.py [--sizes 100000,300000,1000000] [--gz]

For each size a fresh scale world (``WorldSpec("scale", N, seed=1)``, the tier (a) world: DNS,
SMTP fleet, HTTPS policy sites) runs beside ``mxscan scan`` with the user's defaults (provider
limits included) on the same two cores.  Per size it prints the peak RSS of both scan processes
(the scan and its probe process, summed), the peak of their summed PSS (shared pages counted
once), scanner CPU per domain, and results bytes per domain, plain and compressed; between sizes
the slope: peak RSS per 100k domains.  ``--gz`` writes the results compressed
(``--out results.ndjson.gz``) so the compressed figure, and the CPU, are the scan's own;
without it the plain file is re-framed through the same writer (``engine.compressed``, one
gzip member per ``flush_lines`` lines, as a scan flushing full buffers writes it).

Per size it also prints the world's own cost apart from the scanner's: the seconds to build and
start it, and the RSS of its server processes (when up, and their peak at the end of the scan).

``--trace 50000,150000`` runs the scan under tracemalloc (``tracemem.py``) and prints, per scan
process, what grew between the first and the last mark: objects by type, and the traced bytes
summed by the innermost line of our code that allocated them; traced runs' RSS and CPU are not
the scan's own and are not tabled.  ``--census-only`` counts objects by type without tracing.

Aims (issue #17): peak RSS at 1M <= 1 GB; slope < 50 MB per 100k beyond the first 100k; CPU per
domain flat within 20% from 100k to 1M; compressed results <= 25% of plain.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from common import _children, _proc_kb, _pss_kb, _vm_hwm_kb
from scan_full import isolated_scan, scan_args, world_scan

from testbed.control import WorldSpec
from testbed.harness import RunningWorld

#: Lines per gzip member when a plain file is re-framed: the store's flush size.
REFRAME_LINES = 512


@dataclass
class MemoryRun:
    domains: int
    wall: float
    peak_rss_mb: float
    peak_pss_mb: float
    cpu_us_per_domain: float
    plain_bytes: int
    compressed_bytes: int
    exit_code: int
    summary: dict[str, object]
    #: Each scan process's own peak RSS (the scan process first).
    process_rss_mb: list[float] = field(default_factory=list)
    world_up_s: float = 0.0
    world_rss_mb: float = 0.0
    world_pss_mb: float = 0.0
    world_peak_rss_mb: float = 0.0

    @property
    def plain_per_domain(self) -> float:
        return self.plain_bytes / self.domains if self.domains else 0.0

    @property
    def compressed_per_domain(self) -> float:
        return self.compressed_bytes / self.domains if self.domains else 0.0


def reframed_size(path: Path) -> int:
    """Bytes of ``path`` written as the compressed store writes it: one member per flush."""
    try:
        from engine.compressed import compress_frame
    except ImportError:  # a tree from before compressed output: plain gzip members

        def compress_frame(data: bytes) -> bytes:
            return gzip.compress(data, compresslevel=6, mtime=0)

    total = 0
    batch: list[bytes] = []
    with path.open("rb") as stream:
        for line in stream:
            batch.append(line)
            if len(batch) >= REFRAME_LINES:
                total += len(compress_frame(b"".join(batch)))
                batch.clear()
    if batch:
        total += len(compress_frame(b"".join(batch)))
    return total


def plain_size(path: Path) -> int:
    """Uncompressed bytes of a results file (plain or gzip)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            total += len(chunk)
    return total


def world_pids(world: RunningWorld) -> list[int]:
    """The world's server processes and their children (a server may fork workers)."""
    pids = [int(s["pid"]) for s in world.state.get("servers", ())]
    return pids + [c for pid in pids for c in _children(pid)]


def world_memory(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS of ``pids`` now, in MB."""
    rss = sum(_proc_kb(pid, "status", "VmRSS:") for pid in pids) / 1024
    return rss, sum(_pss_kb(pid) for pid in pids) / 1024


def world_only(size: int) -> None:
    """Build and start the world of ``size`` domains, print its cost, and stop it (no scan)."""
    began = time.perf_counter()
    with world_scan(WorldSpec("scale", domains=size, seed=1), None) as world:
        up = time.perf_counter() - began
        pids = world_pids(world)
        rss, pss = world_memory(pids)
    print(
        f"  world of {size}: up in {up:.0f}s, {len(pids)} server processes, "
        f"RSS {rss:.0f} MB, PSS {pss:.0f} MB"
    )


def one_size(size: int, folder: Path, gz: bool, trace: list[int], census_only: bool = False) -> MemoryRun:
    spec = WorldSpec("scale", domains=size, seed=1)
    out = folder / (f"out-{size}.ndjson.gz" if gz else f"out-{size}.ndjson")
    summary = folder / f"summary-{size}.json"
    interpreter = None
    if trace:
        snaps = folder / f"snaps-{size}"
        snaps.mkdir()
        tracer = str(Path(__file__).resolve().parent / "tracemem.py")
        interpreter = [sys.executable, tracer, str(snaps), ",".join(map(str, trace))]
        interpreter += ["--census-only"] if census_only else []
    began = time.perf_counter()
    with world_scan(spec, None) as world:
        world_up = time.perf_counter() - began
        # The world is built in this process before its servers start: its peak so far.
        builder = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        pids = world_pids(world)
        world_rss, world_pss = world_memory(pids)
        print(
            f"  world: {len(pids)} server processes, RSS {world_rss:.0f} MB, PSS {world_pss:.0f} MB; "
            f"the benchmark process that built it: peak RSS {builder:.0f} MB",
            flush=True,
        )
        run = isolated_scan(scan_args(world, []), out, summary, interpreter)
        world_peak = sum(_vm_hwm_kb(pid) for pid in pids) / 1024
    plain = plain_size(out)
    compressed = out.stat().st_size if gz else reframed_size(out)
    result = MemoryRun(
        domains=run.domains,
        wall=run.wall,
        peak_rss_mb=run.peak_rss_mb,
        peak_pss_mb=run.peak_pss_mb,
        cpu_us_per_domain=run.cpu_us_per_domain,
        plain_bytes=plain,
        compressed_bytes=compressed,
        exit_code=run.exit_code,
        summary=run.summary,
        process_rss_mb=list(run.extra.get("peak_rss_mb") or []),  # type: ignore[call-overload]
        world_up_s=world_up,
        world_rss_mb=world_rss,
        world_pss_mb=world_pss,
        world_peak_rss_mb=world_peak,
    )
    out.unlink(missing_ok=True)
    print(
        f"  scan {size}: {run.domains} domains in {run.wall:.1f}s, exit {run.exit_code}, "
        f"RSS {run.peak_rss_mb:.0f} MB {result.process_rss_mb}, PSS {run.peak_pss_mb:.0f} MB, "
        f"CPU {run.cpu_us_per_domain:.0f} µs/domain; world up in {world_up:.0f}s, "
        f"its peak RSS {world_peak:.0f} MB",
        flush=True,
    )
    if trace:
        print_growth(folder / f"snaps-{size}", trace[0], trace[-1])
    return result


#: Our packages: an allocation is charged to the innermost frame inside them.
OURS = tuple(f"/{package}/" for package in ("engine", "probes", "mxscan", "report"))


def _site(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame of our code (and the allocating frame, when that is elsewhere)."""
    frames = list(traceback)  # oldest first
    innermost = frames[-1]
    for frame in reversed(frames):
        if any(part in frame.filename for part in OURS):
            where = f"{frame.filename.rsplit('/', 2)[-2]}/{Path(frame.filename).name}:{frame.lineno}"
            if frame is innermost:
                return where
            return f"{where} <- {Path(innermost.filename).name}:{innermost.lineno}"
    return f"(not ours) {Path(innermost.filename).name}:{innermost.lineno}"


def print_census(snaps: Path, first: int, last: int, top: int = 15) -> None:
    """Per traced process: objects of each type added between the marks (``tracemem.census``)."""
    for before_path in sorted(snaps.glob(f"*-{first}.census")):
        pid = before_path.name.split("-")[0]
        after_path = snaps / f"{pid}-{last}.census"
        if not after_path.exists():
            continue
        before, after = orjson.loads(before_path.read_bytes()), orjson.loads(after_path.read_bytes())
        grown = {
            k: (n - before.get(k, [0, 0])[0], size - before.get(k, [0, 0])[1])
            for k, (n, size) in after.items()
        }
        per = 1e5 / (last - first)
        print(f"\n  pid {pid}: objects added between {first} and {last} domains, per 100k (count, MB):")
        for kind, (n, size) in sorted(grown.items(), key=lambda kv: -kv[1][1])[:top]:
            print(f"    {n * per:+10.0f} {size / 2**20 * per:+8.2f}  {kind}")


def print_growth(snaps: Path, first: int, last: int, top: int = 20) -> None:
    """Per traced process: bytes allocated between the marks, by allocation site."""
    print_census(snaps, first, last)
    for before_path in sorted(snaps.glob(f"*-{first}.snap")):
        pid = before_path.name.split("-")[0]
        after_path = snaps / f"{pid}-{last}.snap"
        if not after_path.exists():
            print(f"  pid {pid}: no snapshot at {last}")
            continue
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        before = tracemalloc.Snapshot.load(str(before_path)).filter_traces(keep)
        after = tracemalloc.Snapshot.load(str(after_path)).filter_traces(keep)
        grown: Counter[str] = Counter()
        blocks: Counter[str] = Counter()
        for stat in after.compare_to(before, "traceback"):
            site = _site(stat.traceback)
            grown[site] += stat.size_diff
            blocks[site] += stat.count_diff
        total = sum(grown.values())
        per = 1e5 / (last - first)
        print(
            f"\n  pid {pid}: {total / 2**20:+.1f} MB traced between {first} and {last} domains "
            f"({total / 2**20 * per:+.1f} MB per 100k); largest sites, MB per 100k (blocks):"
        )
        for site, size in grown.most_common(top):
            print(f"    {size / 2**20 * per:+8.2f}  ({blocks[site] * per:+10.0f})  {site}")


def print_table(runs: list[MemoryRun], gz: bool) -> None:
    how = "scanned compressed" if gz else "plain scanned, compressed re-framed"
    print(f"\nmemory and output by list size ({how})\n")
    print(
        f"{'domains':>9} {'wall s':>7} {'RSS MB':>7} {'PSS MB':>7} {'slope MB/100k':>13} "
        f"{'CPU µs/dom':>10} {'vs first':>8} {'plain B/dom':>11} {'comp B/dom':>10} {'comp/plain':>10}"
    )
    first = runs[0] if runs else None
    previous: MemoryRun | None = None
    for r in runs:
        slope = ""
        if previous is not None and r.domains > previous.domains:
            slope = f"{(r.peak_rss_mb - previous.peak_rss_mb) / (r.domains - previous.domains) * 1e5:.1f}"
        ratio = r.cpu_us_per_domain / first.cpu_us_per_domain if first and first.cpu_us_per_domain else 0.0
        share = r.compressed_bytes / r.plain_bytes if r.plain_bytes else 0.0
        print(
            f"{r.domains:>9} {r.wall:>7.1f} {r.peak_rss_mb:>7.0f} {r.peak_pss_mb:>7.0f} {slope:>13} "
            f"{r.cpu_us_per_domain:>10.0f} {ratio:>8.2f} {r.plain_per_domain:>11.0f} "
            f"{r.compressed_per_domain:>10.0f} {share:>10.1%}"
        )
        previous = r
    print(
        f"\n{'domains':>9} {'scan RSS MB':>11} {'probe RSS MB':>12} {'world up s':>10} "
        f"{'world RSS MB':>12} {'world PSS MB':>12} {'world peak MB':>13}"
    )
    for r in runs:
        own = [*r.process_rss_mb, 0.0, 0.0][:2]
        print(
            f"{r.domains:>9} {own[0]:>11.0f} {own[1]:>12.0f} {r.world_up_s:>10.0f} "
            f"{r.world_rss_mb:>12.0f} {r.world_pss_mb:>12.0f} {r.world_peak_rss_mb:>13.0f}"
        )
    for r in runs:
        caches = r.summary.get("caches")
        if caches:
            print(f"  {r.domains}: caches {caches}")
        evicted = r.summary.get("evicted")
        if evicted:
            print(f"  {r.domains}: evicted {evicted}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--gz", action="store_true", help="scan with --out results.ndjson.gz")
    parser.add_argument("--trace", default="", help="domain counts to snapshot at, e.g. 50000,150000")
    parser.add_argument(
        "--census-only", action="store_true", help="with --trace: objects by type, no tracing"
    )
    parser.add_argument("--world-only", action="store_true", help="bring each world up and down, no scan")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.world_only:
        for size in sizes:
            world_only(size)
        return
    trace = [int(m) for m in args.trace.split(",") if m]
    if args.gz and trace:
        parser.error("--trace follows the plain results file: not with --gz")
    if trace and trace[-1] >= min(sizes):
        # The scan exits as its last lines are written: a watcher may never see the last one.
        parser.error("--trace marks must be below the smallest size")
    runs = []
    with tempfile.TemporaryDirectory(prefix="mxscan-memory-") as tmp:
        for size in sizes:
            began = time.perf_counter()
            runs.append(one_size(size, Path(tmp), args.gz, trace, args.census_only))
            print(f"  ({time.perf_counter() - began:.0f}s with the world)", flush=True)
    if not trace:
        print_table(runs, args.gz)
    sys.exit(0 if all(r.exit_code == 0 for r in runs) else 1)


if __name__ == "__main__":
    main()

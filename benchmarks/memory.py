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

Aims (issue #17): peak RSS at 1M <= 1 GB; slope < 50 MB per 100k beyond the first 100k; CPU per
domain flat within 20% from 100k to 1M; compressed results <= 25% of plain.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scan_full import isolated_scan, scan_args, world_scan

from testbed.control import WorldSpec

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


def one_size(size: int, folder: Path, gz: bool) -> MemoryRun:
    spec = WorldSpec("scale", domains=size, seed=1)
    out = folder / (f"out-{size}.ndjson.gz" if gz else f"out-{size}.ndjson")
    summary = folder / f"summary-{size}.json"
    with world_scan(spec, None) as world:
        run = isolated_scan(scan_args(world, []), out, summary)
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
    )
    out.unlink(missing_ok=True)
    print(
        f"  scan {size}: {run.domains} domains in {run.wall:.1f}s, exit {run.exit_code}, "
        f"RSS {run.peak_rss_mb:.0f} MB, PSS {run.peak_pss_mb:.0f} MB, "
        f"CPU {run.cpu_us_per_domain:.0f} µs/domain",
        flush=True,
    )
    return result


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
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="mxscan-memory-") as tmp:
        for size in sizes:
            began = time.perf_counter()
            runs.append(one_size(size, Path(tmp), args.gz))
            print(f"  ({time.perf_counter() - began:.0f}s with the world)", flush=True)
    print_table(runs, args.gz)
    sys.exit(0 if all(r.exit_code == 0 for r in runs) else 1)


if __name__ == "__main__":
    main()

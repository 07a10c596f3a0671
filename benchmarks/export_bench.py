"""Benchmark: ``mxscan export`` of 100,000 synthetic domains, CSV and Parquet, per level.

The results file is synthesised with the record classes (``report_bench.write_results``:
the study's provider mix, DNS-only lines, invalid input, crashes, timeouts, MTA-STS and
DANE adopters, each host line written once before its first use), not scanned.  Each
export runs in a fresh subprocess; wall time and peak RSS (``ru_maxrss`` of the child)
are printed, with CPU time (user + system: what the export costs, whatever else the
shared machine runs) and a baseline in the same run: streaming and parsing the file alone.

    .venv/bin/python benchmarks/export_bench.py [--domains 100000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report_bench import write_results  # noqa: E402

_CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from engine.checkpoint import read_records
from mxscan.cli import main
argv = {argv!r}
t0 = time.perf_counter()
if argv[0] == "parse-only":
    sum(1 for _ in read_records(argv[1]))
else:
    assert main(argv) == 0
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


def run_child(argv: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MB) of one command in a fresh interpreter."""
    code = _CHILD.format(root=str(ROOT), argv=argv)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    wall, cpu, rss_kib = out.split()[-3:]
    return float(wall), float(cpu), int(rss_kib) / 1024


#: The goal from issue #16: a 100k results file exports in under 10 s and 500 MB.
GOAL_SECONDS, GOAL_MB = 10.0, 500.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.ndjson"
        t0 = time.perf_counter()
        write_results(results, args.domains)
        print(
            f"generated {args.domains:,} records ({results.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        runs = [("baseline: read_records only", ["parse-only", str(results)], None)]
        for fmt in ("csv", "parquet"):
            for level in ("domain", "host", "address"):
                out = Path(tmp) / f"{level}.{fmt}"
                argv = ["export", str(results), "--format", fmt, "--level", level, "--out", str(out)]
                runs.append((f"export --format {fmt} --level {level}", argv, out))
        print(f"{'command':44} {'wall s':>7} {'CPU s':>7} {'x base':>7} {'peak RSS':>10} {'output':>10}")
        worst = (0.0, 0.0, 0.0)
        baseline = 0.0
        for label, argv, out in runs:
            wall, cpu, rss = run_child(argv)
            baseline = baseline or cpu  # the first run: parsing alone, same machine, same load
            size = f"{out.stat().st_size / 1e6:.1f} MB" if out is not None else ""
            print(f"{label:44} {wall:7.2f} {cpu:7.2f} {cpu / baseline:7.1f} {rss:7.0f} MB {size:>10}")
            if out is not None:
                worst = (max(worst[0], wall), max(worst[1], cpu), max(worst[2], rss))
        met = worst[0] < GOAL_SECONDS and worst[2] < GOAL_MB
        print(
            f"slowest export {worst[0]:.2f} s wall, {worst[1]:.2f} s CPU, peak RSS {worst[2]:.0f} MB: "
            f"goal (< {GOAL_SECONDS:.0f} s, < {GOAL_MB:.0f} MB) {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()

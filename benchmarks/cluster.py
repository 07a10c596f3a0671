"""How many records a second the cluster driver writes (issue #14: it must not be the
bottleneck below ~20k domains/s).

The real driver (``scaleout.cluster.driver.run_cluster``) on a local Ray cluster of
``--workers`` CPUs, with fake scan workers that measure nothing: each returns, for every
domain of its batch, a record line of ``--line-bytes`` bytes (a scenario-world record is
~1-3 KB; host lines are written once per host and are not counted).  The driver does all it
does in a real scan: reads the list, batches it, receives the lines through Ray, checks each
domain against the file's key set and appends through the results store.

Ray's start-up is taken out by difference: two runs, N and 2N domains, and the rate is
N / (wall(2N) - wall(N)).  Ray binds to the machine's interface address, so run this only
inside a private network namespace:

    unshare -n -- .venv/bin/python tests/cluster/netns.py .venv/bin/python benchmarks/cluster.py
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.inputs import DomainReader, InputItem
from mxscan.config import ScanConfig
from scaleout.cluster.actors import Line, WorkerStatus
from scaleout.cluster.driver import run_cluster


class FakeWorker:
    """``ScanWorker``'s methods, without a pipeline: a record line per domain at once."""

    def __init__(self, _cfg: ScanConfig, _probe_actors: object) -> None:
        self.pad = "x" * max(0, int(os.environ.get("MXSCAN_BENCH_LINE_BYTES", "1500")) - 80)

    async def setup(self) -> str | None:
        return None

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=100_000, help="N (the second run has 2N)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--line-bytes", type=int, default=1500)
    args = parser.parse_args()
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

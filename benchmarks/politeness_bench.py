"""Politeness benchmark (issue 6): the scale world scanned with the built-in
per-provider limits and with every limit lifted, in one run.

    python benchmarks/politeness_bench.py [--size 100000] [--runs 1]

Each scan gets a fresh world (so the world's counters start at zero).  Prints
wall time, domains/s, the time until 99% of domains were written, the ratio
limited/unlimited (aim: >= 80%), and the peak number of SMTP connections open
at once per provider *as the world saw them*, next to the configured limit.

How the world's counts are read: the mail processes count peak concurrent
connections per provider in ``SmtpFleet.stats`` (``FleetStats``) but do not
publish them.  This script therefore starts the world through ``control.up``
with ``control.mail_argv`` wrapped: each mail process runs through this file's
``--mail-child`` mode, which is ``python -m testbed serve-mail`` unchanged
except that its ``SmtpFleet`` writes its stats to ``<ready-file>.stats.json``
when it stops.  A provider whose hosts span several mail processes (shards)
is reported as the sum of the shards' peaks: an upper bound of the true peak.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import median
from scan_full import FullRun, analyse, isolated_scan, lifted_limits_args, pct, scan_args

from engine.limits import Limit
from engine.limitspec import BIG_PROVIDER_LIMIT, DEFAULT_PROVIDER_LIMIT
from probes.providers import STUDY_TOP_PROVIDERS
from testbed import control
from testbed.control import WorldSpec
from testbed.harness import running_world
from testbed.scale import PROVIDERS

__all__ = ["fleet_peaks"]

_ORIGINAL_MAIL_ARGV = control.mail_argv
#: World provider key -> the provider name mxscan attributes its hosts to.
REAL_NAME = {p.key: p.stands_for for p in PROVIDERS}


def _wrapped_mail_argv(*args: Any, **kwargs: Any) -> list[str]:
    argv = _ORIGINAL_MAIL_ARGV(*args, **kwargs)  # [python, -m, testbed, serve-mail, ...]
    return [sys.executable, str(Path(__file__).resolve()), "--mail-child", *argv[3:]]


def _mail_child(argv: list[str]) -> int:
    """``python -m testbed serve-mail ...`` with an SmtpFleet that saves its stats on stop."""
    import dataclasses

    from testbed import cli, serve_mail, smtpfleet

    ready = Path(argv[argv.index("--ready-file") + 1])

    class StatsFleet(smtpfleet.SmtpFleet):
        async def stop(self) -> None:
            await super().stop()
            stats = {name: dict(value) for name, value in dataclasses.asdict(self.stats).items()}
            ready.with_suffix(".stats.json").write_text(json.dumps(stats))

    setattr(serve_mail, "SmtpFleet", StatsFleet)  # noqa: B010  (the one seam: module global)
    return cli.main(argv)


def fleet_peaks(state_dir: Path) -> tuple[Counter[str], Counter[str]]:
    """(peak open connections, 421 refusals) per world provider key (a tail host: its own
    name), summed over the mail processes' stats files (written as ``control.down`` stops them)."""
    peaks: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for path in sorted(state_dir.glob("mail-*.stats.json")):
        stats = json.loads(path.read_text())
        peaks.update(stats["peak_per_provider"])
        refused.update(stats["refused_421"])
    return peaks, refused


def scan_and_count(spec: WorldSpec, folder: Path, extra: list[str], tag: str) -> tuple[FullRun, Counter[str]]:
    """One scan against a fresh world kept in ``folder/world-<tag>`` (so its stats survive ``down``)."""
    out, summary = folder / f"out-{tag}.ndjson", folder / f"summary-{tag}.json"
    state = folder / f"world-{tag}"
    began = time.perf_counter()
    with running_world(spec, state_dir=state) as world:
        print(f"  world up in {time.perf_counter() - began:.1f}s", flush=True)
        run = isolated_scan(scan_args(world, extra), out, summary)
    peaks, refused = fleet_peaks(state)
    full = analyse(run, out)
    out.unlink(missing_ok=True)
    shutil.rmtree(state / "pki", ignore_errors=True)
    print(
        f"  {tag}: {run.wall:.1f}s, {run.rate:.0f} dom/s, 99% at {full.done99:.1f}s, exit {run.exit_code}, "
        f"421s seen by the world: {sum(refused.values())}",
        flush=True,
    )
    return full, peaks


def _spec(limit: Limit) -> str:
    """A limit as the --provider-limit text: concurrency/window."""
    return f"{limit.concurrency}/{limit.concurrency / (limit.rate or 1):g}s"


def report(size: int, results: dict[str, list[tuple[FullRun, Counter[str]]]]) -> None:
    print(f"\nPoliteness: scale world of {size:,} domains (seed 1), built-in limits vs lifted\n")
    print(
        f"{'limits':>10} {'runs':>4} {'wall s':>7} {'dom/s':>6} {'99% done s':>10} {'dom/s@99%':>9} "
        f"{'hs/s':>6} {'CPU µs/dom':>10} {'RSS MB':>6} {'smtp p50/p99 ms':>16}"
    )
    rates: dict[str, tuple[float, float]] = {}
    for mode, runs in results.items():
        fulls = [f for f, _ in runs]
        r = sorted(fulls, key=lambda f: f.scan.rate)[len(fulls) // 2]
        wall, done99 = median([f.scan.wall for f in fulls]), median([f.done99 for f in fulls])
        rates[mode] = (size / wall, 0.99 * size / done99 if done99 else 0.0)
        print(
            f"{mode:>10} {len(runs):>4} {wall:>7.1f} {rates[mode][0]:>6.0f} {done99:>10.1f} "
            f"{rates[mode][1]:>9.0f} {r.handshake_rate:>6.0f} {r.scan.cpu_us_per_domain:>10.0f} "
            f"{r.scan.peak_rss_mb:>6.0f} {pct(r.smtp_ms, 50):>8.0f}/{pct(r.smtp_ms, 99):<7.0f}"
        )
    limited, free = rates["limited"], rates["unlimited"]
    print(
        f"\nthroughput limited/unlimited: {limited[0] / free[0]:.1%} by wall time, "
        f"{limited[1] / free[1] if free[1] else 0:.1%} by time to 99% (aim >= 80%)"
    )
    print("\nPeak SMTP connections open at once per provider, as counted by the world's mail servers")
    print("(max over runs; a provider spanning several mail processes: sum of their peaks)\n")
    print(f"{'provider':>24} {'limit (built-in)':>16} {'peak limited':>12} {'peak unlimited':>14}")
    peak = {mode: Counter[str]() for mode in results}
    for mode, runs in results.items():
        for _, counts in runs:
            for key, value in counts.items():
                peak[mode][key] = max(peak[mode][key], value)
    big = _spec(BIG_PROVIDER_LIMIT)
    for provider in PROVIDERS:
        name = REAL_NAME[provider.key]
        assert name in STUDY_TOP_PROVIDERS
        print(
            f"{name:>24} {big:>16} {peak['limited'][provider.key]:>12} {peak['unlimited'][provider.key]:>14}"
        )
    tail = {mode: max((v for k, v in peak[mode].items() if k not in REAL_NAME), default=0) for mode in peak}
    default = _spec(DEFAULT_PROVIDER_LIMIT)
    print(f"{'any other (max of one)':>24} {default:>16} {tail['limited']:>12} {tail['unlimited']:>14}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--mail-child":
        sys.exit(_mail_child(sys.argv[2:]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--smtp-timeout", default="5")
    parser.add_argument("--smtp-retry-delay", default="1")
    parser.add_argument("--dns-timeout", default="1")
    args = parser.parse_args()
    control.mail_argv = _wrapped_mail_argv
    spec = WorldSpec("scale", domains=args.size, seed=1)
    results: dict[str, list[tuple[FullRun, Counter[str]]]] = {"unlimited": [], "limited": []}
    with tempfile.TemporaryDirectory(prefix="mxscan-bench-polite-") as tmp:
        folder = Path(tmp)
        base = ["--smtp-timeout", args.smtp_timeout, "--smtp-retry-delay", args.smtp_retry_delay]
        base += ["--dns-timeout", args.dns_timeout]
        for i in range(args.runs):
            for mode in ("unlimited", "limited"):
                extra = base + (lifted_limits_args(folder) if mode == "unlimited" else [])
                results[mode].append(scan_and_count(spec, folder, extra, f"{mode}-{i}"))
    report(args.size, results)


if __name__ == "__main__":
    main()

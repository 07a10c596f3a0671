"""One mail process: the SMTP hosts and MTA-STS policy sites of one shard of a world.

    python -m testbed serve-mail --scenarios --shard 0 --shards 1 --pki-dir run/testbed/pki \\
        --smtp-port 10025 --https-port 10443 --ready-file run/testbed/mail-0.ready

The process serves one shard of the world (``services``): the one ``up`` wrote
for it (``--shard-file``: only that shard's hosts and sites are loaded), else
its shard of the world rebuilt from the spec.  It loads the PKI ``up`` wrote,
starts every listener, and then writes the SMTP port to the ready file: ``up``
waits for that file, so "ready" means every socket of the shard is bound.
SIGTERM/SIGINT stop the fleets and end the process.

Statistics (``--stats-file``): the SMTP fleet's connection counts
(``smtpfleet.FleetStats``: per host, per provider, peak open at once per
provider, 421 refusals) are written there as JSON on SIGUSR1, on SIGUSR2
(which then starts a new measurement: counts cleared, peaks down to what is
open now) and on exit.  Writes are atomic (temp file, rename), so a reader
that removed the file, sent the signal and waits for the file to reappear
reads one complete snapshot taken after the signal (``control.mail_stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
from pathlib import Path

from testbed import services
from testbed.heap import settle_heap
from testbed.httpsserver import PolicyServerFleet
from testbed.ports import PORT_BUSY_EXIT, PortBusy, binding, report_busy
from testbed.smtpfleet import FleetStats, SmtpFleet
from testbed.world import Conditions
from testbed.worldpki import ContextCache, WorldPki

__all__ = ["serve_mail", "write_stats"]


def _raise_open_files_limit() -> None:
    # Up to the hard limit (20,000 here): one socket per listener plus the open connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def write_stats(path: Path, stats: FleetStats, shard: int, seq: int, reason: str) -> None:
    """One snapshot of ``stats`` as JSON at ``path``, atomically."""
    data = {"pid": os.getpid(), "shard": shard, "seq": seq, "reason": reason, **stats.as_dict()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n")
    tmp.replace(path)


async def _serve(
    part: services.Shard,
    net: Conditions,
    index: int,
    count: int,
    pki_dir: Path,
    smtp_port: int,
    https_port: int,
    ready_file: Path | None,
    stats_file: Path | None,
) -> None:
    contexts = ContextCache(WorldPki.load(pki_dir))
    specs = [spec for host in part.smtp for spec in services.host_spec(host, contexts)]
    # A host's other addresses may be bound by other shards: each address by exactly one.
    specs = [spec for spec in specs if spec.address in part.addresses]
    sites = [services.policy_site(domain, host, contexts) for domain, host in part.policy]
    prebuilt = contexts.prebuild(services.cert_specs(part), count)
    # Latency from the world's conditions (testbed/internet.py); a seed per shard keeps jitter repeatable.
    smtp = SmtpFleet(specs, smtp_port, latency=net.smtp, seed=index)
    https = PolicyServerFleet(sites, https_port, latency=net.https, seed=index)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    seq = 0

    def dump(reset: bool) -> None:
        nonlocal seq
        seq += 1
        if stats_file is not None:
            with contextlib.suppress(OSError):  # a full disk must not stop the mail service
                write_stats(stats_file, smtp.stats, index, seq, "reset" if reset else "request")
        if reset:
            smtp.stats.reset()

    loop.add_signal_handler(signal.SIGUSR1, dump, False)
    loop.add_signal_handler(signal.SIGUSR2, dump, True)
    try:
        # A taken port ends the process with PORT_BUSY_EXIT (serve_mail): up moves that kind.
        async with binding(smtp, "smtp", smtp_port), binding(https, "https", https_port):
            print(
                f"mail shard {index}/{count}: {len(smtp.specs)} SMTP hosts on port {smtp_port}, "
                f"{len(sites)} policy sites on port {https_port}, {prebuilt} TLS contexts built before ready",
                flush=True,
            )
            if ready_file is not None:
                tmp = ready_file.with_suffix(".tmp")
                tmp.write_text(f"{smtp_port}\n")
                tmp.replace(ready_file)
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        print(f"mail shard {index} stopping: {sum(smtp.stats.connections.values())} SMTP connections, "
              f"{contexts.built} TLS contexts built", flush=True)  # fmt: skip
    finally:
        if stats_file is not None:
            with contextlib.suppress(OSError):
                write_stats(stats_file, smtp.stats, index, seq + 1, "exit")
        contexts.close()


def serve_mail(
    part: services.Shard,
    conditions: Conditions,
    index: int,
    count: int,
    pki_dir: Path,
    smtp_port: int,
    https_port: int,
    ready_file: Path | None = None,
    stats_file: Path | None = None,
) -> int:
    """Serve ``part``, shard ``index`` of ``count``, until SIGTERM; the process exit code."""
    _raise_open_files_limit()
    settle_heap()
    run = _serve(part, conditions, index, count, pki_dir, smtp_port, https_port, ready_file, stats_file)
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(run)
        else:
            uvloop.run(run)
    except PortBusy as busy:
        print(busy, file=sys.stderr, flush=True)
        if ready_file is not None:
            report_busy(ready_file, busy)
        return PORT_BUSY_EXIT
    return 0

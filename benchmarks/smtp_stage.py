"""The SMTP STARTTLS probe engine alone against the bare TLS pair (issue 4's aim).

    python benchmarks/smtp_stage.py [--probes 3000] [--concurrency 64] [--rounds 5] [--batches 0,64]
                                    [--aiosmtplib]

A full scan makes only ~0.27 STARTTLS handshakes per domain, so handshakes per
second over a whole scan measure the scan, not the probe.  Here the prober
(banner, EHLO, STARTTLS, TLS with the chain captured, EHLO, QUIT, then
certificate facts and PKIX verification) runs back to back over ``--probes``
distinct ordinary MX hosts of the scale world, each probed once as in a scan,
at the same concurrency as the bare pair measured in the same run: a uvloop
client and server doing only TLS handshakes.

Warm-up: every host is probed once first so the world's lazily built server
contexts exist (a real server has its certificate loaded); then the scanner's
own caches (certificate facts, verified paths) are emptied, so what they save
in the measured pass is only what the world's certificate sharing gives a real
scan (providers present one certificate on many hosts).

``--aiosmtplib`` (needs the ``bench`` extra: ``pip install -e '.[bench]'``) adds two passes
per round without certificate work: the same exchange (banner, EHLO, STARTTLS, TLS with
the chain read, EHLO, QUIT) by the prober's own client (``SmtpProber.exchange``) and by
aiosmtplib, the library the README says the probe does not go through, and why.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from common import ROOT  # noqa: F401  (puts the repository on sys.path)
from tls_pair import measure_pair

from engine.heap import settle_heap
from probes.smtp.probe import ANALYSIS_BATCH, SmtpProber, SmtpSettings
from probes.smtp.session import SmtpTimeouts, client_tls_context
from probes.tls.capture import presented_chain
from probes.tls.certs import cert_facts, load_der
from probes.tls.truststore import load_trust_store
from probes.tls.verify import Verifier
from testbed.control import WorldSpec
from testbed.harness import running_world
from testbed.world import CertKind, HostRole, SmtpBehaviour


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Session = Callable[[str, str], Awaitable[bool]]


async def _each(targets: list[tuple[str, str]], concurrency: int, session: Session) -> int:
    """``session`` for every (host, address), ``concurrency`` at once: how many reached TLS."""
    gate = asyncio.Semaphore(concurrency)
    sessions = 0

    async def one(host: str, address: str) -> None:
        nonlocal sessions
        async with gate:
            reached = await session(host, address)
        sessions += reached  # not "+= await": that reads the count before the await

    async with asyncio.TaskGroup() as group:
        for host, address in targets:
            group.create_task(one(host, address))
    return sessions


async def _probe_all(prober: SmtpProber, targets: list[tuple[str, str]], concurrency: int) -> int:
    async def probe(host: str, address: str) -> bool:
        return (await prober.probe(host, address)).result.tls is not None

    return await _each(targets, concurrency, probe)


async def _exchange_all(prober: SmtpProber, targets: list[tuple[str, str]], concurrency: int) -> int:
    """The prober's own client alone: every byte exchanged, no certificate work."""

    async def exchange(host: str, address: str) -> bool:
        return bool((await prober.exchange(host, address)).obs.chain)

    return await _each(targets, concurrency, exchange)


async def _aiosmtplib_all(settings: SmtpSettings, targets: list[tuple[str, str]], concurrency: int) -> int:
    """The same exchange through aiosmtplib: the chain read from its TLS transport."""
    import aiosmtplib  # the bench extra; a plain install does not have it

    ctx = client_tls_context()

    async def exchange(host: str, address: str) -> bool:
        smtp = aiosmtplib.SMTP(
            hostname=address,
            port=settings.port,
            local_hostname=settings.ehlo_name,  # else it asks the system resolver (getfqdn)
            timeout=settings.timeouts.command,
            start_tls=False,
        )
        await smtp.connect()
        await smtp.ehlo()
        await smtp.starttls(server_hostname=host, validate_certs=False, tls_context=ctx)
        assert smtp.transport is not None
        chain = presented_chain(smtp.transport.get_extra_info("ssl_object"))
        await smtp.ehlo()
        await smtp.quit()
        return bool(chain)

    return await _each(targets, concurrency, exchange)


def _timed(run: Callable[[], Coroutine[Any, Any, int]]) -> tuple[float, float]:
    """(sessions/s, client CPU ms per session) of one pass."""
    cpu0, t0 = _cpu(), time.perf_counter()
    sessions = uvloop.run(run())
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return sessions / seconds, cpu / max(sessions, 1) * 1000


def _measured_pass(
    prober: SmtpProber, targets: list[tuple[str, str]], concurrency: int
) -> tuple[float, float]:
    """(sessions/s, client CPU ms per session) of one pass with the scanner's caches emptied:
    a new verifier (nothing verified yet), no certificate parsed."""
    prober.settings = replace(prober.settings, verifier=Verifier(prober.settings.verifier.store))
    load_der.cache_clear()
    cert_facts.cache_clear()
    return _timed(partial(_probe_all, prober, targets, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", type=int, default=30000, help="scale world size (hosts come from it)")
    parser.add_argument("--probes", type=int, default=3000, help="distinct hosts, each probed once")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="alternating prober / pair rounds (medians)")
    parser.add_argument(
        "--batches",
        default=f"0,{ANALYSIS_BATCH}",
        help="certificate-work batch sizes to compare, each in every round (0: no batching)",
    )
    parser.add_argument(
        "--aiosmtplib",
        action="store_true",
        help="also the exchange alone, by the prober's client and by aiosmtplib (the bench extra)",
    )
    args = parser.parse_args()
    sizes = [int(b) for b in args.batches.split(",") if b]
    spec = WorldSpec("scale", domains=args.domains, seed=1)
    world = spec.build()
    hosts = [
        (h.name, h.ipv4)
        for h in world.hosts
        if h.role is HostRole.MX and h.smtp is SmtpBehaviour.GOOD and h.cert is CertKind.VALID and h.ipv4
    ][: args.probes]
    probed: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    pairs: list[tuple[float, float]] = []
    clients: dict[str, list[tuple[float, float]]] = {}
    with running_world(spec) as running:
        ep = running.endpoints
        pki = Path(ep["ca_file"]).parent
        trust = load_trust_store("none", [ep["ca_file"]])
        settings = SmtpSettings(
            ehlo_name="scanner.mxscan.test",
            verifier=Verifier(trust),
            port=int(ep["smtp_port"]),
            timeouts=SmtpTimeouts(connect=5, banner=5, command=5, handshake=5, quit=1),
        )
        probers = {size: SmtpProber(settings, batch=size) for size in sizes}
        settle_heap()  # as mxscan scan does before probing
        uvloop.run(_probe_all(probers[sizes[0]], hosts, args.concurrency))  # warm the world's contexts
        for round_ in range(args.rounds):
            for size in sizes:
                probed[size].append(_measured_pass(probers[size], hosts, args.concurrency))
            if args.aiosmtplib:
                exchanger = probers[sizes[0]]
                ours = _timed(partial(_exchange_all, exchanger, hosts, args.concurrency))
                theirs = _timed(partial(_aiosmtplib_all, settings, hosts, args.concurrency))
                clients.setdefault("mxscan SmtpProber.exchange", []).append(ours)
                clients.setdefault("aiosmtplib 5 (same exchange)", []).append(theirs)
            pair = measure_pair(pki, hosts[0][0], handshakes=args.probes, concurrency=args.concurrency)
            pairs.append((pair.rate, pair.client_cpu_ms))
            mine = ", ".join(f"batch {size}: {probed[size][-1][0]:.0f}/s" for size in sizes)
            print(f"round {round_ + 1}: {mine}; pair {pair.rate:.0f}/s")
            sys.stdout.flush()
    pair_rate, pair_cpu_ms = (statistics.median(v) for v in zip(*pairs, strict=True))
    last = probers[sizes[-1]].settings.verifier  # the last pass's
    paths, issuers = last.paths, last.issuers
    print(f"\nSMTP STARTTLS probes: {len(hosts)} distinct hosts once each, concurrency {args.concurrency}")
    print(f"per pass: verified-path cache {paths.hits} hits / {paths.misses} misses,", end=" ")
    print(f"verified-issuer cache {issuers.hits} hits / {issuers.misses} misses")
    print(f"medians of {args.rounds} alternating rounds\n")
    print(f"{'':34} {'sessions/s':>10} {'client CPU ms':>14} {'of pair':>8} {'per round':>22}")
    for size in sizes:
        rate, cpu_ms = (statistics.median(v) for v in zip(*probed[size], strict=True))
        rounds = sorted(mine[0] / pair[0] for mine, pair in zip(probed[size], pairs, strict=True))
        batches = probers[size].analysis
        label = f"mxscan SmtpProber, batch {size}" if size else "mxscan SmtpProber, no batching"
        per_round = " ".join(f"{r:.0%}" for r in rounds)
        print(f"{label:34} {rate:>10.0f} {cpu_ms:>14.2f} {rate / pair_rate:>8.0%} {per_round:>22}")
        if batches is not None:
            print(f"{'':36}({batches.items / max(batches.batches, 1):.1f} probes per batch)")
    print(f"{'bare TLS pair (uvloop)':34} {pair_rate:>10.0f} {pair_cpu_ms:>14.2f}")
    if clients:
        print("\nthe exchange alone (no certificate facts, no PKIX), same hosts and concurrency")
        for label, runs in clients.items():
            rate, cpu_ms = (statistics.median(v) for v in zip(*runs, strict=True))
            print(f"{label:34} {rate:>10.0f} {cpu_ms:>14.2f} {rate / pair_rate:>8.0%}")
    print(f"\naim: the prober (default batch {ANALYSIS_BATCH}) at least 70% of the bare pair")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

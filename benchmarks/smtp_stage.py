"""The SMTP STARTTLS probe engine alone against the bare TLS pair (issue 4's aim).

    python benchmarks/smtp_stage.py [--probes 3000] [--concurrency 64]

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
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

import uvloop
from common import ROOT  # noqa: F401  (puts the repository on sys.path)
from tls_pair import measure_pair

from engine.heap import settle_heap
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.session import SmtpTimeouts
from probes.tls.certs import cert_facts, load_der
from probes.tls.truststore import load_trust_store
from probes.tls.verify import VERIFIED_ISSUERS, VERIFIED_PATHS, IntermediatePool
from testbed.control import WorldSpec
from testbed.harness import running_world
from testbed.world import CertKind, HostRole, SmtpBehaviour


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _probe_all(prober: SmtpProber, targets: list[tuple[str, str]], concurrency: int) -> int:
    gate = asyncio.Semaphore(concurrency)
    sessions = 0

    async def one(host: str, address: str) -> None:
        nonlocal sessions
        async with gate:
            result = (await prober.probe(host, address)).result
        sessions += result.tls is not None

    async with asyncio.TaskGroup() as group:
        for host, address in targets:
            group.create_task(one(host, address))
    return sessions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", type=int, default=30000, help="scale world size (hosts come from it)")
    parser.add_argument("--probes", type=int, default=3000, help="distinct hosts, each probed once")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    spec = WorldSpec("scale", domains=args.domains, seed=1)
    world = spec.build()
    hosts = [
        (h.name, h.ipv4)
        for h in world.hosts
        if h.role is HostRole.MX and h.smtp is SmtpBehaviour.GOOD and h.cert is CertKind.VALID and h.ipv4
    ][: args.probes]
    targets = hosts
    with running_world(spec) as running:
        ep = running.endpoints
        pki = Path(ep["ca_file"]).parent
        trust = load_trust_store("none", [ep["ca_file"]])
        settings = SmtpSettings(
            ehlo_name="scanner.mxscan.test",
            trust_store=trust,
            port=int(ep["smtp_port"]),
            timeouts=SmtpTimeouts(connect=5, banner=5, command=5, handshake=5, quit=1),
            retries=0,
            intermediates=IntermediatePool.from_der([]),
        )
        prober = SmtpProber(settings)
        settle_heap()  # as mxscan scan does before probing
        uvloop.run(_probe_all(prober, targets, args.concurrency))  # warm the world's contexts
        VERIFIED_PATHS.clear()
        VERIFIED_ISSUERS.clear()
        load_der.cache_clear()
        cert_facts.cache_clear()
        cpu0, t0 = _cpu(), time.perf_counter()
        sessions = uvloop.run(_probe_all(prober, targets, args.concurrency))
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        pair = measure_pair(pki, hosts[0][0], handshakes=args.probes, concurrency=args.concurrency)
    rate = sessions / seconds
    print(f"\nSMTP STARTTLS probes: {len(hosts)} distinct hosts once each, concurrency {args.concurrency}")
    print(f"verified-path cache: {VERIFIED_PATHS.hits} hits, {VERIFIED_PATHS.misses} misses")
    print(f"verified-issuer cache: {VERIFIED_ISSUERS.hits} hits, {VERIFIED_ISSUERS.misses} misses\n")
    print(f"{'':28} {'sessions/s':>10} {'client CPU ms':>14}")
    print(f"{'mxscan SmtpProber':28} {rate:>10.0f} {cpu / max(sessions, 1) * 1000:>14.2f}")
    print(f"{'bare TLS pair (uvloop)':28} {pair.rate:>10.0f} {pair.client_cpu_ms:>14.2f}")
    print(f"\nprober / bare pair: {rate / pair.rate:.0%} (aim: at least 70%)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

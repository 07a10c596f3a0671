"""The asynchronous part of one scan, in the steps it takes.

``ScanRun.run``: the resolver pre-flight (does it answer, does it validate), the egress
pre-flight (can we reach port 25; the vantage), the probe services (a probe process or
this event loop), the per-domain plan, the domains driven through the scheduler
(``probes.writer`` writes their lines), the probe process's last figures, then the end of
the file and the totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import signal
import time
from collections.abc import Iterator
from typing import TextIO

import orjson

from engine.checkpoint import KeySet, ResultStore
from engine.inputs import InputItem
from engine.offload import Offload, OffloadError
from engine.peertext import exception_text
from engine.progress import Progress, Tail
from engine.scheduler import RunStats, run_targets
from engine.singleflight import SingleFlight
from engine.status import Status
from mxscan import __version__, defaults
from mxscan.config import ScanConfig
from mxscan.probeservice import InlineServices
from probes.dns.client import ClientStatistics, DnsClient
from probes.dns.preflight import PREFLIGHT_TIMEOUT, PreflightResult, preflight, verdict_text
from probes.dns.records import Answer
from probes.dns.resolver import StubResolver
from probes.dns.reverse import PTR_CACHE_ENTRIES, PtrResult, lookup_ptr
from probes.domain import DomainRecord, ScanMeta
from probes.egress import EgressCheck
from probes.hostcache import SMTP_CACHE_ENTRIES, HostLines, needs_chain
from probes.plan import Pipeline, PipelineOptions
from probes.providers import ProviderMap
from probes.services import ProbeServices, RemoteServices, keep_politeness_current
from probes.smtp.politeness import Politeness
from probes.smtp.probe import SmtpProbe, SmtpProber
from probes.summary import run_summary
from probes.vantage import Vantage, egress_preflight
from probes.writer import ResultWriter, now
from report.openmetrics import LiveMetrics
from scaleout.shard import Sharding, shard_text

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "ScanRun"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: A finished domain: its record and the SMTP results it references (per MX host).
Finished = tuple[DomainRecord, tuple[tuple[SmtpProbe, ...], ...]]


class ScanRun:
    """One scan from the resolver pre-flight to the totals; each step a method, in order."""

    def __init__(
        self,
        cfg: ScanConfig,
        stderr: TextIO,
        store: ResultStore,
        done: KeySet,
        providers: ProviderMap,
        probes: SmtpProber | Offload | None,
        metrics: LiveMetrics | None,
    ) -> None:
        self.cfg, self.stderr, self.store, self.done = cfg, stderr, store, done
        self.providers = providers
        #: The SMTP prober for inline probes, the probe process, or None (--dns-only).
        self.probes = probes
        self.metrics = metrics
        self.resolver_text = f"{cfg.resolver[0]}:{cfg.resolver[1]}"
        self.began = time.monotonic()
        self.dns_cache: SingleFlight[tuple[str, str], Answer] = SingleFlight(defaults.SHARED_CACHE_ENTRIES)
        self.smtp_cache: SingleFlight[tuple[str, str], SmtpProbe] = SingleFlight(SMTP_CACHE_ENTRIES)
        self.ptr_cache: SingleFlight[str, PtrResult] = SingleFlight(PTR_CACHE_ENTRIES)
        self.services: ProbeServices | None = None
        self.progress: Progress | None = None
        self.live: RunStats[InputItem] = RunStats()
        self.tail = Tail()
        #: The loss of the probe process has been reported.
        self.warned_lost = False
        #: --shard K/N: the list's entries this scan measures (the others pass by, digested).
        self.sharding = Sharding.of(cfg)

    async def run(self, items: Iterator[InputItem], total: int | None) -> int:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                DnsClient(
                    self.cfg.resolver,
                    timeout=self.cfg.dns_timeout,
                    attempts=self.cfg.dns_attempts,
                    max_in_flight=self.cfg.dns_in_flight,
                )
            )
            check = await self.check_resolver(client)
            if check is None:
                return EXIT_USAGE
            self.resolver = StubResolver(client, validating=check.reads_ad)
            egress = await self.check_egress()
            if egress is None:
                return EXIT_USAGE
            self.lines = self.open_lines(check, *egress)
            if not await self.start_services(stack):
                return EXIT_USAGE
            self.pipeline = self.plan(check.reads_ad)
            self.progress = self.lines.progress = self.make_progress(total)
            self.client = client
            stats = await self.drive(items)
            await self.settle()
            dns_stats = client.statistics()
        return self.finish(stats, dns_stats)

    async def check_resolver(self, client: DnsClient) -> PreflightResult | None:
        """The resolver pre-flight, said loudly; None when the scan must not start."""
        cfg = self.cfg
        check = await preflight(
            client,
            signed_name=cfg.preflight_signed,
            bogus_name=cfg.preflight_bogus,
            timeout=PREFLIGHT_TIMEOUT,
        )
        proceed, messages = verdict_text(check, self.resolver_text, require_validation=cfg.require_validation)
        for message in messages:
            self.say(message)
        return check if proceed else None

    async def check_egress(self) -> tuple[EgressCheck | None, Vantage | None] | None:
        """The egress pre-flight and the vantage (both None with --dns-only); None when the
        scan must stop. Without working IPv6 egress the scan probes IPv4 only."""
        cfg = self.cfg
        if cfg.dns_only:
            return None, None
        found = await egress_preflight(
            cfg.egress_check,
            self.resolver.lookup,
            port=cfg.smtp_port,
            ipv6=cfg.ipv6,
            ehlo_name=cfg.ehlo_name or "",
            skip=cfg.skip_egress_check,
        )
        for message in found.messages:
            self.say(message)
        if found.vantage is None:
            return None
        self.cfg = dataclasses.replace(cfg, ipv6=found.decision.ipv6)
        return found.check, found.vantage

    def open_lines(
        self, check: PreflightResult, egress: EgressCheck | None, vantage: Vantage | None
    ) -> ResultWriter:
        meta = ScanMeta(
            tool="mxscan",
            version=__version__,
            started=now(),
            resolver=self.resolver_text,
            dnssec_validating=check.reads_ad,
            ehlo_name="" if self.cfg.dns_only else self.cfg.ehlo_name or "",
            contact=self.cfg.contact,
            dnssec_check=check.check,
            egress=egress.verdict() if egress is not None else None,
            vantage=vantage,
            shard=shard_text(self.cfg.shard),
        )
        lines = ResultWriter(self.store, self.done, meta, HostLines(self.smtp_cache))
        lines.metrics, lines.egress = self.metrics, egress
        return lines

    async def start_services(self, stack: contextlib.AsyncExitStack) -> bool:
        """The SMTP and policy probes: the probe process started, or in this loop; False when
        the probe process failed to start."""
        if isinstance(self.probes, Offload):
            try:
                await self.probes.start()
                remote = RemoteServices(self.probes)
                await remote.refresh()
            except OffloadError as exc:
                self.say(f"the probe process failed to start ({exc}); try --inline-probes")
                return False
            self.services = remote
        elif self.probes is not None:
            self.services = await InlineServices.start(self.cfg, self.probes, self.providers, stack)
        return True

    def plan(self, validating: bool) -> Pipeline:
        services, cfg = self.services, self.cfg
        return Pipeline(
            lookup_own=self.lookup_own,
            lookup_shared=self.lookup_shared,
            validating=validating,
            probe_smtp=services.probe_smtp if services is not None else None,
            fetch_policy=services.fetch_policy if services is not None else None,
            smtp_cache=self.smtp_cache,
            provider_of=self.providers.provider_of,
            options=PipelineOptions(
                dns_only=cfg.dns_only,
                ipv6=cfg.ipv6,
                smtp_port=cfg.smtp_port,
                max_addresses_per_host=cfg.max_addresses_per_host,
                max_addresses_per_domain=cfg.max_addresses_per_domain,
            ),
            now=lambda: dt.datetime.now(dt.UTC),
            lookup_ptr=self.ptr_of if services is not None else None,
            stale=needs_chain,
        )

    async def lookup_shared(self, name: str, rrtype: str) -> Answer:
        return await self.dns_cache.get((name, rrtype), lambda: self.resolver.lookup(name, rrtype))

    async def lookup_own(self, name: str, rrtype: str) -> Answer:
        # Names of one domain are asked once per run (the list is deduplicated),
        # so they skip the shared cache: no entry, no single-flight bookkeeping.
        return await self.resolver.lookup(name, rrtype)

    async def ptr_of(self, address: str) -> PtrResult:
        # One reverse lookup per address per run; the forward lookups of PTR names go through
        # the shared cache (a PTR name is often the MX host name itself).
        return await self.ptr_cache.get(address, lambda: lookup_ptr(address, self.lookup_shared))

    def make_progress(self, total: int | None) -> Progress | None:
        if self.cfg.progress == "off":
            return None
        is_tty = {"tty": True, "plain": False}.get(self.cfg.progress, self.stderr.isatty())
        if self.sharding is not None:
            total = Sharding.estimate(total, self.sharding.count)
        remaining = None if total is None else max(total - len(self.done), 0)
        interval = 0.2 if is_tty else defaults.PROGRESS_INTERVAL_PLAIN
        return Progress(self.stderr, total=remaining, interval=interval, is_tty=is_tty)

    async def drive(self, items: Iterator[InputItem]) -> RunStats[InputItem]:
        """Every domain of the list through the scheduler, until the list ends or a signal."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        services = self.services
        refresher = asyncio.create_task(keep_politeness_current(services)) if services is not None else None
        try:
            return await run_targets(
                self.lines.targets(self.sharding.select(items) if self.sharding is not None else items),
                self.handle,
                lambda _item, finished: self.lines.write(*finished),
                self.crash,
                concurrency=self.cfg.concurrency,
                max_parked=self.cfg.max_parked,
                stop=stop,
                grace=self.cfg.grace,
                tick=self.tick,
                stats=self.live,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if refresher is not None:
                refresher.cancel()

    async def handle(self, item: InputItem) -> Finished:
        assert item.domain is not None
        if self.cfg.exclude is not None and self.cfg.exclude.excludes_name(item.domain):
            return self.lines.record(item, status=Status.SKIPPED, reason="excluded"), ()
        started = time.perf_counter()
        outcome = await self.pipeline.measure(item.domain)
        record = self.lines.measured(item, outcome, round((time.perf_counter() - started) * 1000, 3))
        return record, outcome.smtp_probes

    def crash(self, item: InputItem, exc: Exception) -> Finished:
        return self.lines.record(item, status=Status.UNKNOWN_ERROR, reason=exception_text(exc)), ()

    def tick(self) -> None:
        # The store flushes on append; an idle scan (slow domains) still needs its lines written.
        self.store.flush()
        if self.metrics is not None:
            self.metrics.tick()
        self.warn_if_lost()
        progress, services = self.progress, self.services
        if progress is not None:
            progress.set_extra("dns", f"{self.client.statistics().sent} q")
        if services is not None:
            politeness = services.politeness(False)
            if progress is not None:
                progress.set_extra("parked", str(self.live.parked))
                progress.set_extra("throttled", str(politeness.get("throttled", 0)))
                progress.set_extra("slow", str(politeness.get("slow_hosts", 0)))
            self.observe_tail(politeness)
        if progress is not None:
            progress.tick()

    def observe_tail(self, politeness: Politeness) -> None:
        # Only targets some domain still awaits: the probe process's figures are up to a
        # second old, and a target it has settled since must not linger in the tail.
        listed = (tuple(key) for key in politeness.get("unresponsive", ()))
        waiting = [key for key in listed if key in self.pipeline.awaiting]
        self.tail.update(self.pipeline.domains_awaiting(waiting), len(waiting), politeness.get("deadline"))
        if self.progress is not None:
            self.progress.set_extra("waiting", self.tail.text(time.time()) or "0")

    async def settle(self) -> None:
        """The probe process's last figures: the summary and the last progress line settled."""
        if self.services is not None:
            with contextlib.suppress(OffloadError):
                await self.services.refresh(True)
            self.observe_tail(self.services.politeness(False))

    def warn_if_lost(self) -> None:
        lost = self.probes.lost if isinstance(self.probes, Offload) else None
        if lost is not None and not self.warned_lost:
            self.warned_lost = True
            self.say(
                f"WARNING: the probe process is gone ({lost}); every SMTP and MTA-STS result since is "
                "recorded as unknown-error (detail OffloadLost). Run the same command with "
                "--retry-unknown to measure them again."
            )

    def finish(self, stats: RunStats[InputItem], dns_stats: ClientStatistics) -> int:
        """The run line when the list is done, the totals, and the exit code."""
        lines = self.lines
        if not stats.stopped and not lines.input_error:
            lines.shard = self.sharding.run() if self.sharding is not None else None
            lines.mark_finished()
        self.store.flush()
        if self.progress is not None:
            self.progress.finish()
        self.warn_if_lost()
        if self.cfg.summary_json is not None:
            summary = self.summary(stats, dns_stats)
            self.cfg.summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        if lines.input_error:
            self.say(f"{lines.input_error}; stopped taking new domains")
            return EXIT_USAGE
        if stats.stopped:
            self.say(
                f"stopped; {lines.written} records written this run, {stats.abandoned} domains abandoned. "
                f"Re-run the same command to resume (results so far are in {self.cfg.out})."
            )
            return EXIT_INTERRUPTED
        return EXIT_OK

    def summary(self, stats: RunStats[InputItem], dns_stats: ClientStatistics) -> dict[str, object]:
        caches = (self.dns_cache, self.smtp_cache, self.ptr_cache)
        return run_summary(
            self.lines,
            seconds=time.monotonic() - self.began,
            scheduler=stats,
            dns=dns_stats,
            caches=dict(zip(("dns", "smtp", "ptr"), (cache.statistics() for cache in caches), strict=True)),
            politeness=self.services.politeness() if self.services is not None else {},
            tail=self.tail,
        )

    def say(self, message: str) -> None:
        print(f"mxscan: {message}", file=self.stderr)

"""``mxscan scan``: build one run from its config and drive it to the end."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol, TextIO

import orjson
import uvloop

from engine.checkpoint import KeySet, ResultStore, StoreError
from engine.heap import settle_heap
from engine.inputs import DomainReader, InputError, InputItem, count_names
from engine.offload import Offload, OffloadError
from engine.progress import Progress, Tail
from engine.records import encode
from engine.scheduler import RunStats, run_targets
from engine.singleflight import SingleFlight
from engine.status import Status
from mxscan import __version__, defaults
from mxscan.config import ScanConfig
from mxscan.hostcache import HostLines, needs_chain
from mxscan.probeservice import (
    Politeness,
    ProbeServices,
    inline_services,
    keep_politeness_current,
    probe_process,
    remote_services,
)
from mxscan.retry import Merged, RetryError, RetryRun, side_path
from mxscan.wiring import smtp_prober
from probes.dns.client import ClientStatistics, DnsClient
from probes.dns.preflight import PreflightResult, preflight
from probes.dns.records import Answer, ResolverCheck
from probes.dns.resolver import StubResolver
from probes.dns.reverse import PtrResult, lookup_ptr
from probes.domain import SCHEMA_VERSION, DomainRecord, RunEnd, ScanMeta, host_line, run_line
from probes.egress import EgressCheck, decide, run_egress_check, skipped
from probes.plan import Pipeline, PipelineOptions, failure_detail
from probes.providers import ProviderMap, load_provider_map
from probes.smtp.probe import SmtpProbe, SmtpProber
from probes.tls.truststore import TrustStoreError
from probes.vantage import Vantage, measure_vantage, vantage_warnings
from report.openmetrics import LiveMetrics

__all__ = ["run_scan"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _now() -> str:
    """UTC now as ISO 8601 with milliseconds; once per record, so kept cheap (no datetime)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


#: A finished domain: its record and the SMTP results it references (per MX host).
Finished = tuple[DomainRecord, tuple[tuple[SmtpProbe, ...], ...]]


class _Run:
    """The per-run state the scheduler's callbacks close over."""

    def __init__(self, store: ResultStore, done: KeySet, meta: ScanMeta) -> None:
        self.store = store
        self.done = done
        self.meta = meta
        self.progress: Progress | None = None
        self.skipped_done = 0
        self.written = 0
        self.input_error = ""
        #: The loss of the probe process has been reported.
        self.warned_lost = False
        self._invalid_seen: set[str] = set()
        #: Which host lines are written; compacts the SMTP cache after each (mxscan/hostcache.py).
        self.hosts = HostLines(None)
        #: --metrics: sees every line the file gets, so its figures are the file's.
        self.metrics: LiveMetrics | None = None
        #: The egress pre-flight with every attempt: written once (run line, --summary-json);
        #: domain lines carry its verdicts (meta.egress).
        self.egress: EgressCheck | None = None

    def record(self, item: InputItem, **fields: object) -> DomainRecord:
        base: dict[str, object] = {
            "schema_version": SCHEMA_VERSION,
            "domain": item.domain or item.raw,
            "input_line": item.line,
            "status": Status.SUCCESS,
            "reason": "",
            "scan": self.meta,
            "measured_at": _now(),
            "duration_ms": 0.0,
            "dns": None,
            "mx_transport": (),
            "mta_sts": None,
            "tlsrpt": None,
            "posture": None,
            "errors": (),
        }
        base.update(fields)
        return DomainRecord(**base)  # type: ignore[arg-type]

    def write(self, record: DomainRecord, hosts: tuple[tuple[SmtpProbe, ...], ...] = ()) -> None:
        """The host lines the record references that this run has not written yet, then the record
        (same buffer, in order: a reference never points past a torn tail)."""
        for transport, probes in zip(record.mx_transport, hosts, strict=True):
            for probe in probes:
                if not self.hosts.written(probe):
                    self._append(probe.host_line or host_line(probe.result))
                    self.hosts.wrote(probe, transport.dane)
        self._append(encode(record))
        self.written += 1
        if self.progress is not None:
            self.progress.add(str(record.status))

    def _append(self, line: bytes) -> None:
        self.store.append(line)
        if self.metrics is not None:
            self.metrics.line(line)

    def targets(self, items: Iterator[InputItem]) -> Iterator[InputItem]:
        try:
            yield from self._valid(items)
        except InputError as exc:  # the list broke mid-stream (unreadable, ...): stop taking new domains
            self.input_error = str(exc)

    def _valid(self, items: Iterator[InputItem]) -> Iterator[InputItem]:
        for item in items:
            key = item.domain or item.raw
            if key in self.done:
                self.skipped_done += 1
                continue
            if item.domain is None:
                if key not in self._invalid_seen:
                    self._invalid_seen.add(key)
                    self.write(
                        self.record(item, status=Status.INVALID_INPUT, reason=item.reason or "invalid")
                    )
                continue
            yield item


def _resolver_check_passes(check: PreflightResult, resolver: str, require: bool, stderr: TextIO) -> bool:
    """Say loudly what the pre-flight showed; False when ``--require-validation`` refuses.

    ``--require-validation`` asks for proof: an inconclusive check (AD on the signed name,
    no verdict on the bogus one) is refused like a failed one.
    """
    if check.check is ResolverCheck.VALIDATING:
        return True
    if check.check is ResolverCheck.INCONCLUSIVE:
        print(
            f"mxscan: WARNING: DNSSEC validation of resolver {resolver} is INCONCLUSIVE ({check.detail}); "
            "dnssec fields are recorded from its AD bit, but that it rejects bogus data is unproven. "
            "Give --preflight-bogus a name that is bogus for this resolver to settle it.",
            file=stderr,
        )
    else:
        print(
            f"mxscan: WARNING: resolver {resolver} does not validate DNSSEC ({check.detail}); "
            "every dnssec field will be recorded as 'unknown', never as 'not signed'.",
            file=stderr,
        )
    if require:
        print(
            "mxscan: --require-validation: not scanning without proof that the resolver validates",
            file=stderr,
        )
    return not require


async def _scan_with_store(
    cfg: ScanConfig,
    items: Iterator[InputItem],
    total: int | None,
    store: ResultStore,
    done: KeySet,
    prober: SmtpProber | None,
    providers: ProviderMap,
    stderr: TextIO,
    offload: Offload | None,
    metrics: LiveMetrics | None = None,
) -> int:
    resolver_text = f"{cfg.resolver[0]}:{cfg.resolver[1]}"
    began = time.monotonic()
    async with contextlib.AsyncExitStack() as probe_stack:
        client = await probe_stack.enter_async_context(
            DnsClient(
                cfg.resolver,
                timeout=cfg.dns_timeout,
                attempts=cfg.dns_attempts,
                max_in_flight=cfg.dns_in_flight,
            )
        )
        check = await preflight(
            client,
            signed_name=cfg.preflight_signed,
            bogus_name=cfg.preflight_bogus,
            timeout=defaults.PREFLIGHT_TIMEOUT,
        )
        if not check.reachable:
            print(f"mxscan: resolver {resolver_text} is not answering: {check.detail}", file=stderr)
            return EXIT_USAGE
        if not _resolver_check_passes(check, resolver_text, cfg.require_validation, stderr):
            return EXIT_USAGE
        resolver = StubResolver(client, validating=check.reads_ad)
        egress: EgressCheck | None = None
        vantage: Vantage | None = None
        if not cfg.dns_only:
            egress, vantage, ipv6 = await _egress_preflight(cfg, resolver, stderr)
            if egress is None:
                return EXIT_USAGE
            cfg = dataclasses.replace(cfg, ipv6=ipv6)
        meta = ScanMeta(
            tool="mxscan",
            version=__version__,
            started=_now(),
            resolver=resolver_text,
            dnssec_validating=check.reads_ad,
            ehlo_name="" if cfg.dns_only else cfg.ehlo_name or "",
            contact=cfg.contact,
            dnssec_check=check.check,
            egress=egress.verdict() if egress is not None else None,
            vantage=vantage,
        )
        run = _Run(store, done, meta)
        run.metrics = metrics
        run.egress = egress
        dns_cache: SingleFlight[tuple[str, str], Answer] = SingleFlight(defaults.SHARED_CACHE_ENTRIES)
        smtp_cache: SingleFlight[tuple[str, str], SmtpProbe] = SingleFlight(defaults.SMTP_CACHE_ENTRIES)
        run.hosts = HostLines(smtp_cache)
        ptr_cache: SingleFlight[str, PtrResult] = SingleFlight(defaults.SMTP_CACHE_ENTRIES)

        async def lookup_shared(name: str, rrtype: str) -> Answer:
            return await dns_cache.get((name, rrtype), lambda: resolver.lookup(name, rrtype))

        async def lookup_own(name: str, rrtype: str) -> Answer:
            # Names of one domain are asked once per run (the list is deduplicated),
            # so they skip the shared cache: no entry, no single-flight bookkeeping.
            return await resolver.lookup(name, rrtype)

        async def ptr_of(address: str) -> PtrResult:
            # One reverse lookup per address per run; the forward lookups of PTR names go through
            # the shared cache (a PTR name is often the MX host name itself).
            return await ptr_cache.get(address, lambda: lookup_ptr(address, lookup_shared))

        services: ProbeServices | None = None
        if offload is not None:
            try:
                await offload.start()
                services = await remote_services(offload)
            except OffloadError as exc:
                print(f"mxscan: the probe process failed to start ({exc}); try --inline-probes", file=stderr)
                return EXIT_USAGE
        elif prober is not None:
            services = await inline_services(cfg, prober, providers, probe_stack)
        pipeline = Pipeline(
            lookup_own=lookup_own,
            lookup_shared=lookup_shared,
            validating=check.reads_ad,
            probe_smtp=services.probe_smtp if services is not None else None,
            fetch_policy=services.fetch_policy if services is not None else None,
            smtp_cache=smtp_cache,
            provider_of=providers.provider_of,
            options=PipelineOptions(
                dns_only=cfg.dns_only,
                ipv6=cfg.ipv6,
                smtp_port=cfg.smtp_port,
                max_addresses_per_host=cfg.max_addresses_per_host,
                max_addresses_per_domain=cfg.max_addresses_per_domain,
            ),
            now=lambda: dt.datetime.now(dt.UTC),
            lookup_ptr=ptr_of if services is not None else None,
            stale=needs_chain,
        )

        async def handle(item: InputItem) -> Finished:
            assert item.domain is not None
            if cfg.exclude is not None and cfg.exclude.excludes_name(item.domain):
                return run.record(item, status=Status.SKIPPED, reason="excluded"), ()
            started = time.perf_counter()
            outcome = await pipeline.measure(item.domain)
            record = run.record(
                item,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                dns=outcome.dns,
                mx_transport=outcome.mx_transport,
                mta_sts=outcome.mta_sts,
                tlsrpt=outcome.tlsrpt,
                posture=outcome.posture,
                errors=outcome.errors,
            )
            return record, outcome.smtp_probes

        def crash(item: InputItem, exc: Exception) -> Finished:
            return run.record(item, status=Status.UNKNOWN_ERROR, reason=failure_detail(exc)), ()

        progress = _make_progress(cfg, stderr, total, len(done))
        run.progress = progress

        live: RunStats[InputItem] = RunStats()
        tail = Tail()

        def observe_tail(politeness: Politeness) -> None:
            # Only targets some domain still awaits: the probe process's figures are up to a
            # second old, and a target it has settled since must not linger in the tail.
            listed = (tuple(key) for key in politeness.get("unresponsive", ()))
            waiting = [key for key in listed if key in pipeline.awaiting]
            tail.update(pipeline.domains_awaiting(waiting), len(waiting), politeness.get("deadline"))
            if progress is not None:
                progress.set_extra("waiting", tail.text(time.time()) or "0")

        def tick() -> None:
            # The store flushes on append; an idle scan (slow domains) still needs its lines written.
            store.flush()
            if metrics is not None:
                metrics.tick()
            if offload is not None and offload.lost is not None and not run.warned_lost:
                run.warned_lost = True
                print(f"mxscan: WARNING: {_lost_probe_process(offload.lost)}", file=stderr)
            if services is not None:
                politeness = services.politeness(False)
            if progress is not None:
                progress.set_extra("dns", f"{client.statistics().sent} q")
                if services is not None:
                    progress.set_extra("parked", str(live.parked))
                    progress.set_extra("throttled", str(politeness.get("throttled", 0)))
                    progress.set_extra("slow", str(politeness.get("slow_hosts", 0)))
            if services is not None:
                observe_tail(politeness)
            if progress is not None:
                progress.tick()

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        refresher = asyncio.create_task(keep_politeness_current(services)) if services is not None else None
        try:
            stats = await run_targets(
                run.targets(items),
                handle,
                lambda _item, finished: run.write(*finished),
                crash,
                concurrency=cfg.concurrency,
                max_parked=cfg.max_parked,
                stop=stop,
                grace=cfg.grace,
                tick=tick,
                stats=live,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if refresher is not None:
                refresher.cancel()
        if services is not None:
            with contextlib.suppress(OffloadError):
                await services.refresh(True)
            observe_tail(services.politeness(False))  # the summary and the last line: settled
        dns_stats = client.statistics()
    if not stats.stopped and not run.input_error:
        _mark_finished(store, run, done)
    store.flush()
    if progress is not None:
        progress.finish()
    if offload is not None and offload.lost is not None and not run.warned_lost:
        print(f"mxscan: WARNING: {_lost_probe_process(offload.lost)}", file=stderr)
    if cfg.summary_json is not None:
        caches: dict[str, HasStatistics] = {"dns": dns_cache, "smtp": smtp_cache}
        politeness = services.politeness() if services is not None else None
        _write_summary(
            cfg.summary_json, run, stats, dns_stats, caches, time.monotonic() - began, politeness, tail
        )
    if run.input_error:
        print(f"mxscan: {run.input_error}; stopped taking new domains", file=stderr)
        return EXIT_USAGE
    if stats.stopped:
        print(
            f"mxscan: stopped; {run.written} records written this run, {stats.abandoned} domains abandoned. "
            f"Re-run the same command to resume (results so far are in {cfg.out}).",
            file=stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


async def _egress_preflight(
    cfg: ScanConfig, resolver: StubResolver, stderr: TextIO
) -> tuple[EgressCheck | None, Vantage | None, bool]:
    """The egress pre-flight and the vantage: (check, vantage, IPv6 still probed); the check
    is None when the scan must stop (exit 2; the message is printed)."""
    if cfg.skip_egress_check:
        check = skipped()
    else:
        specs = cfg.egress_check or tuple((host, cfg.smtp_port) for host in defaults.EGRESS_CHECK_HOSTS)
        check = await run_egress_check(specs, resolver.lookup, defaults.EGRESS_TIMEOUT, ipv6_wanted=cfg.ipv6)
    decision = decide(check, ipv6_wanted=cfg.ipv6)
    if decision.message:
        print(f"mxscan: {decision.message}", file=stderr)
    if not decision.proceed:
        return None, None, cfg.ipv6
    vantage = await measure_vantage(check.attempts, cfg.ehlo_name or "", resolver.lookup)
    for warning in vantage_warnings(vantage, cfg.ehlo_name or ""):
        print(f"mxscan: {warning}", file=stderr)
    return check, vantage, decision.ipv6


def _mark_finished(store: ResultStore, run: _Run, done: KeySet) -> None:
    """Every domain of the list has a line: end the file with a run line, unless it already
    ends with one and this run added nothing (see engine.checkpoint, "Finished or not")."""
    if store.finished and not store.appended:
        return
    end = RunEnd(
        finished=True,
        domains=len(done) + run.written,
        started=run.meta.started,
        ended=_now(),
        tool="mxscan",
        version=__version__,
        egress=run.egress,
    )
    store.append_alone(run_line(end))


def _lost_probe_process(why: str) -> str:
    return (
        f"the probe process is gone ({why}); every SMTP and MTA-STS result since is recorded as "
        "unknown-error (detail OffloadLost). Run the same command with --retry-unknown to measure them again."
    )


class HasStatistics(Protocol):
    def statistics(self) -> object: ...


def _write_summary(
    path: Path,
    run: _Run,
    stats: RunStats[InputItem],
    dns_stats: ClientStatistics,
    caches: Mapping[str, HasStatistics],
    seconds: float,
    politeness: Politeness | None,
    tail: Tail,
) -> None:
    """Machine-readable totals for benchmarks and scheduled jobs."""
    summary = {
        "records_written": run.written,
        "resumed_skipped": run.skipped_done,
        "seconds": round(seconds, 3),
        "scheduler": dataclasses.asdict(stats),
        "dns": dataclasses.asdict(dns_stats),
        "caches": {name: dataclasses.asdict(cache.statistics()) for name, cache in caches.items()},  # type: ignore[call-overload]
        "politeness": {
            k: v for k, v in (politeness or {}).items() if k not in ("throttled", "unresponsive", "deadline")
        },
        "tail": tail.summary(time.time()),
        # Where the scan measured from, written once here and on the run line (domain lines
        # carry only the verdicts): every pre-flight attempt, and the vantage.
        "egress": run.egress,
        "vantage": run.meta.vantage,
    }
    path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


def _make_progress(cfg: ScanConfig, stderr: TextIO, total: int | None, resumed: int) -> Progress | None:
    if cfg.progress == "off":
        return None
    is_tty = {"tty": True, "plain": False}.get(cfg.progress, stderr.isatty())
    remaining = None if total is None else max(total - resumed, 0)
    interval = 0.2 if is_tty else defaults.PROGRESS_INTERVAL_PLAIN
    return Progress(stderr, total=remaining, interval=interval, is_tty=is_tty)


def run_scan(cfg: ScanConfig, stderr: TextIO = sys.stderr) -> int:
    """Run one scan to completion (or interruption); returns the exit code.

    Everything that can be checked without the network (the list, the trust
    store, the results file) is checked here, before any resolver or server is
    contacted, so a usage mistake costs nobody a connection.
    """
    if cfg.ehlo_name is None and os.environ.get("MXSCAN_EHLO_NAME"):
        cfg = dataclasses.replace(cfg, ehlo_name=os.environ["MXSCAN_EHLO_NAME"])
    if not cfg.dns_only and not cfg.ehlo_name:
        print(
            "mxscan: set --ehlo-name (or MXSCAN_EHLO_NAME) to a name that identifies your scanner, "
            "e.g. scanner.example.org; mxscan never uses this machine's host name silently. "
            "Use --dns-only to measure DNS alone.",
            file=stderr,
        )
        return EXIT_USAGE
    try:
        items = iter(DomainReader(cfg.domains))
        first = next(items)  # sniffs the source: binary or empty lists fail here
        # After the sniff, so binary content is refused before it is counted; None
        # (no total) for a pipe, FIFO or device, which the reader streams once.
        total = count_names(cfg.domains)
        prober = smtp_prober(cfg)
        providers = load_provider_map(Path(cfg.providers_file).read_text() if cfg.providers_file else None)
    except (InputError, TrustStoreError, OSError, ValueError) as exc:
        print(f"mxscan: {exc}", file=stderr)
        return EXIT_USAGE
    # A retry pass writes beside the results file and merges at the end (mxscan.retry).
    store = ResultStore(
        side_path(cfg.out) if cfg.retry_unknown else cfg.out,
        fresh=cfg.fresh or cfg.retry_unknown,
        keep_until_written=not cfg.retry_unknown,
    )
    settle_heap()
    offload = None
    if prober is not None and not cfg.inline_probes:
        # Forked before the store is opened (the child must not hold its lock) and before
        # the event loop starts (a fork must not copy a running loop).
        offload = probe_process(cfg, prober, providers)
    retry: RetryRun | None = None
    metrics: LiveMetrics | None = None
    try:
        try:
            if cfg.retry_unknown:
                retry = RetryRun(cfg.out).__enter__()
                _say_merged(cfg.out, retry.merge(), stderr, leftover=True)
                kept, redo = retry.plan()
            else:
                _settle_leftover_retry(cfg, stderr)
            done: KeySet = store.open()
        except (StoreError, RetryError) as exc:
            print(f"mxscan: {exc}", file=stderr)
            return EXIT_USAGE
        if retry is not None:
            done = kept
            print(
                f"mxscan: retrying {redo} domains with unknown results ({len(kept)} kept); "
                f"{cfg.out} changes only when they are measured",
                file=stderr,
            )
        if cfg.metrics is not None:
            metrics = _start_metrics(cfg, stderr)
        scan = _scan_with_store(
            cfg,
            itertools.chain([first], items),
            total,
            store,
            done,
            prober,
            providers,
            stderr,
            offload,
            metrics,
        )
        return uvloop.run(scan)
    finally:
        try:
            store.close()
        finally:
            if retry is not None:
                _finish_retry(retry, stderr)
            if offload is not None:
                offload.kill()
            if metrics is not None:
                metrics.close(cfg.out)  # after a retry pass's merge: the file as it now stands


def _start_metrics(cfg: ScanConfig, stderr: TextIO) -> LiveMetrics:
    """The --metrics file, counting what a resumed file already holds, written once now."""
    assert cfg.metrics is not None

    def warn(problem: str) -> None:
        print(f"mxscan: WARNING: --metrics {cfg.metrics}: {problem}", file=stderr)

    metrics = LiveMetrics(cfg.metrics, top=cfg.metrics_top, interval=cfg.metrics_interval, warn=warn)
    metrics.seed(cfg.out)
    metrics.write(finished=False)
    return metrics


def _settle_leftover_retry(cfg: ScanConfig, stderr: TextIO) -> None:
    """A retry pass killed outright left its side file: merge it before the results file is
    resumed (``--fresh`` discards it with the results)."""
    side = side_path(cfg.out)
    if not side.exists():
        return
    if cfg.fresh or not cfg.out.exists():
        side.unlink()
        return
    with RetryRun(cfg.out) as retry:
        _say_merged(cfg.out, retry.merge(), stderr, leftover=True)


def _finish_retry(retry: RetryRun, stderr: TextIO) -> None:
    """Merge this pass's results (whatever ended it) and release the results file."""
    try:
        _say_merged(retry.path, retry.merge(), stderr, leftover=False)
    except (OSError, RetryError) as exc:
        print(
            f"mxscan: {exc}; {retry.path} is unchanged and {retry.side} keeps the retried domains "
            "(the next scan of the file merges them)",
            file=stderr,
        )
    finally:
        retry.__exit__()


def _say_merged(path: Path, merged: Merged | None, stderr: TextIO, *, leftover: bool) -> None:
    if merged is None:
        return
    redone = merged.replaced + merged.added
    if not redone:
        if not leftover:
            print(f"mxscan: {path} is unchanged (no domain was measured again)", file=stderr)
        return
    what = "an interrupted --retry-unknown pass" if leftover else "the retried domains"
    print(
        f"mxscan: merged {what} into {path}: {redone} domains measured again, "
        f"{redone - merged.still_unknown} now settled, {merged.still_unknown} still unknown"
        + ("" if merged.finished or leftover else "; the scan is not finished: run the same command again"),
        file=stderr,
    )

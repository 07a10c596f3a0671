"""``mxscan scan``: wire the probes into the engine for one run."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from engine.checkpoint import ResultStore, StoreError
from engine.inputs import DomainReader, InputError, InputItem, count_names
from engine.progress import Progress
from engine.records import encode
from engine.scheduler import run_targets
from engine.singleflight import SingleFlight
from engine.status import Status
from mxscan import __version__, defaults
from probes.dns.client import DnsClient
from probes.dns.preflight import preflight
from probes.dns.probe import probe_dns
from probes.dns.records import Answer
from probes.dns.resolver import StubResolver
from probes.domain import SCHEMA_VERSION, DomainRecord, ProbeError, ScanMeta

__all__ = ["ScanConfig", "run_scan"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class ScanConfig:
    domains: str
    out: Path
    resolver: tuple[str, int]
    fresh: bool = False
    concurrency: int = defaults.CONCURRENCY
    dns_in_flight: int = defaults.DNS_IN_FLIGHT
    dns_timeout: float = defaults.DNS_TIMEOUT
    dns_attempts: int = defaults.DNS_ATTEMPTS
    preflight_signed: str = defaults.PREFLIGHT_SIGNED_NAME
    preflight_bogus: str = defaults.PREFLIGHT_BOGUS_NAME
    require_validation: bool = False
    grace: float = defaults.SHUTDOWN_GRACE
    progress: str = "auto"  # auto | tty | plain | off


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _detail(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


class _Run:
    """The per-run state the scheduler's callbacks close over."""

    def __init__(self, cfg: ScanConfig, store: ResultStore, done: frozenset[str], meta: ScanMeta) -> None:
        self.cfg = cfg
        self.store = store
        self.done = done
        self.meta = meta
        self.progress: Progress | None = None
        self.skipped_done = 0
        self._invalid_seen: set[str] = set()

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
            "errors": (),
        }
        base.update(fields)
        return DomainRecord(**base)  # type: ignore[arg-type]

    def write(self, record: DomainRecord) -> None:
        self.store.append(encode(record))
        if self.progress is not None:
            self.progress.add(str(record.status))

    def targets(self, reader: DomainReader) -> Iterator[InputItem]:
        for item in reader:
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


async def _scan(cfg: ScanConfig, stderr: TextIO) -> int:
    try:
        reader = DomainReader(cfg.domains)
        total = count_names(cfg.domains)
    except InputError as exc:
        print(f"mxscan: {exc}", file=stderr)
        return EXIT_USAGE
    store = ResultStore(cfg.out, fresh=cfg.fresh)
    try:
        done = store.open()
    except StoreError as exc:
        print(f"mxscan: {exc}", file=stderr)
        return EXIT_USAGE
    try:
        return await _scan_with_store(cfg, reader, total, store, done, stderr)
    finally:
        store.close()


async def _scan_with_store(
    cfg: ScanConfig,
    reader: DomainReader,
    total: int | None,
    store: ResultStore,
    done: frozenset[str],
    stderr: TextIO,
) -> int:
    resolver_text = f"{cfg.resolver[0]}:{cfg.resolver[1]}"
    async with DnsClient(
        cfg.resolver, timeout=cfg.dns_timeout, attempts=cfg.dns_attempts, max_in_flight=cfg.dns_in_flight
    ) as client:
        check = await preflight(
            client,
            signed_name=cfg.preflight_signed,
            bogus_name=cfg.preflight_bogus,
            timeout=defaults.PREFLIGHT_TIMEOUT,
        )
        if not check.reachable:
            print(f"mxscan: resolver {resolver_text} is not answering: {check.detail}", file=stderr)
            return EXIT_USAGE
        if not check.validating:
            print(
                f"mxscan: WARNING: resolver {resolver_text} does not validate DNSSEC ({check.detail}); "
                "every dnssec field will be recorded as 'unknown', never as 'not signed'.",
                file=stderr,
            )
            if cfg.require_validation:
                return EXIT_USAGE
        meta = ScanMeta(
            tool="mxscan",
            version=__version__,
            started=_now(),
            resolver=resolver_text,
            dnssec_validating=check.validating,
        )
        run = _Run(cfg, store, done, meta)
        resolver = StubResolver(client, validating=check.validating)
        cache: SingleFlight[tuple[str, str], Answer] = SingleFlight(defaults.SHARED_CACHE_ENTRIES)

        async def lookup_shared(name: str, rrtype: str) -> Answer:
            return await cache.get((name, rrtype), lambda: resolver.lookup(name, rrtype))

        async def lookup_own(name: str, rrtype: str) -> Answer:
            return await cache.get((name, rrtype), lambda: resolver.lookup(name, rrtype), retain=False)

        async def handle(item: InputItem) -> DomainRecord:
            assert item.domain is not None
            started = time.perf_counter()
            errors: list[ProbeError] = []
            dns = None
            try:
                dns = await probe_dns(
                    item.domain,
                    lookup_domain=lookup_own,
                    lookup_host=lookup_shared,
                    validating=check.validating,
                )
            except Exception as exc:  # a probe bug becomes a classified record, never a lost domain
                errors.append(ProbeError(probe="dns", status=Status.UNKNOWN_ERROR, detail=_detail(exc)))
            return run.record(
                item,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                dns=dns,
                errors=tuple(errors),
            )

        def crash(item: InputItem, exc: Exception) -> DomainRecord:
            return run.record(item, status=Status.UNKNOWN_ERROR, reason=_detail(exc))

        progress = _make_progress(cfg, stderr, total, len(done))
        run.progress = progress
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def tick() -> None:
            # The store flushes on append; an idle scan (slow domains) still needs its lines written.
            store.flush()
            if progress is not None:
                progress.tick()

        try:
            stats = await run_targets(
                run.targets(reader),
                handle,
                lambda _item, record: run.write(record),
                crash,
                concurrency=cfg.concurrency,
                stop=stop,
                grace=cfg.grace,
                tick=tick,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    store.flush()
    if progress is not None:
        progress.finish()
    if stats.stopped:
        print(
            f"mxscan: stopped; {stats.emitted} domains written this run, {stats.abandoned} abandoned. "
            f"Re-run the same command to resume (results so far are in {cfg.out}).",
            file=stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def _make_progress(cfg: ScanConfig, stderr: TextIO, total: int | None, resumed: int) -> Progress | None:
    if cfg.progress == "off":
        return None
    is_tty = {"tty": True, "plain": False}.get(cfg.progress, stderr.isatty())
    remaining = None if total is None else max(total - resumed, 0)
    interval = 0.2 if is_tty else defaults.PROGRESS_INTERVAL_PLAIN
    return Progress(stderr, total=remaining, interval=interval, is_tty=is_tty)


def run_scan(cfg: ScanConfig, stderr: TextIO = sys.stderr) -> int:
    """Run one scan to completion (or interruption); returns the exit code."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but a scan must not need it
        return asyncio.run(_scan(cfg, stderr))
    return uvloop.run(_scan(cfg, stderr))

"""The Ray actors of a cluster scan: probe actors (connections and their politeness,
partitioned by provider) and scan workers (DNS, the plan, record assembly).

A probe actor is what the probe process is on one machine (``InlineServices``: the polite
prober and the policy fetcher), one per partition of the providers: every (host, address)
probe goes to the actor that owns ``provider_of(host) or host`` (the key the polite prober
limits and backs off by; ``scaleout.shard.shard_of`` over the actors), so per-provider limits,
back-off, the slow lane and the one probe per (host, address) hold across the whole cluster
without a global lock, and the per-address limit holds for every address whose hosts share a
provider.  A worker's requests to one probe actor travel in batched calls, each answer back as
its probe finishes (``calls.Calls``).  Ray restarts a probe actor that dies (fresh politeness
state); the requests it had not answered are sent to it again.

A scan worker holds one ``ScanRun`` for its lifetime (resolver, caches, the plan), with
``ClusterServices`` as its probe services, and measures one batch at a time: the lines it
returns -- each record with the host lines it references and this worker has not sent
before, in order -- are written by the driver as they come, so a reference always follows
its host line in the file (a worker's batches are written in the order it measured them).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import orjson

from engine.checkpoint import DigestSet, ResultStore
from engine.heap import settle_heap
from engine.inputs import InputItem
from engine.scheduler import RunStats, run_targets
from engine.singleflight import SingleFlight
from mxscan.config import ScanConfig
from mxscan.probeservice import InlineServices, Politeness
from mxscan.steps import ScanRun
from mxscan.wiring import smtp_prober
from probes.dns.client import DnsClient
from probes.dns.resolver import StubResolver
from probes.hostcache import SMTP_CACHE_ENTRIES
from probes.mtasts.records import PolicyFetch
from probes.providers import ProviderMap, load_provider_map
from probes.services import for_the_wire
from probes.smtp.probe import SmtpProbe
from scaleout.cluster.calls import Answer, Calls, Request, Send, answers_as_they_finish
from scaleout.shard import shard_of

__all__ = [
    "PROBE_ACTOR_OPTIONS",
    "SCAN_WORKER_OPTIONS",
    "ClusterServices",
    "Line",
    "ProbeActor",
    "ScanWorker",
    "WorkerStatus",
    "providers_of",
]

#: One line for the results file: the domain it completes (None: a host line), the record's
#: status (the progress line counts by it; "" for a host line) and the line's bytes.
Line = tuple[str | None, str, bytes]
#: What a scan worker says while it measures (``ScanWorker.status``): which of the given
#: unresponsive (host, address) keys its domains await, how many of its domains await them,
#: the DNS queries it has sent and its domains parked (waiting without a slot).
WorkerStatus = tuple[list[tuple[str, str]], int, int, int]

#: Calls one probe actor serves at once (the polite prober's own limits decide what runs).
PROBE_ACTOR_CONCURRENCY = 10_000
#: The kinds of a probe request (``calls.Request``).
SMTP, POLICY = "smtp", "policy"


def providers_of(cfg: ScanConfig) -> ProviderMap:
    return load_provider_map(cfg.provider_overrides)  # the --providers file's text


#: ``ray.remote`` options of a probe actor: restarted when it dies (with fresh politeness
#: state; ``calls.Calls`` sends the requests it had not answered again); no CPU reserved (its
#: work is mostly waiting), so spread over the nodes: Ray would otherwise place every actor
#: that asks for no CPU on the driver's node, whose cores they would then share.
PROBE_ACTOR_OPTIONS: dict[str, Any] = {
    "max_restarts": -1,
    "max_task_retries": 2,  # its short calls (politeness, served); a stream is never retried
    "max_concurrency": PROBE_ACTOR_CONCURRENCY,
    "num_cpus": 0,
    "scheduling_strategy": "SPREAD",
    # Ray records every call as a task event for its dashboard, one per batch here.
    "enable_task_events": False,
}
#: ``ray.remote`` options of a scan worker: one CPU; never restarted (the driver replaces a
#: lost worker and hands its batch out again).
SCAN_WORKER_OPTIONS: dict[str, Any] = {"max_restarts": 0, "num_cpus": 1}


class ProbeActor:
    """The probes and politeness of one partition of the providers."""

    def __init__(self, cfg: ScanConfig) -> None:
        self.cfg = cfg
        self.services: InlineServices | None = None
        #: One probe per (host, address) for the whole cluster, as a single scan process has
        #: one (its plan's cache is per worker): without it every worker that meets a shared MX
        #: host would connect again, and a refused address would be "remembered" for the
        #: second worker instead of probed, a record a single-process scan never writes.
        self.probed: SingleFlight[tuple[str, str], SmtpProbe] = SingleFlight(SMTP_CACHE_ENTRIES)
        self.started = asyncio.Lock()
        self.stack = contextlib.AsyncExitStack()
        #: SMTP probes (one per (host, address), single-flight joins not counted) and policy
        #: fetches this actor made: how the providers spread over the actors.
        self.probes = 0
        #: Batched calls (``serve``), the requests they carried and the groups of answers sent.
        self.calls = 0
        self.requests = 0
        self.groups = 0

    async def _services(self) -> InlineServices:
        async with self.started:  # the first call builds them, in the actor's own loop
            if self.services is None:
                prober = smtp_prober(self.cfg)
                assert prober is not None  # no probe actors in a DNS-only scan
                providers = providers_of(self.cfg)
                self.services = await InlineServices.start(self.cfg, prober, providers, self.stack)
                settle_heap()  # as a scan process does once started (Ray's own heap too)
            return self.services

    async def serve(self, requests: list[Request]) -> AsyncIterator[list[Answer]]:
        """A scan worker's batch of requests (``calls.Calls``), answered as each finishes: a
        Ray streaming generator (the caller asks for ``num_returns="streaming"``)."""
        self.calls += 1
        self.requests += len(requests)
        async for answers in answers_as_they_finish(requests, self._serve):
            self.groups += 1
            yield answers

    async def _serve(self, kind: str, first: str, second: str) -> Any:
        if kind == SMTP:
            return await self._probe_smtp(first, second)
        if kind == POLICY:
            return await self._fetch_policy(first, second)
        raise ValueError(f"no such probe request: {kind!r}")

    async def _probe_smtp(self, host: str, address: str) -> SmtpProbe:
        services = await self._services()

        async def probe() -> SmtpProbe:
            self.probes += 1
            return for_the_wire(await services.probe_smtp(host, address))

        return await self.probed.get((host, address), probe)

    async def _fetch_policy(self, domain: str, address: str) -> tuple[PolicyFetch, bytes | None]:
        self.probes += 1
        return await (await self._services()).fetch_policy(domain, address)

    async def served(self) -> tuple[int, int, int, int]:
        """The probes this actor made, the calls it served, the requests they carried and the
        groups of answers it sent back."""
        return self.probes, self.calls, self.requests, self.groups

    async def politeness(self, full: bool) -> Politeness:
        return (await self._services()).politeness(full)


class ClusterServices:
    """``ProbeServices`` over the probe actors: each request to the actor owning its provider,
    gathered with others to that actor into batched calls (``calls.Calls``)."""

    def __init__(self, actors: Sequence[Any], providers: ProviderMap) -> None:
        self.actors = list(actors)
        self.providers = providers
        self.latest: Politeness = {}
        self.calls: list[Calls] | None = None  # built on first use (they import Ray)

    def _owner(self, host: str) -> Calls:
        if self.calls is None:
            from ray.exceptions import ActorUnavailableError, RayActorError

            lost = (RayActorError, ActorUnavailableError)
            self.calls = [Calls(_streamed(actor), lost) for actor in self.actors]
        return self.calls[shard_of(self.providers.provider_of(host) or host, len(self.actors)) - 1]

    async def probe_smtp(self, host: str, address: str, /) -> SmtpProbe:
        return cast(SmtpProbe, await self._owner(host).call(SMTP, host, address))

    async def fetch_policy(self, domain: str, address: str, /) -> tuple[PolicyFetch, bytes | None]:
        owner = self._owner(f"mta-sts.{domain}")  # the host the polite prober keys a fetch by
        return cast(tuple[PolicyFetch, bytes | None], await owner.call(POLICY, domain, address))

    def politeness(self, full: bool = True) -> Politeness:
        return self.latest

    async def refresh(self, full: bool = False) -> None:
        """The progress figures summed over the actors."""
        parts = await asyncio.gather(*(actor.politeness.remote(False) for actor in self.actors))
        self.latest = {
            "slow_hosts": sum(p.get("slow_hosts", 0) for p in parts),
            "throttled": sum(p.get("throttled", 0) for p in parts),
            "unresponsive": [key for p in parts for key in p.get("unresponsive", ())],
            "deadline": max((p["deadline"] for p in parts if p.get("deadline") is not None), default=None),
        }


def _streamed(actor: Any) -> Send:
    """One batch to ``actor``'s ``serve``, its answers as they come.  Never retried by Ray
    (``Calls`` sends a lost call's unanswered requests again)."""

    async def send(requests: list[Request]) -> AsyncIterator[list[Answer]]:
        stream = actor.serve.options(num_returns="streaming", max_task_retries=0).remote(requests)
        async for answers in stream:
            yield await answers

    return send


class _Lines:
    """The store a worker's ``ResultWriter`` appends to: the lines of the current batch."""

    def __init__(self) -> None:
        self.lines: list[Line] = []

    def append(self, line: bytes) -> None:
        self.lines.append((None, "", line))

    def flush(self) -> None:
        return None

    def mark(self, domain: str, status: str) -> None:
        """The last line appended is the record of ``domain``."""
        self.lines[-1] = (domain, status, self.lines[-1][2])

    def take(self) -> list[Line]:
        """The batch's lines, an invalid entry's record (written without ``mark``) keyed too."""
        lines, self.lines = self.lines, []
        return [line if line[0] is not None else _keyed(line[2]) for line in lines]


def _keyed(line: bytes) -> Line:
    """A line appended without ``mark``: a host line, or an invalid entry's record."""
    record = orjson.loads(line)
    domain = record.get("domain") if "ref" not in record else None
    if not isinstance(domain, str):
        return None, "", line
    return domain, str(record.get("status", "")), line


class ScanWorker:
    """One scan pipeline (its own resolver, caches and plan) measuring batches of domains."""

    def __init__(self, cfg: ScanConfig, probe_actors: Sequence[Any]) -> None:
        self.cfg = cfg
        self.probe_actors = list(probe_actors)
        self.sink = _Lines()
        self.messages = io.StringIO()
        self.stack = contextlib.AsyncExitStack()
        providers = providers_of(cfg)
        store = cast(ResultStore, self.sink)  # only append and flush are used
        self.run = ScanRun(cfg, self.messages, store, DigestSet(), providers, None, None)
        #: The current batch's scheduler figures (its parked domains).
        self.live: RunStats[InputItem] = RunStats()
        self.ready = False

    async def setup(self) -> tuple[bool, str]:
        """The resolver and egress pre-flights, the probe services and the plan: whether the
        worker is ready (if not, the driver stops the scan) and what the pre-flights said
        (their warnings: the driver shows each once)."""
        cfg, run = self.cfg, self.run
        client = await self.stack.enter_async_context(
            DnsClient(
                cfg.resolver,
                timeout=cfg.dns_timeout,
                attempts=cfg.dns_attempts,
                max_in_flight=cfg.dns_in_flight,
            )
        )
        check = await run.check_resolver(client)
        if check is None:
            return False, self.messages.getvalue()
        run.resolver = StubResolver(client, validating=check.reads_ad)
        egress = await run.check_egress()
        if egress is None:
            return False, self.messages.getvalue()
        run.lines = run.open_lines(check, *egress)
        if not cfg.dns_only:
            run.services = ClusterServices(self.probe_actors, run.providers)
        run.pipeline = run.plan(check.reads_ad)
        run.client = client
        self.ready = True
        settle_heap()  # as a scan process does once started (Ray's own heap too)
        return True, self.messages.getvalue()

    async def measure(self, batch: list[InputItem]) -> list[Line]:
        """Every domain of ``batch`` measured; its lines, host lines before their first use."""
        run, sink = self.run, self.sink

        def emit(_item: InputItem, finished: Any) -> None:
            record, hosts = finished
            run.lines.write(record, hosts)
            sink.mark(record.domain, str(record.status))

        self.live = RunStats()
        await run_targets(
            run.lines.targets(iter(batch)),
            run.handle,
            emit,
            run.crash,
            concurrency=self.cfg.concurrency,
            max_parked=self.cfg.max_parked,
            grace=self.cfg.grace,
            tick=run.tick,
            stats=self.live,
        )
        return sink.take()

    async def status(self, unresponsive: list[tuple[str, str]]) -> WorkerStatus:
        """Of the cluster's ``unresponsive`` keys (the probe actors' figures), the ones this
        worker's domains await and how many domains await them; its DNS queries and parked
        domains (the driver's progress line sums them over the workers)."""
        if not self.ready:
            return [], 0, 0, 0
        pipeline = self.run.pipeline
        waiting = [(host, address) for host, address in unresponsive if (host, address) in pipeline.awaiting]
        sent = self.run.client.statistics().sent
        return waiting, pipeline.domains_awaiting(waiting), sent, self.live.parked

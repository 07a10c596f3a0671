"""The driver of a cluster scan: the list read once, batches handed out, one results file.

The results file is opened with the existing store (``engine.checkpoint``): the domains it
already holds are skipped when the list is read, so a driver killed with -9 resumes as a
single-machine scan does.  Each scan worker measures one batch at a time; its lines are
written as its batch returns, each domain's record only if no line for that domain is in
the file yet (a batch re-run after a lost worker writes nothing twice).  A worker that dies
(its node removed, its process killed) is replaced by a new one and its batch handed out
again; after ``BATCH_ATTEMPTS`` lost attempts of one batch the scan stops (resumable).
The file ends with a run line once every domain of the list has its line.

The progress line is a single-machine scan's (``engine.progress``): the records written, by
status, and the tail of unresponsive hosts -- the probe actors' figures
(``ClusterServices.refresh``), with the domains each worker has waiting on them.

``local:N`` runs Ray with a temporary directory of its own (``mxscan-ray-*`` in the system's
temporary directory, ``TMPDIR``), not the shared ``/tmp/ray``: its session files and logs are
removed when the scan ends well (or is stopped), kept and named when it fails.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from engine.checkpoint import DigestSet, ResultStore, StoreError
from engine.inputs import InputError, InputItem
from engine.progress import TTY_INTERVAL, Progress, Tail
from mxscan import __version__, defaults
from mxscan.config import ScanConfig
from mxscan.steps import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from probes.domain import RunEnd, run_line
from probes.writer import now
from scaleout.cluster import LOCAL
from scaleout.cluster.actors import (
    PROBE_ACTOR_OPTIONS,
    SCAN_WORKER_OPTIONS,
    ClusterServices,
    Line,
    ProbeActor,
    ScanWorker,
    WorkerStatus,
    providers_of,
)
from scaleout.shard import resume_problem

__all__ = [
    "BATCH_ATTEMPTS",
    "BATCH_DOMAINS",
    "PROBE_ACTORS_ENV",
    "RAY_TEMP_PREFIX",
    "batch_size",
    "probe_actor_count",
    "run_cluster",
]

#: Domains per batch: large enough that a worker's pipeline stays full between batches and
#: per-call overhead is nothing, small enough that a lost worker costs little work again.
BATCH_DOMAINS = 2000
#: A shorter list is cut into at least this many batches per worker, so every worker has work
#: and the fastest take more of it.
BATCHES_PER_WORKER = 4
#: Times one batch may be lost with its worker before the scan stops.
BATCH_ATTEMPTS = 3
#: Scan workers per probe actor (a probe actor's work per domain is less than a worker's).
WORKERS_PER_PROBE_ACTOR = 2
#: The environment variable that sets the number of probe actors instead (N >= 1).
PROBE_ACTORS_ENV = "MXSCAN_PROBE_ACTORS"
#: The Ray namespace of a scan's named actors, and the prefix of a probe actor's name.
NAMESPACE = "mxscan"
PROBE_ACTOR_PREFIX = "mxscan-probe-"
#: Seconds between the driver's looks at the probe actors and workers (the single-machine
#: scan refreshes its probe process's figures as often).
STATUS_INTERVAL = 1.0
#: ``local:N``: the prefix of Ray's own temporary directory (short: Ray's Unix sockets live
#: in it, and a socket's path is limited to 107 bytes).
RAY_TEMP_PREFIX = "mxscan-ray-"


@dataclass(slots=True)
class _Batch:
    items: list[InputItem]
    attempts: int = 0


def probe_actor_name(driver: int, index: int) -> str:
    """The name a scan's probe actor has in ``NAMESPACE`` (an operator, or a test, can find it
    with ``ray.get_actor``); unique per driver process on the cluster."""
    return f"{PROBE_ACTOR_PREFIX}{driver}-{index}"


def batch_size(total: int | None, workers: int) -> int:
    """Domains per batch for a list of ``total`` names (None: not known) over ``workers``."""
    if total is None:
        return BATCH_DOMAINS
    return max(1, min(BATCH_DOMAINS, total // (BATCHES_PER_WORKER * workers)))


def probe_actor_count(workers: int, environ: Mapping[str, str]) -> int:
    """Probe actors for ``workers`` scan workers: one per ``WORKERS_PER_PROBE_ACTOR``, or
    ``PROBE_ACTORS_ENV`` when set (tests spread the providers over several on 2 CPUs)."""
    text = environ.get(PROBE_ACTORS_ENV, "").strip()
    if not text:
        return max(1, workers // WORKERS_PER_PROBE_ACTOR)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{PROBE_ACTORS_ENV} must be a whole number >= 1, got {text!r}")
    return int(text)


def _progress(cfg: ScanConfig, stderr: TextIO, remaining: int | None) -> Progress | None:
    """A single-machine scan's progress line (``ScanRun.make_progress``), over the domains
    the file does not hold yet."""
    if cfg.progress == "off":
        return None
    is_tty = {"tty": True, "plain": False}.get(cfg.progress, stderr.isatty())
    interval = TTY_INTERVAL if is_tty else defaults.PROGRESS_INTERVAL_PLAIN
    total = None if remaining is None else max(remaining, 0)
    return Progress(stderr, total=total, interval=interval, is_tty=is_tty)


def _ray() -> Any:
    """The ``ray`` module (untyped to mypy), imported only when a cluster scan starts."""
    import ray

    return ray


def run_cluster(
    cfg: ScanConfig,
    stderr: TextIO,
    items: Iterator[InputItem],
    total: int | None,
    *,
    worker: type | None = None,
) -> int:
    """A whole scan of the list's ``items`` (``total`` of them at most, if known) over a Ray
    cluster (``--cluster``); the exit code.  ``worker``: another class with ``ScanWorker``'s
    methods (benchmarks/cluster.py measures the driver with workers that do not probe)."""
    try:
        ray = _ray()
    except ImportError:
        print("mxscan: --cluster needs Ray: pip install 'mxscan[ray]'", file=stderr)
        return EXIT_USAGE
    store = ResultStore(cfg.out, fresh=cfg.fresh)
    try:
        done = store.open()
        # a cluster scan measures the whole list: a shard's file is not its to resume
        problem = resume_problem(cfg.out, None, fresh=cfg.fresh)
    except StoreError as exc:
        problem = str(exc)
    if problem is not None:
        print(f"mxscan: {problem}", file=stderr)
        store.close()
        return EXIT_USAGE
    local = cfg.cluster is not None and cfg.cluster.startswith(LOCAL)
    temp = tempfile.mkdtemp(prefix=RAY_TEMP_PREFIX) if local else None
    code = EXIT_USAGE
    try:
        try:
            if temp is not None:
                assert cfg.cluster is not None
                workers = int(cfg.cluster[len(LOCAL) :])
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=True, _temp_dir=temp)
            else:
                ray.init(address=cfg.cluster, log_to_driver=True)
        except (OSError, ConnectionError, RuntimeError, ValueError) as exc:
            # e.g. no cluster at the address, or TMPDIR so long that Ray's socket paths
            # exceed the 107 bytes a Unix socket's name may have
            print(f"mxscan: Ray did not start ({type(exc).__name__}: {exc})", file=stderr)
            return code
        code = asyncio.run(_Driver(cfg, stderr, store, done).run(items, total, worker))
        return code
    finally:
        store.close()
        ray.shutdown()
        if temp is not None:
            _leave(temp, code, stderr)


def _leave(temp: str, code: int, stderr: TextIO) -> None:
    """A local cluster's temporary directory: removed after a scan that ended well or was
    stopped, kept for its logs after a failure (an exception leaves ``code`` at EXIT_USAGE)."""
    if code not in (EXIT_OK, EXIT_INTERRUPTED):
        print(f"mxscan: Ray's logs of this scan are kept in {temp}", file=stderr)
        return
    try:
        shutil.rmtree(temp)
    except OSError as exc:
        print(f"mxscan: could not remove Ray's temporary directory {temp}: {exc}", file=stderr)


class _Driver:
    def __init__(self, cfg: ScanConfig, stderr: TextIO, store: ResultStore, done: DigestSet) -> None:
        self.cfg, self.stderr, self.store, self.done = cfg, stderr, store, done
        self.started = now()
        self.written = 0
        self.queue: collections.deque[_Batch] = collections.deque()
        self.stop = asyncio.Event()
        #: Why the scan stopped early (a worker that cannot start, a batch lost too often).
        self.failed = ""
        #: The list broke mid-stream (unreadable): no new domains were taken after it.
        self.reading_failed = ""
        self.progress: Progress | None = None
        #: The workers' pre-flight lines shown so far.
        self.relayed: set[str] = set()
        #: Per probe actor: probes made (the providers' spread), calls served, the requests
        #: they carried and the groups of answers sent back; known at the end.
        self.served: list[tuple[int, int, int, int]] = []
        self.tail = Tail()

    def say(self, message: str) -> None:
        print(f"mxscan: {message}", file=self.stderr, flush=True)

    async def run(self, items: Iterator[InputItem], total: int | None, worker: type | None) -> int:
        ray = _ray()
        probe_actor = ray.remote(**PROBE_ACTOR_OPTIONS)(ProbeActor)
        scan_worker = ray.remote(**SCAN_WORKER_OPTIONS)(worker or ScanWorker)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        try:
            count = 0 if self.cfg.dns_only else probe_actor_count(workers, os.environ)
        except ValueError as exc:
            self.say(str(exc))
            return EXIT_USAGE
        probes = [
            probe_actor.options(name=probe_actor_name(os.getpid(), i), namespace=NAMESPACE).remote(self.cfg)
            for i in range(count)
        ]
        self.new_worker: Callable[[], Any] = lambda: scan_worker.remote(self.cfg, probes)
        self.probes = probes
        self.services = ClusterServices(probes, providers_of(self.cfg)) if probes else None
        self.workers: list[Any] = [None] * workers
        self.progress = _progress(self.cfg, self.stderr, None if total is None else total - len(self.done))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        self.say(f"cluster: {workers} scan workers, {len(probes)} probe actors")
        self.batches = self._batches(items, batch_size(total, workers))
        self.measured = [0] * workers
        watcher = asyncio.create_task(self._watch())
        try:
            work = (self._work(slot) for slot in range(workers))
            results = await asyncio.gather(*work, return_exceptions=True)
        finally:
            watcher.cancel()
        for result in results:
            if isinstance(result, BaseException) and not self.failed:
                self.failed = f"{type(result).__name__}: {result}"
        self.store.flush()
        if self.progress is not None:
            with contextlib.suppress(Exception):  # the last figures: no worker waits any more
                await self._look(self.progress)
            self.progress.finish()
        if self.failed:
            self.say(f"{self.failed}; re-run the same command to resume (results so far: {self.cfg.out})")
            return EXIT_USAGE
        if self.stop.is_set():
            self.say(f"stopped; {self.written} records written this run. Re-run the same command to resume.")
            return EXIT_INTERRUPTED
        if not self.reading_failed:
            with contextlib.suppress(Exception):  # figures for the last line, not the results
                self.served = await asyncio.gather(*(probe.served.remote() for probe in self.probes))
            self._finish()
            return EXIT_OK
        self.say(f"{self.reading_failed}; stopped taking new domains")
        return EXIT_USAGE

    def _batches(self, items: Iterator[InputItem], size: int) -> Iterator[_Batch]:
        """The list's entries not in the file yet, in batches (read lazily: the list once)."""
        batch: list[InputItem] = []
        try:
            for item in items:
                if (item.domain or item.raw) in self.done:
                    continue
                batch.append(item)
                if len(batch) >= size:
                    yield _Batch(batch)
                    batch = []
        except InputError as exc:
            self.reading_failed = str(exc)
        if batch:
            yield _Batch(batch)

    def _next(self) -> _Batch | None:
        if self.stop.is_set() or self.failed:
            return None
        if self.queue:
            return self.queue.popleft()
        return next(self.batches, None)

    async def _work(self, slot: int) -> None:
        """One worker slot: a worker (replaced when lost) measuring batch after batch."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        worker: Any = None
        while (batch := self._next()) is not None:
            try:
                if worker is None:
                    worker = self.new_worker()
                    ready, said = await worker.setup.remote()
                    self.workers[slot] = worker
                    if not ready:
                        self.failed = f"a scan worker could not start: {said.strip()}"
                        return
                    self._relay(said)
                lines = await worker.measure.remote(batch.items)
            except (RayActorError, ActorUnavailableError) as exc:
                batch.attempts += 1
                if batch.attempts >= BATCH_ATTEMPTS:
                    self.failed = f"a batch was lost with its worker {batch.attempts} times ({exc})"
                    return
                self.say(f"a scan worker was lost ({type(exc).__name__}); its batch is handed out again")
                self.queue.append(batch)
                self.workers[slot] = None
                if worker is not None:
                    _ray().kill(worker, no_restart=True)
                worker = None
                continue
            self._write(lines)
            self.measured[slot] += 1
        self.workers[slot] = None
        if worker is not None:
            _ray().kill(worker, no_restart=True)

    def _relay(self, said: str) -> None:
        """A worker's pre-flight warnings, each line once (every worker on a node says the same)."""
        for line in said.splitlines():
            if line and line not in self.relayed:
                self.relayed.add(line)
                print(line, file=self.stderr, flush=True)

    def _write(self, lines: list[Line]) -> None:
        progress = self.progress
        for key, status, line in lines:
            if key is None:
                self.store.append(line)
            elif self.done.add(key):  # a record once: a batch measured again writes only what is new
                self.store.append(line)
                self.written += 1
                if progress is not None:
                    progress.add(status)
        if progress is not None:
            progress.tick()

    async def _watch(self) -> None:
        """The progress line's figures, every ``STATUS_INTERVAL``, until cancelled."""
        progress = self.progress
        if progress is None:
            return
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            # A worker or actor lost right now is the workers' business; the line waits.
            with contextlib.suppress(Exception):
                await self._look(progress)
            progress.tick()

    async def _look(self, progress: Progress) -> None:
        """The probe actors' politeness figures, and from each worker what it waits on."""
        keys: list[tuple[str, str]] = []
        if self.services is not None:
            await self.services.refresh()
            politeness = self.services.politeness(False)
            progress.set_extra("throttled", str(politeness.get("throttled", 0)))
            progress.set_extra("slow", str(politeness.get("slow_hosts", 0)))
            keys = [(str(key[0]), str(key[1])) for key in politeness.get("unresponsive", ())]
        busy = [worker for worker in self.workers if worker is not None]
        figures: list[WorkerStatus] = await asyncio.gather(*(w.status.remote(keys) for w in busy))
        waiting = {key for awaited, _, _, _ in figures for key in awaited}
        deadline = self.services.politeness(False).get("deadline") if self.services is not None else None
        self.tail.update(sum(f[1] for f in figures), len(waiting), deadline)
        progress.set_extra("dns", f"{sum(f[2] for f in figures)} q")
        progress.set_extra("parked", str(sum(f[3] for f in figures)))
        progress.set_extra("waiting", self.tail.text(time.time()) or "0")

    def _finish(self) -> None:
        end = RunEnd(
            finished=True,
            domains=len(self.done),
            started=self.started,
            ended=now(),
            tool="mxscan",
            version=__version__,
        )
        if self.written or not self.store.finished:
            self.store.append_alone(run_line(end))
        per_worker = ", ".join(map(str, self.measured))
        per_actor = ", ".join(str(served[0]) for served in self.served) or "none"
        calls, requests, groups = (sum(served[i] for served in self.served) for i in (1, 2, 3))
        self.say(
            f"cluster: done, {self.written} records written this run ({os.fspath(self.cfg.out)}); "
            f"probes per probe actor: {per_actor}; {calls} probe calls of {requests / max(calls, 1):.1f} "
            f"requests on average, answered in {groups} groups; batches per worker: {per_worker}"
        )

"""The scheduler: targets from a stream, a bounded number working at once, and
targets that wait on someone else "parked" so they never stall the rest.

Theory of operation
-------------------
A dispatcher admits targets from the (lazy) iterator one by one, each into its
own task in one ``asyncio.TaskGroup``.  Two semaphores bound the work:

* ``active`` (``concurrency`` permits): targets doing work of their own
  (parsing, DNS lookups).  A target holds one from admission to the end,
  except while it is *parked*;
* ``room`` (``concurrency + max_parked`` permits): every admitted target, parked
  or not.  Memory is therefore O(concurrency + max_parked), never O(targets).

``parked()`` is the one hook a handler uses: ``async with parked(): await ...``
gives the active permit back while the target waits for something that is not
its own work (a provider's rate limit, a connection slot, a probe another
target started), and takes one again afterwards.  So a queue of targets waiting
for one slow, rate-limited provider never holds the slots the long tail needs:
the scan keeps its throughput on everything else.  Outside the scheduler
``parked()`` does nothing.

* A crash in ``handle`` (any ``Exception``) becomes ``crash(target, exc)``: a
  classified record for that target, never a lost target or a dead scan.
* ``stop`` (SIGINT/SIGTERM) stops admissions; work in flight gets ``grace``
  seconds, then is cancelled.  Cancelled targets are not emitted, so a resumed
  scan redoes exactly them.
* The scheduler knows targets, permits and deadlines -- nothing about DNS, SMTP
  or storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["RunStats", "parked", "run_targets"]

T = TypeVar("T")
R = TypeVar("R")


class _Permit:
    """The active permit of the target running in this task, and whether it holds it."""

    __slots__ = ("active", "held", "stats")

    def __init__(self, active: asyncio.Semaphore, stats: RunStats[object]) -> None:
        self.active = active
        self.stats = stats
        self.held = True


#: The permit of the target running in this task (None outside a scan).
_permit: contextvars.ContextVar[_Permit | None] = contextvars.ContextVar("mxscan_permit", default=None)


@dataclass(slots=True)
class RunStats(Generic[T]):
    started: int = 0
    emitted: int = 0
    crashed: int = 0
    abandoned: int = 0
    stopped: bool = False
    seconds: float = 0.0
    parked: int = 0
    peak_parked: int = 0


@contextlib.asynccontextmanager
async def parked() -> AsyncIterator[None]:
    """Wait without holding an active permit (see the module docstring)."""
    permit = _permit.get()
    if permit is None or not permit.held:
        yield
        return
    stats = permit.stats
    permit.held = False
    permit.active.release()
    stats.parked += 1
    stats.peak_parked = max(stats.peak_parked, stats.parked)
    try:
        yield
    finally:
        stats.parked -= 1
        await permit.active.acquire()  # cancelled while waiting: held stays False, nothing leaks
        permit.held = True


class _Run(Generic[T, R]):
    """One ``run_targets`` call: its permits, the tasks in flight, and the three roles
    (a target's task, the dispatcher, the watchdog) that share them."""

    def __init__(
        self,
        targets: Iterator[T],
        handle: Callable[[T], Awaitable[R]],
        emit: Callable[[T, R], None],
        crash: Callable[[T, Exception], R],
        *,
        concurrency: int,
        max_parked: int,
        stop: asyncio.Event,
        stats: RunStats[T],
    ) -> None:
        self.targets = targets
        self.handle = handle
        self.emit = emit
        self.crash = crash
        self.stop = stop
        self.stats = stats
        self.active = asyncio.Semaphore(concurrency)
        self.room = asyncio.Semaphore(concurrency + max_parked)
        self.running: set[asyncio.Task[None]] = set()

    async def one(self, target: T) -> None:
        permit = _Permit(self.active, self.stats)  # type: ignore[arg-type]
        _permit.set(permit)  # each task runs in its own copy of the context
        try:
            try:
                result = await self.handle(target)
            except Exception as exc:
                self.stats.crashed += 1
                result = self.crash(target, exc)
            self.emit(target, result)
            self.stats.emitted += 1
        finally:
            if permit.held:
                self.active.release()
            self.room.release()

    async def dispatch(self, group: asyncio.TaskGroup) -> None:
        while not self.stop.is_set():
            await self.room.acquire()
            await self.active.acquire()
            target = self._next() if not self.stop.is_set() else None
            if target is None:
                self.active.release()
                self.room.release()
                return
            self.stats.started += 1
            task = group.create_task(self.one(target[0]))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    def _next(self) -> tuple[T] | None:
        """The next target (boxed: a target may itself be None), or None at the end."""
        try:
            return (next(self.targets),)
        except StopIteration:
            return None

    async def watchdog(
        self, dispatcher: asyncio.Task[None], grace: float, tick: Callable[[], None] | None, interval: float
    ) -> None:
        # Ticks progress; once stop is set, bounds the grace period of work in flight.
        deadline: float | None = None
        while not (dispatcher.done() and not self.running):
            if tick is not None:
                tick()
            if self.stop.is_set() and deadline is None:
                self.stats.stopped = True
                deadline = time.monotonic() + grace
                if not dispatcher.done():
                    dispatcher.cancel()  # it may be blocked waiting for a permit
            if deadline is not None and time.monotonic() >= deadline:
                for task in list(self.running):
                    self.stats.abandoned += 1
                    task.cancel()
                return
            await asyncio.sleep(interval)


async def run_targets(
    targets: Iterator[T],
    handle: Callable[[T], Awaitable[R]],
    emit: Callable[[T, R], None],
    crash: Callable[[T, Exception], R],
    *,
    concurrency: int,
    max_parked: int = 0,
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    tick: Callable[[], None] | None = None,
    tick_interval: float = 0.2,
    stats: RunStats[T] | None = None,
) -> RunStats[T]:
    """Run every target; ``stats`` (optional) is filled live, for progress displays."""
    if concurrency < 1 or max_parked < 0:
        raise ValueError("concurrency must be >= 1 and max_parked >= 0")
    stop = stop or asyncio.Event()
    stats = stats if stats is not None else RunStats()
    began = time.monotonic()
    run = _Run(
        targets, handle, emit, crash, concurrency=concurrency, max_parked=max_parked, stop=stop, stats=stats
    )
    async with asyncio.TaskGroup() as group:
        dispatcher = group.create_task(run.dispatch(group))
        group.create_task(run.watchdog(dispatcher, grace, tick, tick_interval))
    if tick is not None:
        tick()
    stats.stopped = stats.stopped or stop.is_set()
    stats.seconds = time.monotonic() - began
    return stats

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
    active = asyncio.Semaphore(concurrency)
    room = asyncio.Semaphore(concurrency + max_parked)
    running: set[asyncio.Task[None]] = set()

    async def one(target: T) -> None:
        permit = _Permit(active, stats)  # type: ignore[arg-type]
        _permit.set(permit)  # each task runs in its own copy of the context
        try:
            try:
                result = await handle(target)
            except Exception as exc:
                stats.crashed += 1
                result = crash(target, exc)
            emit(target, result)
            stats.emitted += 1
        finally:
            if permit.held:
                active.release()
            room.release()

    async def dispatch(group: asyncio.TaskGroup) -> None:
        while not stop.is_set():
            await room.acquire()
            await active.acquire()
            if stop.is_set():
                active.release()
                room.release()
                return
            try:
                target = next(targets)
            except StopIteration:
                active.release()
                room.release()
                return
            stats.started += 1
            task = group.create_task(one(target))
            running.add(task)
            task.add_done_callback(running.discard)

    async def watchdog(dispatcher: asyncio.Task[None]) -> None:
        # Ticks progress; once stop is set, bounds the grace period of work in flight.
        deadline: float | None = None
        while not (dispatcher.done() and not running):
            if tick is not None:
                tick()
            if stop.is_set() and deadline is None:
                stats.stopped = True
                deadline = time.monotonic() + grace
                if not dispatcher.done():
                    dispatcher.cancel()  # it may be blocked waiting for a permit
            if deadline is not None and time.monotonic() >= deadline:
                for task in list(running):
                    stats.abandoned += 1
                    task.cancel()
                return
            await asyncio.sleep(tick_interval)

    async with asyncio.TaskGroup() as group:
        dispatcher = group.create_task(dispatch(group))
        group.create_task(watchdog(dispatcher))
    if tick is not None:
        tick()
    stats.stopped = stats.stopped or stop.is_set()
    stats.seconds = time.monotonic() - began
    return stats

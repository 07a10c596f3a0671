"""The scheduler: a fixed pool of workers pulling targets from a stream.

Theory of operation
-------------------
``run_targets`` starts ``concurrency`` workers in one ``asyncio.TaskGroup``.
Each worker takes the next target from the (lazy) iterator, awaits
``handle(target)`` and passes the result to ``emit``.  Memory is therefore
O(concurrency): the target list is never materialised.

* A crash in ``handle`` (any ``Exception``) becomes ``crash(target, exc)`` -- a
  classified record for that target -- so a bug never loses a target or kills
  the scan.
* ``stop`` (set by SIGINT/SIGTERM) makes workers take no new targets; work in
  flight gets ``grace`` seconds, then is cancelled.  Cancelled targets are not
  emitted, so a resumed scan redoes exactly them.
* The scheduler knows targets, deadlines and counts -- nothing about DNS, SMTP
  or storage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["RunStats", "run_targets"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class RunStats(Generic[T]):
    started: int = 0
    emitted: int = 0
    crashed: int = 0
    abandoned: int = 0
    stopped: bool = False
    seconds: float = 0.0


async def run_targets(
    targets: Iterator[T],
    handle: Callable[[T], Awaitable[R]],
    emit: Callable[[T, R], None],
    crash: Callable[[T, Exception], R],
    *,
    concurrency: int,
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    tick: Callable[[], None] | None = None,
    tick_interval: float = 0.2,
) -> RunStats[T]:
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    stop = stop or asyncio.Event()
    stats: RunStats[T] = RunStats()
    began = time.monotonic()
    exhausted = False

    def next_target() -> tuple[bool, T | None]:
        nonlocal exhausted
        if exhausted or stop.is_set():
            return False, None
        try:
            return True, next(targets)
        except StopIteration:
            exhausted = True
            return False, None

    async def worker() -> None:
        while True:
            has, target = next_target()
            if not has:
                return
            stats.started += 1
            try:
                result = await handle(target)  # type: ignore[arg-type]
            except Exception as exc:
                stats.crashed += 1
                result = crash(target, exc)  # type: ignore[arg-type]
            emit(target, result)  # type: ignore[arg-type]
            stats.emitted += 1

    async def watchdog(workers: list[asyncio.Task[None]]) -> None:
        # Ticks progress and, once stop is set, bounds the grace period.
        deadline: float | None = None
        while not all(w.done() for w in workers):
            if tick is not None:
                tick()
            if stop.is_set() and deadline is None:
                stats.stopped = True
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() >= deadline:
                for w in workers:
                    if not w.done():
                        stats.abandoned += 1
                        w.cancel()
                return
            await asyncio.sleep(tick_interval)

    async with asyncio.TaskGroup() as group:
        workers = [group.create_task(worker()) for _ in range(concurrency)]
        group.create_task(watchdog(workers))
    if tick is not None:
        tick()
    stats.stopped = stats.stopped or stop.is_set()
    stats.seconds = time.monotonic() - began
    return stats

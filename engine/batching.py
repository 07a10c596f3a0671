"""Run a CPU-bound step for items that become ready close together, back to back.

Why: a probe process interleaves many connections; each finished one used to run
its CPU-heavy analysis (certificate facts, signature checks) at once, between
other connections' handshakes and reads.  Measured on the 2-core machines, the
same analysis costs ~1.5x as much CPU interleaved like that as run back to back
(caches and branch predictors stay warm for one kind of work), and the
connections around it got cheaper too when their completions lined up.  A short
wait for company is cheap for a scan that keeps hundreds of items in flight.

How: callers wrap the I/O that will produce an item in ``upcoming()`` and then
``await run(item)``.  Pending items run together, at most ``size`` at a time:
when ``size`` are waiting, when nothing upcoming is still in flight (no more
company is coming: a lone caller never waits), or ``wait`` seconds after the
first one arrived.  Each caller gets its own item's result, or the exception its
item raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, step: Callable[[T], R], *, size: int = 32, wait: float = 0.02) -> None:
        if size < 1 or wait < 0:
            raise ValueError("Batcher needs size >= 1 and wait >= 0")
        self._step = step
        self.size = size
        self.wait = wait
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._upcoming = 0
        self._handle: asyncio.Handle | None = None
        self._soon = False  # the handle runs on the next iteration (not a timer)
        self._handle_loop: asyncio.AbstractEventLoop | None = None
        #: How many batches ran and how many items they held (benchmarks print them).
        self.batches = 0
        self.items = 0

    @contextlib.contextmanager
    def upcoming(self) -> Iterator[None]:
        """Mark I/O in flight that will (probably) produce an item."""
        self._upcoming += 1
        try:
            yield
        finally:
            self._upcoming -= 1
            self._schedule()

    async def run(self, item: T) -> R:
        """``step(item)``, run with whatever other items are pending."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        if self._handle is not None and self._handle_loop is not loop:
            # A handle left by a loop that has since stopped never fires: forget it and
            # the futures of that loop, whose callers are gone.
            self._handle = None
            self._pending = [(i, f) for i, f in self._pending if f.get_loop() is loop]
        if len(self._pending) >= self.size or self._upcoming == 0:
            if self._handle is not None and self._soon:
                return  # a drain is already due on the next loop iteration
            if self._handle is not None:
                self._handle.cancel()
            self._handle, self._soon = loop.call_soon(self._drain), True
        elif self._handle is None:
            self._handle, self._soon = loop.call_later(self.wait, self._drain), False
        self._handle_loop = loop

    def _drain(self) -> None:
        self._handle = None
        batch, self._pending = self._pending[: self.size], self._pending[self.size :]
        self.batches += 1
        self.items += len(batch)
        for item, future in batch:
            if future.done():  # the caller was cancelled while it waited
                continue
            try:
                result = self._step(item)
            except Exception as exc:  # handed to the item's own caller
                future.set_exception(exc)
            else:
                future.set_result(result)
        self._schedule()  # more than ``size`` were waiting: the rest go next

"""A scan worker's probe requests to one probe actor, gathered into batched calls (issue #14).

Why: a Ray actor call costs ~1.3 ms of CPU (caller and callee), and a scan worker used to make
one per probed (host, address); a call carrying 50 requests costs ~30 us a request.

How: ``Calls.call`` queues a request; the queue goes out in one call when ``size`` requests
wait or ``wait`` seconds after the first one arrived.  The actor answers a call as a stream
(``serve``: a Ray streaming generator), each answer as soon as its probe finished -- a
silent host's probe (seconds to minutes) never holds back the answers of the fast probes of
its batch.  Answers that finish within ``linger`` of each other travel together.

Faults: a probe actor that dies is restarted by Ray with fresh state (``max_restarts``); the
stream ends with an error, and the requests it had not answered yet are sent again ``again``
seconds later (while Ray restarts the actor), at most ``attempts`` times each, as
``max_task_retries`` retried a lost call.  The stream itself is
never retried by Ray: a retried stream's answers would be matched to requests by position.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANSWER_LINGER",
    "BATCH_REQUESTS",
    "BATCH_WAIT",
    "CALL_ATTEMPTS",
    "RESEND_DELAY",
    "Answer",
    "Calls",
    "Request",
    "answers_as_they_finish",
]

#: One request: its id (unique per ``Calls``), its kind and two arguments.
Request = tuple[int, str, str, str]
#: One answer: the request's id, whether it succeeded, its result or the exception it raised.
Answer = tuple[int, bool, Any]
#: Sends one batch; the answers in groups, as they come (ends early with ``lost`` if the actor died).
Send = Callable[[list[Request]], AsyncIterator[list[Answer]]]

#: Requests per call at most.
BATCH_REQUESTS = 64
#: Seconds a request waits for company before its batch goes out: short against a probe's own
#: duration (a TLS handshake alone is tens of ms over the Internet), long enough to gather
#: several requests at a worker's rate (~100-200 new (host, address) probes a second).
BATCH_WAIT = 0.02
#: Seconds an answer waits for the answers that finish right after it, to travel together.
ANSWER_LINGER = 0.01
#: Times one request is sent before the actor's loss is its caller's error.
CALL_ATTEMPTS = 3
#: Seconds before the requests of a lost call are sent again (a restart takes about a second).
RESEND_DELAY = 1.0


@dataclass(slots=True)
class _Pending:
    kind: str
    first: str
    second: str
    future: asyncio.Future[Any]
    attempts: int = field(default=0)


class Calls:
    """The requests of one scan worker to one probe actor."""

    def __init__(
        self,
        send: Send,
        lost: tuple[type[BaseException], ...],
        *,
        size: int = BATCH_REQUESTS,
        wait: float = BATCH_WAIT,
        attempts: int = CALL_ATTEMPTS,
        again: float = RESEND_DELAY,
    ) -> None:
        if size < 1 or wait < 0 or attempts < 1 or again < 0:
            raise ValueError("Calls needs size >= 1, wait >= 0, attempts >= 1 and again >= 0")
        self.send, self.lost = send, lost
        self.size, self.wait, self.attempts, self.again = size, wait, attempts, again
        self.ids = itertools.count()
        self.queue: dict[int, _Pending] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.streams: set[asyncio.Task[None]] = set()
        #: Calls made and requests they carried (the benchmark prints them).
        self.calls = 0
        self.requests = 0

    async def call(self, kind: str, first: str, second: str) -> Any:
        """The actor's answer to one request (its result, or the exception it raised)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(next(self.ids), _Pending(kind, first, second, future))
        return await future

    def _queue(self, rid: int, pending: _Pending) -> None:
        self.queue[rid] = pending
        if len(self.queue) >= self.size:
            self._flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.wait, self._flush)

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch = {rid: p for rid, p in self.queue.items() if not p.future.done()}  # callers gone
        self.queue = {}
        if batch:
            task = asyncio.get_running_loop().create_task(self._stream(batch))
            self.streams.add(task)
            task.add_done_callback(self.streams.discard)

    async def _stream(self, batch: dict[int, _Pending]) -> None:
        self.calls += 1
        self.requests += len(batch)
        for pending in batch.values():
            pending.attempts += 1
        requests = [(rid, p.kind, p.first, p.second) for rid, p in batch.items()]
        try:
            async for answers in self.send(requests):
                _settle(batch, answers)
        except self.lost as exc:
            self._again(batch, exc)
            return
        except Exception as exc:  # not an actor's loss: each unanswered caller gets it
            _fail(batch.values(), exc)
            return
        _fail(batch.values(), RuntimeError("the probe actor's stream ended without these answers"))

    def _again(self, batch: dict[int, _Pending], exc: BaseException) -> None:
        """The actor was lost: its unanswered requests go out again, ``again`` seconds later."""
        _fail((p for p in batch.values() if p.attempts >= self.attempts), exc)
        left = {rid: p for rid, p in batch.items() if not p.future.done()}
        if left:
            asyncio.get_running_loop().call_later(self.again, self._requeue, left)

    def _requeue(self, batch: dict[int, _Pending]) -> None:
        for rid, pending in batch.items():
            if not pending.future.done():
                self._queue(rid, pending)


def _settle(batch: dict[int, _Pending], answers: list[Answer]) -> None:
    for rid, ok, value in answers:
        pending = batch.pop(rid, None)
        if pending is None or pending.future.done():
            continue
        if ok:
            pending.future.set_result(value)
        else:
            pending.future.set_exception(value)


def _fail(pendings: Iterable[_Pending], exc: BaseException) -> None:
    for pending in pendings:
        if not pending.future.done():
            pending.future.set_exception(exc)


async def answers_as_they_finish(
    requests: list[Request],
    serve: Callable[[str, str, str], Awaitable[Any]],
    linger: float = ANSWER_LINGER,
) -> AsyncIterator[list[Answer]]:
    """``serve`` of every request, concurrently; the answers in groups as they finish (a group:
    one finished answer and those that finish within ``linger`` after it)."""
    tasks: dict[asyncio.Future[Any], int] = {
        asyncio.ensure_future(serve(kind, a, b)): rid for rid, kind, a, b in requests
    }
    pending: set[asyncio.Future[Any]] = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending and linger > 0:
                more, pending = await asyncio.wait(pending, timeout=linger)
                done |= more
            yield [_answer(tasks[task], task) for task in done]
    finally:
        for task in pending:
            task.cancel()


def _answer(rid: int, task: asyncio.Future[Any]) -> Answer:
    exc = task.exception()
    return (rid, False, exc) if exc is not None else (rid, True, task.result())

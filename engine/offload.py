"""Run named async handlers in a forked child process; the parent awaits their results.

Why: a scan is CPU-bound on one core (the event loop), and the machine has
more.  Work that is self-contained per call (an SMTP probe, a policy fetch)
moves to a child with its own event loop, so the parent keeps only DNS,
assembly and writing.  What must be global stays in one place: the child owns
every connection limit and back-off state, the parent owns single-flight and
the results file.

Protocol: a Unix stream socketpair; each frame is a 4-byte big-endian length
and a pickle of ``(call_id, name, args)`` (request) or ``(call_id, ok, value)``
(reply; ``value`` is the handler's result or, when not ``ok``, a bounded text
naming the exception).  Both ends are this program (the child is a fork), so
pickle carries typed records without a schema round trip.

Failure: a handler's exception comes back as ``OffloadError``; if the child
dies, every pending and later call raises ``OffloadLost`` at once (never a
hang).  The child exits when its socket closes (the parent ended or died) and
ignores SIGINT/SIGTERM: stopping is the parent's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from engine.peertext import exception_text

__all__ = ["Handler", "Offload", "OffloadError", "OffloadLost", "Setup", "fork_offload"]

Handler = Callable[..., Awaitable[Any]]
#: Runs in the child's event loop: the handlers, inside a stack that closes them at exit.
Setup = Callable[[contextlib.AsyncExitStack], Awaitable[Mapping[str, Handler]]]

_HEADER = struct.Struct(">I")
#: A frame larger than this is a bug or corruption (a probe result is a few KiB).
MAX_FRAME = 64 * 1024 * 1024


class OffloadError(Exception):
    """The handler raised in the child; the message names the exception."""


class OffloadLost(OffloadError):
    """The child process is gone; no call can complete."""


def _frame(obj: object) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class _Framer:
    """Splits a byte stream into frames (bounded)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        found = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise OffloadLost(f"frame of {size} bytes exceeds {MAX_FRAME}")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            found.append(pickle.loads(self._buffer[_HEADER.size : end]))
            del self._buffer[:end]
        return found


class _ParentSide(asyncio.Protocol):
    def __init__(self, offload: Offload) -> None:
        self.offload = offload
        self.framer = _Framer()

    def data_received(self, data: bytes) -> None:
        try:
            replies = self.framer.feed(data)
        except Exception as exc:  # corrupt stream: nothing later can be trusted
            self.offload._lose(f"unreadable reply ({exception_text(exc)})")
            return
        for call_id, ok, value in replies:
            future = self.offload._pending.pop(call_id, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(OffloadError(value))

    def connection_lost(self, exc: Exception | None) -> None:
        self.offload._lose("the probe process exited")


class Offload:
    """The parent's handle on a forked child: ``await call(name, *args)``."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._transport: asyncio.Transport | None = None
        self._lost: str | None = None
        self.calls = 0

    async def start(self, startup: float = 60.0) -> None:
        """Connect and wait until the child's setup has finished (its handlers answer)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(lambda: _ParentSide(self), self._sock)
        self._transport = transport
        try:
            await asyncio.wait_for(self.call(_PING), startup)
        except TimeoutError:
            self._lose(f"the probe process did not start within {startup:g}s")
            raise OffloadLost(self._lost or "") from None

    @property
    def lost(self) -> str | None:
        """Why the child is gone (every call now raises OffloadLost), or None while it serves."""
        return self._lost

    def _lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(OffloadLost(self._lost))

    async def call(self, name: str, *args: Any) -> Any:
        if self._lost is not None:
            raise OffloadLost(self._lost)
        if self._transport is None:
            raise OffloadLost("offload not started")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self.calls += 1
        self._transport.write(_frame((call_id, name, args)))
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    def kill(self) -> None:
        """Stop and reap the child now, whatever state it is in (idempotent)."""
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    async def aclose(self, grace: float = 10.0) -> None:
        """Close the socket (the child finishes its calls' replies and exits); reap it."""
        if self._transport is not None:
            self._transport.close()
        else:
            self._sock.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
            except ChildProcessError:
                return
            if pid:
                return
            await asyncio.sleep(0.02)
        self.kill()


class _ChildSide(asyncio.Protocol):
    def __init__(self, handlers: Mapping[str, Handler], closed: asyncio.Event) -> None:
        self.handlers = handlers
        self.closed = closed
        self.framer = _Framer()
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.framer.feed(data)
        except Exception:
            assert self.transport is not None
            self.transport.close()
            return
        for call_id, name, args in requests:
            task = asyncio.get_running_loop().create_task(self._serve(call_id, name, args))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _serve(self, call_id: int, name: str, args: tuple[Any, ...]) -> None:
        try:
            handler = self.handlers[name]
            reply = (call_id, True, await handler(*args))
        except Exception as exc:  # reported to the caller, who classifies it
            reply = (call_id, False, exception_text(exc))
        try:
            frame = _frame(reply)
        except Exception as exc:  # an unpicklable result is a bug: say so, do not hang
            frame = _frame((call_id, False, f"unpicklable result: {exception_text(exc)}"))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


_PING = "__ping__"


async def _pong() -> bool:
    return True


async def _child_main(sock: socket.socket, setup: Setup) -> None:
    async with contextlib.AsyncExitStack() as stack:
        handlers = {**(await setup(stack)), _PING: _pong}
        closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: _ChildSide(handlers, closed), sock)
        await closed.wait()


def fork_offload(setup: Setup, run: Callable[[Coroutine[Any, Any, None]], object]) -> Offload:
    """Fork the child now (call before the parent's event loop starts: a fork must not copy
    a running loop).  ``run`` drives the child's loop (``uvloop.run`` or ``asyncio.run``);
    ``setup`` runs inside it.  The parent must ``await offload.start()`` in its own loop."""
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            parent_sock.close()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            run(_child_main(child_sock, setup))
        except BaseException:  # whatever happens, the child must not return into the parent's code
            traceback.print_exc()
            code = 70
        finally:
            os._exit(code)
    child_sock.close()
    return Offload(parent_sock, pid)

"""The SMTP STARTTLS exchange: a thin async shell around the reply parser.

Theory of operation
-------------------
One connection walks connect → banner → EHLO → STARTTLS → TLS → EHLO → QUIT
and records what it saw in an ``Observation``.  ``_Wire`` is an
``asyncio.Protocol`` that feeds every received byte into the pure
``ReplyParser`` (which enforces the byte caps) and hands complete replies to
the walker; every wait has its own deadline (``SmtpTimeouts``).  Failures are
translated to the closed status vocabulary in exactly one place,
``_classify``; nothing is ever raised into the event loop.  The reply to
STARTTLS is the last one parsed in the clear: the bytes after it, whichever
read brings them, go through ``TlsClient`` (probes/smtp/starttls.py), whose
preamble discards and counts what precedes the server's first TLS record
(RFC 3207 §4.2).  The TLS handshake runs with verification OFF so the
presented chain is always captured; verification happens afterwards, in the
pure certificate core.  mxscan never sends MAIL, RCPT or DATA.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from engine.peertext import EXCEPTION_TEXT_LIMIT, bound_text, exception_text
from engine.status import Status
from probes.smtp.ehlo import EhloInfo, parse_ehlo
from probes.smtp.records import Phase, Starttls
from probes.smtp.reply import Reply, ReplyParser, SmtpProtocolError
from probes.smtp.starttls import TlsClient
from probes.tls.capture import capture_context, presented_chain

__all__ = ["Observation", "SmtpTimeouts", "client_tls_context", "converse"]

#: SMTP port.  Port 25 is what senders use; the test world can use another one
#: (each simulated host has its own address, so one port number serves all).
SMTP_PORT = 25

#: Per-phase SMTP deadlines in seconds; the study used 20 s per operation.
SMTP_CONNECT_TIMEOUT = 10.0
SMTP_TIMEOUT = 20.0

#: The whole exchange with one address (connect to QUIT): bounds a server that answers
#: each phase just inside its own deadline.
SMTP_HOST_TIMEOUT = 90.0

#: Bound on recorded peer text (banner, last reply); the parser bounds what is read.
TEXT_LIMIT = 512


@dataclass(frozen=True, slots=True)
class SmtpTimeouts:
    """Per-phase deadlines in seconds (the study used 20 s per operation)."""

    connect: float = 10.0
    banner: float = 20.0
    command: float = 20.0
    handshake: float = 20.0
    quit: float = 2.0
    #: The whole exchange with one host, all phases together: a server that answers
    #: every phase just inside its deadline (a slow drip) still ends here.
    total: float = 90.0


@dataclass(slots=True)
class Observation:
    """What one connection saw; mutable while the exchange runs."""

    phase: Phase = Phase.CONNECT
    status: Status = Status.SUCCESS
    detail: str = ""
    starttls: Starttls = Starttls.UNKNOWN
    banner_code: int | None = None
    banner: str = ""
    ehlo: EhloInfo | None = None
    ehlo_tls: EhloInfo | None = None
    last_code: int | None = None
    last_text: str = ""
    tls_version: str = ""
    tls_cipher: str = ""
    tls_bits: int = 0
    chain: list[bytes] = field(default_factory=list)
    plaintext_injection: bool = False
    #: Milliseconds spent in each phase reached, in order (the benchmark's per-phase p50/p99).
    phase_ms: dict[str, float] = field(default_factory=dict)
    since: float = 0.0

    def enter(self, phase: Phase) -> None:
        """Close the current phase's clock and start ``phase``'s."""
        now = time.perf_counter()
        self.phase_ms[self.phase.value] = round((now - self.since) * 1000, 3)
        self.phase, self.since = phase, now

    def saw(self, reply: Reply) -> None:
        self.last_code = reply.code
        self.last_text = bound_text(reply.text, TEXT_LIMIT)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Closed(Exception):
    """The peer closed the connection (or reset it)."""


class _Wire(asyncio.Protocol):
    """Bytes from the socket to replies: SMTP in the clear, the STARTTLS switch, then TLS."""

    def __init__(self) -> None:
        self.parser = ReplyParser()
        self.replies: deque[Reply] = deque()
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        #: Set with ``expect_tls``: the reply to STARTTLS is the last the parser reads in the
        #: clear; every byte after it goes here (its preamble discards injected ones).
        self.tls: TlsClient | None = None
        self._switched = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is a Transport by behaviour, not by class: never isinstance() here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            if self.tls is not None:
                data = self._through_tls(data)
            if data:
                self.replies.extend(self.parser.feed(data))
        except Exception as exc:  # classified by the walker; never raised into the event loop
            self._fail(exc)
        self._wake()

    def _through_tls(self, data: bytes) -> bytes:
        """The clear text ``data`` carries: SMTP up to the STARTTLS reply, TLS after it."""
        tls = self.tls
        assert tls is not None
        if not self._switched:
            reply, data = self.parser.feed_one(data)
            if reply is None:
                return b""
            self.replies.append(reply)
            self._switched = True
        try:
            clear = tls.receive(data)
        except ssl.SSLError as exc:
            if not tls.established:
                raise  # a failed handshake: the walker classifies it in phase TLS
            raise _Closed(f"TLS session ended: {exc}") from None
        outgoing = tls.outgoing()
        if outgoing and self.transport is not None:
            self.transport.write(outgoing)
        return clear

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, SmtpProtocolError):
            self.replies.extend(exc.replies)
        self.error = exc
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        self.error = self.error or _Closed("peer closed the connection")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = self.error or _Closed(f"connection lost: {exc}" if exc else "peer closed the connection")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def reply(self, within: float) -> Reply:
        """The next complete reply, waiting at most ``within`` seconds for it."""
        if not self.replies:
            await self._until(self.replies.__len__, within)
        return self.replies.popleft()

    async def handshake(self, within: float) -> TlsClient:
        """The established TLS session, waiting at most ``within`` seconds for it."""
        tls = self.tls
        assert tls is not None
        if not tls.established:
            await self._until(lambda: tls.established, within)
        return tls

    async def _until(self, ready: Callable[[], object], within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not ready():
            if self.error is not None:
                raise self.error
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            # A bare timer on the waiter: asyncio.timeout() costs several times more, and
            # this wait runs six times per host.
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(remaining, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()

    def send(self, line: bytes) -> None:
        # What ended the connection is why the exchange stopped: a protocol error seen in
        # the same read as a valid reply, not "already closed" (our own abort).
        if self.error is not None:
            raise self.error
        if self.transport is None or self.transport.is_closing():
            raise _Closed("connection already closed")
        tls = self.tls
        self.transport.write(tls.encrypt(line) if tls is not None and tls.established else line)

    def expect_tls(self, ctx: ssl.SSLContext, host: str) -> None:
        """The next reply answers STARTTLS: nothing after it is parsed as SMTP in the clear."""
        self.tls = TlsClient(ctx, host)

    def start_tls(self) -> None:
        """Send the ClientHello (the server said 220 to STARTTLS)."""
        assert self.tls is not None and self.transport is not None
        self.transport.write(self.tls.start())


def client_tls_context() -> ssl.SSLContext:
    """The STARTTLS client context: completes handshakes with anything, to capture what is
    presented (probes/tls/capture.py); verification happens afterwards."""
    return capture_context(ssl.SSLContext)


def _classify(obs: Observation, exc: BaseException) -> None:
    """The one table from exceptions to (status, detail), by the phase reached."""
    detail = exception_text(exc)
    if isinstance(exc, SmtpProtocolError):
        obs.status, obs.detail = Status.PROTOCOL_ERROR, bound_text(str(exc), EXCEPTION_TEXT_LIMIT)
    elif isinstance(exc, TimeoutError):
        timed_out = Status.CONNECTION_TIMEOUT if obs.phase is Phase.CONNECT else Status.IO_TIMEOUT
        obs.status, obs.detail = timed_out, f"timeout in phase {obs.phase}"
        if obs.phase is Phase.TLS:
            obs.status = Status.TLS_HANDSHAKE_ERROR
    elif isinstance(exc, ConnectionRefusedError):
        obs.status, obs.detail = Status.CONNECTION_REFUSED, detail
    elif obs.phase is Phase.TLS and isinstance(exc, ssl.SSLError | ConnectionError | _Closed):
        obs.status, obs.detail = Status.TLS_HANDSHAKE_ERROR, detail
    elif isinstance(exc, _Closed | ConnectionError):
        obs.status, obs.detail = Status.CONNECTION_CLOSED, detail
    else:
        obs.status, obs.detail = Status.UNKNOWN_ERROR, detail


async def converse(
    address: str,
    port: int,
    host: str,
    *,
    ehlo_name: str,
    tls_context: ssl.SSLContext,
    timeouts: SmtpTimeouts,
) -> Observation:
    """One STARTTLS exchange with ``address``:``port`` for MX ``host``; never raises
    for network or peer behaviour (the observation says what happened)."""
    obs = Observation(since=time.perf_counter())
    loop = asyncio.get_running_loop()
    wire: _Wire | None = None
    try:
        async with asyncio.timeout(timeouts.total):
            async with asyncio.timeout(timeouts.connect):
                _, wire = await loop.create_connection(_Wire, address, port)
            await _walk(obs, wire, host, ehlo_name, tls_context, timeouts)
    except Exception as exc:
        _classify(obs, exc)
    finally:
        if wire is not None and wire.transport is not None:
            wire.transport.abort()
    if obs.phase is not Phase.DONE and obs.phase.value not in obs.phase_ms:
        obs.enter(obs.phase)  # where it stopped: the time spent waiting there
    return obs


async def _walk(
    obs: Observation, wire: _Wire, host: str, ehlo_name: str, ctx: ssl.SSLContext, timeouts: SmtpTimeouts
) -> None:
    obs.enter(Phase.BANNER)
    banner = await wire.reply(timeouts.banner)
    obs.saw(banner)
    obs.banner_code, obs.banner = banner.code, obs.last_text
    if banner.code != 220:
        obs.status, obs.detail = Status.APPLICATION_ERROR, f"banner {banner.code}"
        return
    obs.enter(Phase.EHLO)
    obs.ehlo = await _ehlo(obs, wire, ehlo_name, timeouts, Status.APPLICATION_ERROR, "EHLO")
    if obs.ehlo is None:
        return
    if not obs.ehlo.starttls:
        obs.starttls = Starttls.NO
        await _quit(obs, wire, timeouts)
        return
    obs.starttls = Starttls.YES
    obs.enter(Phase.STARTTLS)
    wire.expect_tls(ctx, host)
    reply = await _ask(obs, wire, b"STARTTLS\r\n", timeouts)
    if reply.code != 220:
        obs.status, obs.detail = Status.APPLICATION_ERROR, f"STARTTLS {reply.code}"
        return
    obs.enter(Phase.TLS)
    try:
        wire.start_tls()
        tls = await wire.handshake(timeouts.handshake)
    finally:
        # RFC 3207 §4.2: what came between the 220 and the first TLS record was discarded
        assert wire.tls is not None
        obs.plaintext_injection = wire.tls.preamble.injected
    ssl_object = tls.ssl
    obs.tls_version = ssl_object.version() or ""
    name, _, bits = ssl_object.cipher() or ("", "", 0)
    obs.tls_cipher, obs.tls_bits = name, bits or 0
    obs.chain = presented_chain(ssl_object)
    obs.enter(Phase.EHLO_TLS)
    failed = Status.POST_TLS_APPLICATION_ERROR
    obs.ehlo_tls = await _ehlo(obs, wire, ehlo_name, timeouts, failed, "EHLO after TLS")
    if obs.ehlo_tls is None:
        return
    await _quit(obs, wire, timeouts)


async def _ask(obs: Observation, wire: _Wire, command: bytes, timeouts: SmtpTimeouts) -> Reply:
    """Send one command and read its reply, which ``obs`` keeps as the last one seen."""
    wire.send(command)
    reply = await wire.reply(timeouts.command)
    obs.saw(reply)
    return reply


async def _ehlo(
    obs: Observation, wire: _Wire, ehlo_name: str, timeouts: SmtpTimeouts, failed: Status, what: str
) -> EhloInfo | None:
    """EHLO (RFC 5321 §4.1.1.1), in the clear or after TLS: what it advertised, or None with
    ``obs`` failed as ``failed`` ("<what> <code>") when the reply is not 250."""
    reply = await _ask(obs, wire, b"EHLO " + ehlo_name.encode("ascii") + b"\r\n", timeouts)
    if reply.code != 250:
        obs.status, obs.detail = failed, f"{what} {reply.code}"
        return None
    return parse_ehlo(reply)


async def _quit(obs: Observation, wire: _Wire, timeouts: SmtpTimeouts) -> None:
    """QUIT politely; what the server says to it changes nothing we measured."""
    reached = obs.phase
    obs.enter(Phase.QUIT)
    try:
        wire.send(b"QUIT\r\n")
        await wire.reply(timeouts.quit)
    except (Exception, TimeoutError):
        pass
    obs.enter(Phase.DONE)
    obs.phase = Phase.DONE if reached in (Phase.EHLO, Phase.EHLO_TLS) else reached

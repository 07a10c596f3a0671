"""A scripted, misbehaving SMTP server on loopback for the probe's hostile-peer tests.

The server does its own TLS over memory BIOs (not ``loop.start_tls``), so a script
decides byte by byte what reaches the client and when: plaintext in the same
``write`` as the 220 to STARTTLS, in a ``write`` of its own, or only after the
client's ClientHello has arrived (and before the ServerHello leaves).  Every
connection's server side runs in the test's own event loop, so the loop's
exception handler sees the server's failures as well as the client's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, cast

__all__ = ["Script", "hostile_server"]

#: How the bytes after the 220 to STARTTLS are sent.
Split = Literal["one-write", "two-writes", "after-client-hello"]
#: What the server does after those bytes.
Then = Literal["tls", "silence", "garbage-record"]

BANNER = b"220 mx.hostile.test ESMTP\r\n"
EHLO = b"250-mx.hostile.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
EHLO_TLS = b"250-mx.hostile.test\r\n250 PIPELINING\r\n"
#: A handshake record header (22, TLS 1.2) whose body is not a handshake message.
GARBAGE_RECORD = b"\x16\x03\x03\x00\x10" + b"not a handshake!"


@dataclass(frozen=True)
class Script:
    """One misbehaviour; the defaults make a well-behaved STARTTLS server."""

    banner: bytes = BANNER
    ehlo: bytes = EHLO
    #: Bytes sent after "220 Ready" to STARTTLS and before anything TLS.
    after_220: bytes = b""
    split: Split = "one-write"
    then: Then = "tls"
    #: The first this many connections get a 421 banner and are closed (a throttling provider).
    throttle_first: int = 0


class _ServerTls:
    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.established = False

    def feed(self, data: bytes) -> bytes:
        """Clear text completed by ``data``; handshake output waits in ``outgoing``."""
        self.incoming.write(data)
        if not self.established:
            try:
                self.ssl.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        clear = b""
        while True:
            try:
                chunk = self.ssl.read(65536)
            except ssl.SSLWantReadError:
                return clear
            if not chunk:
                return clear
            clear += chunk


class _Session(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.script = server.script
        self.transport: asyncio.Transport | None = None
        self.tls: _ServerTls | None = None
        self.pending_injection = b""
        self.lines = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.sessions.add(self)
        self.server.connections += 1
        if self.server.connections <= self.script.throttle_first:
            self.transport.write(b"421 4.7.0 too many connections, try again later\r\n")
            self.transport.close()
            return
        self.transport.write(self.script.banner)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.sessions.discard(self)

    def _send(self, data: bytes) -> None:
        assert self.transport is not None
        if self.tls is not None and self.tls.established:
            self.tls.ssl.write(data)
            data = self.tls.outgoing.read()
        if not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            data = self._tls_received(data)
        self.lines += data
        while b"\n" in self.lines:
            line, self.lines = self.lines.split(b"\n", 1)
            self._command(line.strip().upper())

    def _tls_received(self, data: bytes) -> bytes:
        tls = self.tls
        assert tls is not None and self.transport is not None
        if self.pending_injection:  # the ClientHello is here: the injection goes first
            self.transport.write(self.pending_injection)
            self.pending_injection = b""
        if self.script.then == "silence":
            return b""
        if self.script.then == "garbage-record":
            self.transport.write(GARBAGE_RECORD)
            return b""
        try:
            clear = tls.feed(data)
        except ssl.SSLError:
            self.transport.abort()  # the client gave up on the handshake: nothing to say
            return b""
        out = tls.outgoing.read()
        if out:
            self.transport.write(out)
        return clear

    def _command(self, line: bytes) -> None:
        if line.startswith((b"EHLO", b"HELO")):
            self._send(EHLO_TLS if self.tls is not None else self.script.ehlo)
        elif line == b"STARTTLS" and self.tls is None:
            self._starttls()
        elif line == b"QUIT":
            self._send(b"221 2.0.0 bye\r\n")
            assert self.transport is not None
            self.transport.close()
        else:
            self._send(b"502 5.5.2 not here\r\n")

    def _starttls(self) -> None:
        assert self.transport is not None
        script = self.script
        self.tls = _ServerTls(self.server.tls)
        ready = b"220 2.0.0 Ready to start TLS\r\n"
        if script.split == "one-write":
            self.transport.write(ready + script.after_220)
        elif script.split == "two-writes":
            self.transport.write(ready)  # asyncio sets TCP_NODELAY: two writes, two segments
            self.transport.write(script.after_220)
        else:
            self.transport.write(ready)
            self.pending_injection = script.after_220


@dataclass
class _Server:
    script: Script
    tls: ssl.SSLContext
    connections: int = 0

    def __post_init__(self) -> None:
        self.sessions: set[_Session] = set()


@asynccontextmanager
async def hostile_server(
    script: Script, tls: ssl.SSLContext, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[int, _Server]]:
    """Serve ``script`` on ``host``, an ephemeral port; yields (port, server state)."""
    state = _Server(script, tls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Session(state), host, 0)
    try:
        yield server.sockets[0].getsockname()[1], state
    finally:
        server.close()
        for session in list(state.sessions):
            if session.transport is not None:
                session.transport.abort()
        await server.wait_closed()

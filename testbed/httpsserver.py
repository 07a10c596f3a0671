"""A fleet of lean HTTPS servers for MTA-STS policy hosts, each site with a named
behaviour (the world's ``PolicyHttp`` values plus a few hostile ones).

Theory of operation
-------------------
Sites live on their own 127.x.y.z addresses and a shared port (443 as root,
any port otherwise: the address tells hosts apart).  One listener per address;
its TLS context is a fresh server context whose SNI callback switches each
handshake to the context of the site named in the SNI (or to the first site of
the address when none matches or no SNI is sent), so several sites may share an
address.  A site's context is the caller's (``tls``) or built by ``tls_factory`` on
the site's first handshake (~0.7-2 ms each with OpenSSL 3.0: a 1M-domain world's
~8,500 sites would cost a mail process ~17 s at start); the factory caches it.

TLS runs in memory (``ssl.MemoryBIO``, ``_TlsStream``) over a plain TCP stream,
so the fleet decides when each flight leaves: with ``latency`` (rtt, jitter)
every flight that answers the client (the handshake's, the response head) goes
out one jittered round trip after what it answers; later pieces of the same
answer follow at once.  A "silent" site never starts the handshake.

A connection reads one request head (capped at 16 KiB, 5 s), then answers by
the site's behaviour:

  ok                  200 text/plain with the body
  404                 404 text/plain
  wrong-content-type  200 text/html with the body
  redirect            301 with ``Location`` (the site's ``location``), never anything else
  wrong-cert          as ok; the caller passes a context holding a certificate for another name
  no-server           nothing listens (connections are refused)
  oversized           200 text/plain, a 1 MiB body streamed slowly in 16 KiB chunks, so a client
                      that stops at 64 KiB leaves long before the end (``stats.aborted`` counts it)
  hang                completes TLS, reads the request, never answers
  garbage             completes TLS, answers with bytes that are not HTTP, closes
  silent              accepts TCP, never sends a byte (no TLS handshake)
  slow-body           as ok, the body in 8 pieces spread over ``body_seconds`` after the head

``stats`` counts requests, SNI names, Host headers, bytes of body sent and
early aborts per site, so tests can assert what a client did.  Every
connection task is owned by the fleet and cancelled by ``stop()``.

This module imports nothing of mxscan's: it is part of the world.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import weakref
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from testbed.serverset import ServerSet

__all__ = ["BEHAVIOURS", "OVERSIZED_BYTES", "PolicyServerFleet", "PolicyServerStats", "PolicySite"]

BEHAVIOURS = (
    "ok",
    "404",
    "wrong-content-type",
    "redirect",
    "wrong-cert",
    "no-server",
    "oversized",
    "hang",
    "garbage",
    "silent",
    "slow-body",
)
#: Size of the "oversized" body: far past the 64 KiB RFC 8461 §3.3 suggests senders read.
OVERSIZED_BYTES = 1024 * 1024
_CHUNK = 16 * 1024
#: Pause between chunks of the oversized body: the client must have time to give up.
_CHUNK_PAUSE = 0.002
_MAX_HEAD = 16 * 1024
_HEAD_TIMEOUT = 5.0
#: The handshake's deadline (asyncio's own default for TLS servers).
_HANDSHAKE_TIMEOUT = 60.0
#: Pieces of a "slow-body" body.
_SLOW_PIECES = 8
_DEFAULT_LOCATION = "https://elsewhere.test/.well-known/mta-sts.txt"


@dataclass(frozen=True, slots=True)
class PolicySite:
    """One policy host: ``host_name`` (mta-sts.<domain>) served at ``address``."""

    host_name: str
    address: str
    body: bytes
    behaviour: str
    tls: ssl.SSLContext | None
    #: Where "redirect" points.
    location: str = _DEFAULT_LOCATION
    #: "slow-body": seconds from the response head to the body's last byte.
    body_seconds: float = 0.0
    #: Builds (or finds) the TLS context when ``tls`` is None; called on each handshake.
    tls_factory: Callable[[], ssl.SSLContext] | None = field(default=None, compare=False)

    def context(self) -> ssl.SSLContext | None:
        """The context this site's handshakes use (None: it has none)."""
        if self.tls is not None or self.tls_factory is None:
            return self.tls
        return self.tls_factory()


@dataclass
class PolicyServerStats:
    """What clients did, per site host name."""

    connections: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    sni: defaultdict[str, list[str | None]] = field(default_factory=lambda: defaultdict(list))
    host_headers: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    body_bytes_sent: Counter[str] = field(default_factory=Counter)
    #: Connections the client closed before the whole body was sent.
    aborted: Counter[str] = field(default_factory=Counter)


class _Listener:
    """The sites of one address and the TLS context that picks among them by SNI."""

    def __init__(self, sites: list[PolicySite]) -> None:
        self.sites = sites
        self.sni_seen: weakref.WeakKeyDictionary[object, str | None] = weakref.WeakKeyDictionary()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.sni_callback = self._on_sni

    def _on_sni(self, ssl_obj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni_seen[ssl_obj] = server_name
        ssl_obj.context = self.site_for(server_name).context() or ssl_obj.context

    def site_for(self, name: str | None) -> PolicySite:
        wanted = (name or "").lower().rstrip(".")
        return next((s for s in self.sites if s.host_name.lower() == wanted), self.sites[0])


def _response_head(status: str, content_type: str | None, length: int | None, extra: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Server: mxscan-testbed", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _host_header(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode("ascii", "replace")
    return ""


class _Outbox:
    """Writes in order, each after its own delay (a flight's round trip), none overtaking."""

    __slots__ = ("idle", "queue", "timer", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.queue: deque[tuple[float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        #: Set while nothing waits in the queue.
        self.idle = asyncio.Event()
        self.idle.set()

    def put(self, data: bytes, delay: float) -> None:
        if delay <= 0 and not self.queue:
            self.writer.write(data)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self.queue:
            due = max(due, self.queue[-1][0])
        self.queue.append((due, data))
        self.idle.clear()
        if self.timer is None:
            self.timer = loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        while self.queue and self.queue[0][0] <= loop.time() + 0.001:
            data = self.queue.popleft()[1]
            if not self.writer.is_closing():
                self.writer.write(data)
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self._flush)
        else:
            self.idle.set()

    async def drain(self) -> None:
        """Until every delayed write is out and the transport's buffer has room."""
        await self.idle.wait()
        await self.writer.drain()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.queue.clear()
        self.idle.set()


class _TlsStream:
    """Server-side TLS in memory over a plain stream; replies owe the client one round trip."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext,
        flight_delay: Callable[[], float],
    ) -> None:
        self.reader = reader
        self.out = _Outbox(writer)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.flight_delay = flight_delay
        #: The client spoke since our last flight: the next one answers it, a round trip later.
        self.owed = False
        self.plain = b""

    async def _receive(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        self.incoming.write(data)
        self.owed = True

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            delay = self.flight_delay() if self.owed else 0.0
            self.owed = False
            self.out.put(data, delay)
        await self.out.drain()

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                await self._receive()
        await self.flush()

    async def read_head(self, limit: int) -> bytes:
        """The request head up to and including the blank line; raises past ``limit`` bytes."""
        while b"\r\n\r\n" not in self.plain:
            if len(self.plain) > limit:
                raise asyncio.LimitOverrunError("request head too long", len(self.plain))
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                await self._receive()
                continue
            except ssl.SSLZeroReturnError:
                data = b""
            if not data:  # close_notify (OpenSSL reads it as b""): the client is done
                raise asyncio.IncompleteReadError(self.plain, None)
            self.plain += data
        head, _, self.plain = self.plain.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    async def send(self, data: bytes) -> None:
        self.tls.write(data)
        await self.flush()

    def is_closing(self) -> bool:
        return self.out.writer.is_closing()


class PolicyServerFleet(ServerSet):
    """Start and stop every site's listener inside the running event loop.

    ``latency``: (rtt, jitter) seconds before each flight that answers the client;
    ``seed`` makes the jitter repeatable.
    """

    def __init__(
        self,
        sites: Iterable[PolicySite],
        port: int | None = None,
        latency: tuple[float, float] = (0.0, 0.0),
        seed: int = 0,
    ) -> None:
        self.sites = list(sites)
        for site in self.sites:
            if site.behaviour not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {site.behaviour!r}; expected one of {BEHAVIOURS}")
            if site.behaviour != "no-server" and site.tls is None and site.tls_factory is None:
                raise ValueError(f"{site.host_name}: a TLS context is needed for {site.behaviour!r}")
        self.port = port if port is not None else (443 if os.geteuid() == 0 else 8443)
        self.stats = PolicyServerStats()
        self.latency = latency
        self._rng = random.Random(seed)
        super().__init__()

    def flight_delay(self) -> float:
        rtt, jitter = self.latency
        if rtt <= 0 and jitter <= 0:
            return 0.0
        return max(0.0, rtt + self._rng.uniform(-jitter, jitter))

    async def start(self) -> None:
        by_address: dict[str, list[PolicySite]] = {}
        for site in self.sites:
            if site.behaviour != "no-server":
                by_address.setdefault(site.address, []).append(site)
        for address, sites in by_address.items():
            listener = _Listener(sites)

            async def handle(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: _Listener = listener
            ) -> None:
                await self._serve(listener, reader, writer)

            server = await asyncio.start_server(handle, address, self.port, reuse_address=True, backlog=512)
            self._servers.append(server)

    async def _serve(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # owned by the fleet: stop() cancels it
        stream: _TlsStream | None = None
        try:
            if listener.sites[0].behaviour == "silent":
                self.stats.connections[listener.sites[0].host_name] += 1
                while await reader.read(65536):  # never a byte back, until the client leaves
                    pass
                return
            stream = _TlsStream(reader, writer, listener.context, self.flight_delay)
            async with asyncio.timeout(_HANDSHAKE_TIMEOUT):
                await stream.handshake()
            sni = listener.sni_seen.get(stream.tls)
            site = listener.site_for(sni)
            self.stats.connections[site.host_name] += 1
            self.stats.sni[site.host_name].append(sni)
            try:
                async with asyncio.timeout(_HEAD_TIMEOUT):
                    head = await stream.read_head(_MAX_HEAD)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                return
            self.stats.requests[site.host_name] += 1
            self.stats.host_headers[site.host_name].append(_host_header(head))
            await self._answer(site, stream)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or never finished its handshake: nothing to answer
        except asyncio.CancelledError:
            pass  # stop() ends the connection; the task finishes quietly
        finally:
            self._tasks.discard(task)
            if stream is not None:
                stream.out.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _answer(self, site: PolicySite, stream: _TlsStream) -> None:
        behaviour = site.behaviour
        if behaviour == "hang":
            await asyncio.Event().wait()  # until stop() cancels
        elif behaviour == "garbage":
            await stream.send(b"\x00\xffTHIS IS NOT HTTP\r\n\xfe\r\n\r\n")
        elif behaviour == "404":
            body = b"not found\n"
            await stream.send(_response_head("404 Not Found", "text/plain", len(body)) + body)
        elif behaviour == "redirect":
            await stream.send(
                _response_head("301 Moved Permanently", "text/plain", 0, f"Location: {site.location}")
            )
        elif behaviour == "wrong-content-type":
            head = _response_head("200 OK", "text/html; charset=utf-8", len(site.body))
            await stream.send(head + site.body)
        elif behaviour == "oversized":
            await self._stream_oversized(site, stream)
        elif behaviour == "slow-body":
            await self._slow_body(site, stream)
        else:  # ok, wrong-cert
            await stream.send(_response_head("200 OK", "text/plain", len(site.body)) + site.body)
            self.stats.body_bytes_sent[site.host_name] += len(site.body)

    async def _stream_oversized(self, site: PolicySite, stream: _TlsStream) -> None:
        chunk = (b"mx: mail.example.test\r\n" * (_CHUNK // 24 + 1))[:_CHUNK]
        sent = 0
        try:
            await stream.send(_response_head("200 OK", "text/plain", OVERSIZED_BYTES))
            while sent < OVERSIZED_BYTES:
                if stream.is_closing():
                    raise ConnectionResetError("transport closing")
                await stream.send(chunk)
                sent += len(chunk)
                self.stats.body_bytes_sent[site.host_name] += len(chunk)
                await asyncio.sleep(_CHUNK_PAUSE)
        except (OSError, ssl.SSLError):
            self.stats.aborted[site.host_name] += 1

    async def _slow_body(self, site: PolicySite, stream: _TlsStream) -> None:
        """The head at once, then the body in pieces, the last ``body_seconds`` after the head."""
        body = site.body
        await stream.send(_response_head("200 OK", "text/plain", len(body)))
        size = -(-len(body) // _SLOW_PIECES) or 1
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        pause = site.body_seconds / max(len(pieces), 1)
        for piece in pieces:
            await asyncio.sleep(pause)
            if stream.is_closing():
                self.stats.aborted[site.host_name] += 1
                return
            await stream.send(piece)
            self.stats.body_bytes_sent[site.host_name] += len(piece)

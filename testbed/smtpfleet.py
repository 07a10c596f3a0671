"""A fleet of lean SMTP servers, one per simulated host address, each with a
named behaviour (the world's ``SmtpBehaviour`` plus hostile test behaviours).

Theory of operation
-------------------
Each host listens on its own 127.x.y.z address and a shared port (25 as root,
any port otherwise: the address tells hosts apart).  A connection gets a
``_Session`` protocol that greets, answers EHLO/STARTTLS/QUIT line by line and
upgrades to TLS with the host's ``ssl.SSLContext``: pre-built (``tls``) or
made on the first STARTTLS by ``tls_factory`` (a 100k-domain world cannot build
its ~16,000 distinct contexts at start: ~1 ms and ~30 KB each).  Hosts that share an
address (several IPv6-only hosts on ::1) share one listener; the first host's
behaviour answers, and the TLS context is picked by SNI among them.
Behaviours are data: a name chosen per host, switched on in a few small methods.

The Internet-like behaviours (``testbed/internet.py``): "syn-drop" is no asyncio
server but a listening socket with a one-place accept queue that the fleet fills
with a connection of its own and never accepts from, so the kernel drops every
later SYN (the client's connect times out, it is never refused); "greylist"
answers 451 to the first connection of each client address (``greylist``, for
the fleet's life); "client-limit-421" counts connections per (host, client
address); "tarpit-greeting" writes its greeting and each reply late.  With
``latency`` every write waits one jittered round trip, in order (``_enqueue``),
and STARTTLS runs TLS in memory (``_Link``) so each handshake flight waits too.

The banner is ``220 <banner>``, ``<name> ESMTP`` when the spec has none.

``stats`` counts connections per host, per provider and per address, including
the peaks open at once, so politeness tests can assert what the scanner did.
A connection is open from accept until the server has answered QUIT or the
connection is lost, whichever comes first: after "221" the session is over for
the server (an MTA's connection counter, e.g. Postfix's anvil, drops then),
while the TCP and TLS teardown may still take a round trip the client does not
wait for.  Counting until ``connection_lost`` would charge a client that
opens its next session right after "221" with one connection too many.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import socket
import ssl
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from testbed.serverset import ServerSet

__all__ = ["HOSTILE_BEHAVIOURS", "FleetStats", "HostSpec", "SmtpFleet"]

#: Behaviours beyond the world's catalogue, for hostile-server tests of the scanner.
HOSTILE_BEHAVIOURS = (
    "huge-banner",  # a 100 KiB multi-line banner, never finished
    "endless-continuation",  # "220-" lines forever
    "slow-drip",  # the banner one byte at a time, slowly
    "garbage",  # binary noise instead of a banner
    "bad-utf8",  # a valid banner whose text is not UTF-8
    "ehlo-550",  # refuses EHLO
    "post-tls-554",  # refuses EHLO after TLS
    "inject-after-starttls",  # pipelines a fake reply after "220 go ahead" (RFC 3207 §4.2)
    "tls-alert",  # answers the ClientHello with a fatal TLS alert
    "long-chain",  # presents a 100-certificate chain
    "limit-421",  # 421 when the provider's connection limit is exceeded (politeness tests)
)
#: The accept queue of a "syn-drop" listener: listen(0) holds one connection, which the
#: fleet makes itself; the kernel then drops every SYN (it never answers RST: the client's
#: connect times out).
_SYN_DROP_BACKLOG = 0

#: A fatal TLS alert record: handshake_failure (40), TLS 1.2 record version.
_TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"
_MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    address: str
    behaviour: str
    tls: ssl.SSLContext | None = None
    banner: str = ""
    #: Builds the TLS context on the first STARTTLS (the fleet keeps it); used when ``tls`` is None.
    tls_factory: Callable[[], ssl.SSLContext] | None = field(default=None, compare=False)
    provider: str | None = None
    slow_banner_delay: float = 1.0
    tarpit_delay: float = 3600.0
    #: For "limit-421": connections allowed at once per provider before 421.
    provider_limit: int = 0
    #: For "tarpit-greeting": seconds before the greeting and before each reply.
    greeting_delay: float = 0.0
    reply_delay: float = 0.0
    #: For "client-limit-421": connections one client address may hold at once.
    client_limit: int = 0


@dataclass
class FleetStats:
    """Connection counts; a host without a provider counts as its own provider (its name).

    ``connections`` is per host name (over all its addresses); ``peak_per_address`` the
    most connections open at once to one address, ``peak_open`` over the whole fleet;
    ``greylisted`` the 451 greetings per host.  A "syn-drop" address counts nothing: the
    kernel drops those SYNs before the fleet sees them.
    """

    connections: Counter[str] = field(default_factory=Counter)
    open_per_provider: Counter[str] = field(default_factory=Counter)
    peak_per_provider: Counter[str] = field(default_factory=Counter)
    refused_421: Counter[str] = field(default_factory=Counter)
    connections_per_provider: Counter[str] = field(default_factory=Counter)
    open_per_address: Counter[str] = field(default_factory=Counter)
    peak_per_address: Counter[str] = field(default_factory=Counter)
    greylisted: Counter[str] = field(default_factory=Counter)
    open_total: int = 0
    peak_open: int = 0

    def opened(self, spec: HostSpec) -> None:
        provider = spec.provider or spec.name
        self.connections[spec.name] += 1
        self.connections_per_provider[provider] += 1
        self.open_per_provider[provider] += 1
        self.peak_per_provider[provider] = max(
            self.peak_per_provider[provider], self.open_per_provider[provider]
        )
        self.open_per_address[spec.address] += 1
        self.peak_per_address[spec.address] = max(
            self.peak_per_address[spec.address], self.open_per_address[spec.address]
        )
        self.open_total += 1
        self.peak_open = max(self.peak_open, self.open_total)

    def closed(self, spec: HostSpec) -> None:
        self.open_per_provider[spec.provider or spec.name] -= 1
        self.open_per_address[spec.address] -= 1
        self.open_total -= 1

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready counters (zero entries dropped)."""
        return {
            "connections": dict(+self.connections),
            "connections_per_provider": dict(+self.connections_per_provider),
            "open_per_provider": dict(+self.open_per_provider),
            "peak_per_provider": dict(+self.peak_per_provider),
            "refused_421": dict(+self.refused_421),
            "peak_per_address": dict(+self.peak_per_address),
            "greylisted": dict(+self.greylisted),
            "open": self.open_total,
            "peak_open": self.peak_open,
        }

    def reset(self) -> None:
        """Start a new measurement: counts cleared, peaks down to what is open now."""
        self.connections.clear()
        self.connections_per_provider.clear()
        self.refused_421.clear()
        self.greylisted.clear()
        self.peak_per_provider = Counter(+self.open_per_provider)
        self.peak_per_address = Counter(+self.open_per_address)
        self.peak_open = self.open_total


class _Session(asyncio.Protocol):
    def __init__(self, spec: HostSpec, fleet: SmtpFleet) -> None:
        self.spec = spec
        self.fleet = fleet
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.tls = False
        self.timers: list[asyncio.TimerHandle] = []
        self.counted = False
        self.client = ""
        self.client_counted = False
        #: Bytes that arrive between "220 ready" and the end of the server-side
        #: handshake bookkeeping; replayed once writes go through TLS.
        self.held: bytes | None = None
        #: The in-memory TLS of a fleet with latency (``_Link``); None otherwise.
        self.link: _Link | None = None
        #: Delayed writes, in order whatever the jitter: (due, bytes; None closes).
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.flush_timer: asyncio.TimerHandle | None = None

    # -- connection ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        spec = self.spec
        stats = self.fleet.stats
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        stats.opened(spec)
        self.counted = True
        provider = spec.provider or spec.name
        if spec.provider_limit and stats.open_per_provider[provider] > spec.provider_limit:
            stats.refused_421[provider] += 1
            self.write(b"421 4.7.0 too many connections from your network, try later\r\n")
            self.close()
            return
        if spec.behaviour == "client-limit-421":
            key = (spec.name, self.client)
            self.fleet.client_open[key] += 1
            self.client_counted = True
            if self.fleet.client_open[key] > spec.client_limit:
                stats.refused_421[provider] += 1
                self.write(b"421 4.7.0 Too many concurrent SMTP connections from this IP address\r\n")
                self.close()
                return
        if spec.behaviour == "greylist" and (spec.address, self.client) not in self.fleet.greylist:
            # Keyed by (server address, client address), for the fleet's life (RFC 6647 §2.1
            # keys on the client IP; there is no sender or recipient before RCPT).
            self.fleet.greylist.add((spec.address, self.client))
            stats.greylisted[spec.name] += 1
            self.write(b"451 4.7.1 Greylisted, please try again later\r\n")
            self.close()
            return
        self.greet()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        if self.flush_timer is not None:
            self.flush_timer.cancel()
        self.queue.clear()
        self.uncount()

    def uncount(self) -> None:
        """The session no longer occupies a slot of its provider (once per connection)."""
        if self.counted:
            self.fleet.stats.closed(self.spec)
            self.counted = False
        if self.client_counted:
            self.fleet.client_open[(self.spec.name, self.client)] -= 1
            self.client_counted = False

    def write(self, data: bytes, delay: float = 0.0) -> None:
        """Send ``data`` (through TLS once it is up) after ``delay`` plus the fleet's latency."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.link is not None and self.link.established:
            data = self.link.encrypt(data)
        self.send_raw(data, delay)

    def send_raw(self, data: bytes, delay: float = 0.0) -> None:
        if data and self.transport is not None:
            self._enqueue(data, delay + self.fleet.flight_delay())

    def close(self, after: float = 0.0) -> None:
        """Close once every write already scheduled has gone out (and ``after`` seconds)."""
        if self.transport is not None:
            self._enqueue(None, after)

    def _enqueue(self, data: bytes | None, delay: float) -> None:
        assert self.transport is not None
        if delay <= 0 and not self.queue:
            if data is None:
                self.transport.close()
            elif not self.transport.is_closing():
                self.transport.write(data)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self.queue:
            due = max(due, self.queue[-1][0])
        self.queue.append((due, data))
        if self.flush_timer is None:
            self.flush_timer = loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self.flush_timer = None
        loop = asyncio.get_running_loop()
        while self.queue and self.queue[0][0] <= loop.time() + 0.001:
            _, data = self.queue.popleft()
            if self.transport is None:
                continue
            if data is None:
                self.transport.close()
            elif not self.transport.is_closing():
                self.transport.write(data)
        if self.queue:
            self.flush_timer = loop.call_at(self.queue[0][0], self._flush)

    def later(self, delay: float, callback: object, *args: object) -> None:
        loop = asyncio.get_running_loop()
        self.timers.append(loop.call_later(delay, callback, *args))  # type: ignore[arg-type]

    def greet(self) -> None:
        spec = self.spec
        banner = f"220 {spec.banner or spec.name + ' ESMTP'}\r\n".encode()
        behaviour = spec.behaviour
        if behaviour == "blackhole":
            return
        if behaviour == "banner-554":
            self.write(f"554 5.3.2 {spec.name} no SMTP service here\r\n".encode())
        elif behaviour == "421-close":
            self.write(f"421 4.3.2 {spec.name} service not available, closing channel\r\n".encode())
            self.close()
        elif behaviour == "slow-banner":
            self.later(spec.slow_banner_delay, self.write, banner)
        elif behaviour == "tarpit-greeting":
            self.write(banner, spec.greeting_delay)
        elif behaviour == "huge-banner":
            line = b"220-" + b"x" * 1000 + b"\r\n"
            self.write(line * 100)
        elif behaviour == "endless-continuation":
            self._continue()
        elif behaviour == "slow-drip":
            self._drip(banner, 0)
        elif behaviour == "garbage":
            self.write(bytes(range(256)) * 4)
        elif behaviour == "bad-utf8":
            self.write(b"220 " + spec.name.encode() + b" ESMTP \xff\xfe\xc3\x28 caf\xe9\r\n")
        else:
            self.write(banner)

    def reply(self, data: bytes) -> None:
        """A reply to a command: a tarpit answers each one late."""
        self.write(data, self.spec.reply_delay if self.spec.behaviour == "tarpit-greeting" else 0.0)

    def _continue(self) -> None:
        self.write(b"220-still greeting you\r\n" * 64)
        self.later(0.01, self._continue)

    def _drip(self, data: bytes, index: int) -> None:
        if index < len(data):
            self.write(data[index : index + 1])
            self.later(0.5, self._drip, data, index + 1)

    # -- commands -----------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            data = self._from_link(data)
            if not data:
                return
        elif self.held is not None:
            self.held += data
            return
        self.buffer += data
        if len(self.buffer) > _MAX_LINE and b"\n" not in self.buffer:
            self.write(b"500 5.5.2 line too long\r\n")
            self.buffer = b""
            return
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.command(line.rstrip(b"\r").decode("ascii", "replace"))

    def _from_link(self, data: bytes) -> bytes:
        """Ciphertext in, plaintext out; the handshake's flights go out with the latency."""
        assert self.link is not None
        try:
            plain, out, done = self.link.feed(data)
        except (ssl.SSLError, OSError):
            self.send_raw(self.link.pending())  # the alert, if OpenSSL wrote one
            self.close()
            return b""
        self.send_raw(out)
        if done and not self.tls:
            self.tls = True
            self.buffer = b""
        return plain

    def command(self, line: str) -> None:
        verb = line.split(" ", 1)[0].upper()
        behaviour = self.spec.behaviour
        if verb in ("EHLO", "HELO"):
            self.ehlo()
        elif verb == "STARTTLS" and not self.tls and behaviour != "no-starttls":
            self.starttls()  # a server that does not advertise STARTTLS does not know it (502 below)
        elif verb == "QUIT":
            self.uncount()  # before "221": the client may connect again as soon as it reads it
            self.write(b"221 2.0.0 bye\r\n")  # never late: a tarpit's verdict is settled by then
            self.close()
        elif verb == "NOOP":
            self.reply(b"250 2.0.0 ok\r\n")
        elif verb in ("MAIL", "RCPT", "DATA") and behaviour:
            self.reply(b"503 5.5.1 this test server accepts no mail\r\n")
        else:
            self.reply(b"502 5.5.2 command not implemented\r\n")

    def ehlo(self) -> None:
        behaviour = self.spec.behaviour
        if behaviour == "tarpit":
            self.later(self.spec.tarpit_delay, self.write, b"250 finally\r\n")
            return
        if behaviour == "ehlo-550" or (behaviour == "post-tls-554" and self.tls):
            self.write(b"550 5.7.1 not talking to you\r\n" if not self.tls else b"554 5.7.0 go away\r\n")
            return
        lines = [self.spec.name, "PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME"]
        tls_behaviour = behaviour in ("starttls-454", "handshake-fail", "tls-alert")
        offers_tls = self.fleet.has_tls(self.spec) or tls_behaviour
        if offers_tls and behaviour != "no-starttls" and not self.tls:
            lines.insert(3, "STARTTLS")
        reply = "".join(f"250-{text}\r\n" for text in lines[:-1]) + f"250 {lines[-1]}\r\n"
        self.reply(reply.encode())

    def starttls(self) -> None:
        behaviour = self.spec.behaviour
        if behaviour == "starttls-454" or (
            not self.fleet.has_tls(self.spec) and behaviour not in ("handshake-fail", "tls-alert")
        ):
            self.reply(b"454 4.7.0 TLS not available due to temporary reason\r\n")
            return
        if behaviour == "inject-after-starttls":
            self.write(b"220 2.0.0 go ahead\r\n250 injected before the handshake\r\n")
        else:
            self.reply(b"220 2.0.0 ready to start TLS\r\n")
        if behaviour in ("handshake-fail", "tls-alert"):
            self.write(_TLS_ALERT)
            self.close(after=0.05)
            return
        if self.fleet.latency:
            # In memory, so each handshake flight goes out with the latency (a loop's
            # start_tls would write the flights itself, at once).
            try:
                self.link = _Link(self.fleet.context(self.spec))
            except (ssl.SSLError, OSError):
                self.close()
            return
        self.held = b""
        self.fleet.spawn(self.upgrade())

    async def upgrade(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            context = self.fleet.context(self.spec)
            tls_transport = await loop.start_tls(self.transport, self, context, server_side=True)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError):
            return
        if tls_transport is None:
            return
        self.transport = tls_transport
        self.tls = True
        self.buffer = b""
        held, self.held = self.held or b"", None
        if held:
            self.data_received(held)


class _Link:
    """Server-side TLS in memory (``ssl.MemoryBIO``): the session decides when each
    flight goes out, so latency applies to the handshake as to every reply."""

    __slots__ = ("established", "incoming", "outgoing", "tls")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.established = False

    def feed(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """(plaintext received, ciphertext to send, handshake done); raises ``ssl.SSLError``."""
        self.incoming.write(data)
        if not self.established:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self.pending(), False
            self.established = True
        chunks = []
        while True:
            try:
                chunk = self.tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), self.pending(), True

    def encrypt(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.pending()

    def pending(self) -> bytes:
        return self.outgoing.read()


class SmtpFleet(ServerSet):
    """Start and stop every host's listener inside the running event loop.

    ``latency``: (rtt, jitter) seconds added to every flight the servers send, the TLS
    handshake's included (then done in memory, ``_Link``); ``seed`` makes the jitter
    sequence repeatable.  ``greylist`` remembers (server address, client address) pairs
    for the fleet's life; ``client_open`` counts connections per (host, client address).
    """

    def __init__(
        self, specs: Iterable[HostSpec], port: int, latency: tuple[float, float] = (0.0, 0.0), seed: int = 0
    ) -> None:
        self.specs = [s for s in specs if s.behaviour != "refused"]
        self.port = port
        self.stats = FleetStats()
        self.latency = latency if latency[0] > 0 or latency[1] > 0 else None
        self._rng = random.Random(seed)
        self.greylist: set[tuple[str, str]] = set()
        self.client_open: Counter[tuple[str, str]] = Counter()
        #: The sockets that keep "syn-drop" listeners full (listener, filler), closed by stop().
        self._plugged: list[socket.socket] = []
        super().__init__()
        #: address -> the hosts on it (first one answers); host name -> its context once built.
        self._by_address: dict[str, list[HostSpec]] = {}
        for spec in self.specs:
            self._by_address.setdefault(spec.address, []).append(spec)
        self._contexts: dict[str, ssl.SSLContext] = {}

    def flight_delay(self) -> float:
        """Seconds one flight waits: one round trip, jittered (never negative)."""
        if self.latency is None:
            return 0.0
        rtt, jitter = self.latency
        return max(0.0, rtt + self._rng.uniform(-jitter, jitter))

    def has_tls(self, spec: HostSpec) -> bool:
        return spec.tls is not None or spec.tls_factory is not None

    def _own_context(self, spec: HostSpec) -> ssl.SSLContext:
        if spec.tls is not None:
            return spec.tls
        ctx = self._contexts.get(spec.name)
        if ctx is None:
            if spec.tls_factory is None:
                raise ssl.SSLError(f"{spec.name}: no TLS context")
            ctx = spec.tls_factory()
            if spec.tls_factory is not None and len(self._by_address.get(spec.address, ())) > 1:
                self._contexts[spec.name] = ctx  # factories cache their own; shared addresses need ours
        return ctx

    def context(self, spec: HostSpec) -> ssl.SSLContext:
        """The context a STARTTLS on ``spec``'s address uses; SNI picks the host on a shared address."""
        hosts = self._by_address.get(spec.address, [spec])
        if len(hosts) == 1:
            return self._own_context(spec)
        key = f"sni:{spec.address}"
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            by_name = {h.name.lower(): h for h in hosts if self.has_tls(h)}
            default = next(iter(by_name.values()), spec)

            def pick(obj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
                chosen = by_name.get((server_name or "").lower().rstrip("."), default)
                obj.context = self._own_context(chosen)

            ctx.sni_callback = pick
            self._contexts[key] = ctx
        return ctx

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Owned by the fleet and cancelled by stop(): no task outlives it.
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for hosts in self._by_address.values():
            spec = hosts[0]
            if spec.behaviour == "syn-drop":
                self._plug(spec.address)
                continue
            server = await loop.create_server(
                functools.partial(_Session, spec, self),
                spec.address,
                self.port,
                reuse_address=True,
                backlog=512,
            )
            self._servers.append(server)

    def _plug(self, address: str) -> None:
        """A listener that never accepts, its queue filled at once: later SYNs are dropped."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, self.port))
            listener.listen(_SYN_DROP_BACKLOG)
            self._plugged.append(listener)
            filler = socket.socket(family, socket.SOCK_STREAM)
            self._plugged.append(filler)
            filler.settimeout(5)
            filler.connect(listener.getsockname()[:2])  # completes: the queue had its one place
        except OSError:
            self._unplug()
            raise

    def _unplug(self) -> None:
        for sock in self._plugged:
            sock.close()
        self._plugged.clear()

    async def stop(self) -> None:
        self._unplug()
        await super().stop()


def server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server TLS context from PEM bytes (written to a private temp dir: the ssl
    module loads chains only from files)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="mxscan-tls-") as tmp:
        cert, key = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
        with open(cert, "wb") as f:
            f.write(chain_pem)
        with open(key, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx

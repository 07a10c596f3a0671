"""A fleet of lean HTTPS servers for MTA-STS policy hosts, each site with a named
behaviour (the world's ``PolicyHttp`` values plus a few hostile ones).

Theory of operation
-------------------
Sites live on their own 127.x.y.z addresses and a shared port (443 as root,
any port otherwise: the address tells hosts apart).  One listener per address;
its TLS context is a fresh server context whose SNI callback switches each
handshake to the context of the site named in the SNI (or to the first site of
the address when none matches or no SNI is sent), so several sites may share an
address.  The contexts are built once by the caller (NOTES.md: ~0.7 ms each).

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

``stats`` counts requests, SNI names, Host headers, bytes of body sent and
early aborts per site, so tests can assert what a client did.  Every
connection task is owned by the fleet and cancelled by ``stop()``.

This module imports nothing of mxscan's: it is part of the world.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable
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
)
#: Size of the "oversized" body: far past the 64 KiB RFC 8461 §3.3 suggests senders read.
OVERSIZED_BYTES = 1024 * 1024
_CHUNK = 16 * 1024
#: Pause between chunks of the oversized body: the client must have time to give up.
_CHUNK_PAUSE = 0.002
_MAX_HEAD = 16 * 1024
_HEAD_TIMEOUT = 5.0
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
        ssl_obj.context = self.site_for(server_name).tls or ssl_obj.context

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


class PolicyServerFleet(ServerSet):
    """Start and stop every site's listener inside the running event loop."""

    def __init__(self, sites: Iterable[PolicySite], port: int | None = None) -> None:
        self.sites = list(sites)
        for site in self.sites:
            if site.behaviour not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {site.behaviour!r}; expected one of {BEHAVIOURS}")
            if site.behaviour != "no-server" and site.tls is None:
                raise ValueError(f"{site.host_name}: a TLS context is needed for {site.behaviour!r}")
        self.port = port if port is not None else (443 if os.geteuid() == 0 else 8443)
        self.stats = PolicyServerStats()
        super().__init__()

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

            server = await asyncio.start_server(
                handle, address, self.port, ssl=listener.context, reuse_address=True, backlog=512
            )
            self._servers.append(server)

    async def _serve(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # owned by the fleet: stop() cancels it
        try:
            sni = listener.sni_seen.get(writer.get_extra_info("ssl_object"))
            site = listener.site_for(sni)
            self.stats.connections[site.host_name] += 1
            self.stats.sni[site.host_name].append(sni)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                return
            if len(head) > _MAX_HEAD:
                return
            self.stats.requests[site.host_name] += 1
            self.stats.host_headers[site.host_name].append(_host_header(head))
            await self._answer(site, writer)
        except (OSError, ssl.SSLError):
            pass  # the client went away: nothing to answer
        except asyncio.CancelledError:
            pass  # stop() ends the connection; the task finishes quietly
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _answer(self, site: PolicySite, writer: asyncio.StreamWriter) -> None:
        behaviour = site.behaviour
        if behaviour == "hang":
            await asyncio.Event().wait()  # until stop() cancels
        elif behaviour == "garbage":
            writer.write(b"\x00\xffTHIS IS NOT HTTP\r\n\xfe\r\n\r\n")
        elif behaviour == "404":
            body = b"not found\n"
            writer.write(_response_head("404 Not Found", "text/plain", len(body)) + body)
        elif behaviour == "redirect":
            writer.write(
                _response_head("301 Moved Permanently", "text/plain", 0, f"Location: {site.location}")
            )
        elif behaviour == "wrong-content-type":
            writer.write(_response_head("200 OK", "text/html; charset=utf-8", len(site.body)) + site.body)
        elif behaviour == "oversized":
            await self._stream_oversized(site, writer)
            return
        else:  # ok, wrong-cert
            writer.write(_response_head("200 OK", "text/plain", len(site.body)) + site.body)
            self.stats.body_bytes_sent[site.host_name] += len(site.body)
        await writer.drain()

    async def _stream_oversized(self, site: PolicySite, writer: asyncio.StreamWriter) -> None:
        writer.write(_response_head("200 OK", "text/plain", OVERSIZED_BYTES))
        chunk = (b"mx: mail.example.test\r\n" * (_CHUNK // 24 + 1))[:_CHUNK]
        sent = 0
        try:
            while sent < OVERSIZED_BYTES:
                if writer.is_closing():
                    raise ConnectionResetError("transport closing")
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                self.stats.body_bytes_sent[site.host_name] += len(chunk)
                await asyncio.sleep(_CHUNK_PAUSE)
        except (OSError, ssl.SSLError):
            self.stats.aborted[site.host_name] += 1

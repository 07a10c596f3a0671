"""Fetching the MTA-STS policy over HTTPS: a thin async shell (RFC 8461 §3.3).

Theory of operation
-------------------
``PolicyFetcher`` owns one aiohttp ``ClientSession``.  Each ``fetch`` asks
``https://<address>:<port>/.well-known/mta-sts.txt`` with ``Host`` and SNI set
to ``mta-sts.<domain>``: the address comes from our own resolver, so the URL
holds an IP literal and aiohttp's resolver is never asked (ours refuses every
name, so the system resolver cannot be consulted by accident).

RFC 8461 §3.3 rules, and where they are enforced:

* the certificate must be PKIX-valid for ``mta-sts.<domain>``: the handshake
  runs with verification OFF so the presented chain is always captured (as for
  SMTP: probes/tls/capture.py), then the scan's ``Verifier`` judges it.  An
  invalid chain keeps the exchange ``success`` with ``pkix.valid`` false; the
  assessment refuses the policy.
* "HTTP 3xx redirects MUST NOT be followed": ``allow_redirects=False``; a 3xx
  is ``application-error`` with its ``Location`` recorded.
* only 200 is a policy ("HTTP response codes other than 200 are failures");
* the media type must be ``text/plain`` (parameters such as charset allowed);
* the body is read in chunks and abandoned past ``max_body`` (64 KiB by default,
  §3.3's suggested cap): never read in full.  We ask for ``identity`` encoding; a
  body compressed anyway is inflated by aiohttp (which bounds each step) and the
  cap applies to the inflated bytes, what a sender would parse.  Response heads
  are bounded by aiohttp's parser (8190-byte lines and fields).

Per-phase deadlines (``FetchTimeouts``): one ``asyncio.timeout`` is moved
forward as the exchange advances: to ``connect`` at the start, to ``tls`` when
the TLS object is created (our ``SSLContext.wrap_bio`` hook: TCP is then up),
to ``headers`` when the connection is ready, to ``body`` when the headers are
in; ``total`` bounds everything.  The phase current when a deadline fires says
which status it becomes.  Every exception is translated in one place,
``_classify``; ``fetch`` never raises for network or peer behaviour.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import SimpleNamespace, TracebackType
from typing import Any

import aiohttp
from aiohttp import http_exceptions
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from engine.peertext import bound_line
from engine.status import Status
from probes.mtasts.policy import MAX_POLICY_BYTES
from probes.mtasts.records import PolicyFetch
from probes.tls.capture import capture_context, presented_chain
from probes.tls.certs import chain_facts
from probes.tls.verify import Verifier

__all__ = [
    "POLICY_PATH",
    "TIMEOUT_DETAIL",
    "FetchTimeouts",
    "PolicyFetcher",
    "is_text_plain",
    "policy_url",
    "timed_out",
]

#: HTTPS port of MTA-STS policy hosts (RFC 8461 §3.3 fixes 443; the test world may differ).
HTTPS_PORT = 443

#: Deadline of each policy fetch phase (TLS, headers, the whole 64 KiB body), at most the SMTP
#: phase deadline: a policy host is a web server, and 10 s is generous for 64 KiB.
HTTPS_PHASE_TIMEOUT = 10.0
#: Deadline for a whole policy fetch (connect, TLS, headers, 64 KiB body).
HTTPS_TOTAL_TIMEOUT = 30.0

#: RFC 8461 §3.3: the well-known path of the policy.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: Body bytes asked for per read; small enough that the cap is hit within one chunk of it.
CHUNK_BYTES = 16 * 1024
_DETAIL_LIMIT = 300
_USER_AGENT = "mxscan (MTA-STS policy fetch; RFC 8461)"


@dataclass(frozen=True, slots=True)
class FetchTimeouts:
    """Per-phase deadlines in seconds.

    connect: TCP connection; tls: the TLS handshake; headers: from a ready connection to the
    response headers; body: reading the whole (capped) body; total: the whole fetch.
    """

    connect: float = 10.0
    tls: float = 10.0
    headers: float = 10.0
    body: float = 10.0
    total: float = 30.0


class _Phase(StrEnum):
    CONNECT = "connect"
    TLS = "tls"
    HEADERS = "headers"
    BODY = "body"


class _Exchange:
    """What one fetch has reached so far; the hooks below move it along."""

    __slots__ = ("deadline", "phase", "ssl_object", "timeouts")

    def __init__(self, timeouts: FetchTimeouts) -> None:
        self.timeouts = timeouts
        self.phase = _Phase.CONNECT
        self.deadline: asyncio.Timeout | None = None
        self.ssl_object: ssl.SSLObject | None = None

    def enter(self, phase: _Phase) -> None:
        self.phase = phase
        seconds = {
            _Phase.CONNECT: self.timeouts.connect,
            _Phase.TLS: self.timeouts.tls,
            _Phase.HEADERS: self.timeouts.headers,
            _Phase.BODY: self.timeouts.body,
        }[phase]
        if self.deadline is not None and not self.deadline.expired():
            self.deadline.reschedule(asyncio.get_running_loop().time() + seconds)


#: The exchange of the fetch running in the current task (the TLS hook has no other way to find it).
_CURRENT: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "mxscan_policy_fetch", default=None
)


class _CapturingContext(ssl.SSLContext):
    """Verification off (the chain is judged later); remembers each fetch's TLS object.

    asyncio (and uvloop) call ``wrap_bio`` once the TCP connection is up and the
    handshake is about to start: the moment the ``tls`` phase begins.
    """

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        obj = super().wrap_bio(*args, **kwargs)
        exchange = _CURRENT.get()
        if exchange is not None:
            exchange.ssl_object = obj
            exchange.enter(_Phase.TLS)
        return obj


class _NoResolver(AbstractResolver):
    """URLs carry IP literals, which aiohttp never resolves; any name is refused outright."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"mxscan resolves names itself; refusing to resolve {host!r}")

    async def close(self) -> None:
        return None


async def _on_connection_ready(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    exchange = ctx.trace_request_ctx
    if isinstance(exchange, _Exchange):
        exchange.enter(_Phase.HEADERS)


def policy_url(domain: str) -> str:
    """The policy URL of ``domain`` (RFC 8461 §3.3)."""
    return f"https://mta-sts.{domain}{POLICY_PATH}"


def is_text_plain(content_type: str) -> bool:
    """``text/plain`` with any parameters, case-insensitive (RFC 8461 §3.3, RFC 2045 §5.1)."""
    return content_type.partition(";")[0].strip().lower() == "text/plain"


#: The one table from exceptions to statuses, checked in order (subclasses before their bases).
_EXCEPTION_STATUS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Status], ...] = (
    (aiohttp.ClientConnectorSSLError, Status.TLS_HANDSHAKE_ERROR),
    (aiohttp.ClientConnectorCertificateError, Status.TLS_HANDSHAKE_ERROR),
    (ssl.SSLError, Status.TLS_HANDSHAKE_ERROR),
    (aiohttp.ServerDisconnectedError, Status.CONNECTION_CLOSED),
    (aiohttp.ClientPayloadError, Status.PROTOCOL_ERROR),
    (aiohttp.ClientResponseError, Status.PROTOCOL_ERROR),  # unparsable status line or headers
    (http_exceptions.HttpProcessingError, Status.PROTOCOL_ERROR),
    (ConnectionRefusedError, Status.CONNECTION_REFUSED),
    ((ConnectionResetError, BrokenPipeError, ConnectionAbortedError), Status.CONNECTION_CLOSED),
    (aiohttp.ClientConnectionError, Status.CONNECTION_CLOSED),
)

#: A deadline that fires in a phase means this status.
_TIMEOUT_STATUS = {
    _Phase.CONNECT: Status.CONNECTION_TIMEOUT,
    _Phase.TLS: Status.TLS_HANDSHAKE_ERROR,  # as for SMTP: a handshake that never completes
    _Phase.HEADERS: Status.IO_TIMEOUT,
    _Phase.BODY: Status.IO_TIMEOUT,
}


#: How a fetch's detail starts when a phase deadline fired: the retry policy (probes/retry.py)
#: treats it as silence, whatever status the phase maps it to.
TIMEOUT_DETAIL = "timeout in phase"


def timed_out(fetch: PolicyFetch) -> bool:
    """A phase deadline ended ``fetch`` (not an answer of the policy host)."""
    return fetch.detail.startswith(TIMEOUT_DETAIL)


def _classify(exc: BaseException, phase: _Phase) -> tuple[Status, str]:
    if isinstance(exc, TimeoutError):
        return _TIMEOUT_STATUS[phase], f"{TIMEOUT_DETAIL} {phase}"
    # aiohttp wraps OS and ssl errors (ClientConnectorError.os_error, ClientOSError.__cause__):
    # look at the wrapper first, then at what it wraps, for the most specific row.
    candidates: list[BaseException] = [exc]
    inner = getattr(exc, "os_error", None) or exc.__cause__
    if isinstance(inner, BaseException):
        candidates.append(inner)
    detail = bound_line(f"{type(exc).__name__}: {exc}", _DETAIL_LIMIT)
    for kinds, status in _EXCEPTION_STATUS:
        if any(isinstance(c, kinds) for c in candidates):
            if status is Status.CONNECTION_CLOSED and phase is _Phase.TLS:
                return Status.TLS_HANDSHAKE_ERROR, detail
            return status, detail
    if isinstance(exc, OSError):
        return (Status.TLS_HANDSHAKE_ERROR if phase is _Phase.TLS else Status.CONNECTION_CLOSED), detail
    return Status.UNKNOWN_ERROR, detail


@dataclass(slots=True)
class _Outcome:
    """The mutable record of one fetch while it runs."""

    status: Status = Status.SUCCESS
    detail: str = ""
    http_status: int | None = None
    content_type: str = ""
    location: str = ""
    body_bytes: int = 0
    body: bytes | None = None


class PolicyFetcher:
    """Fetches MTA-STS policies; use as ``async with PolicyFetcher(...) as fetcher``."""

    def __init__(
        self,
        *,
        verifier: Verifier,
        port: int = 443,
        timeouts: FetchTimeouts = FetchTimeouts(),  # frozen, so one shared default is safe
        max_body: int = MAX_POLICY_BYTES,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.verifier = verifier
        self.port = port
        self.timeouts = timeouts
        self.max_body = max_body
        self.now = now
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PolicyFetcher:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(_on_connection_ready)
        connector = aiohttp.TCPConnector(
            resolver=_NoResolver(),
            ssl=capture_context(_CapturingContext, alpn=("http/1.1",)),
            force_close=True,  # one fetch per policy URL per run: nothing to keep alive
            limit=0,  # concurrency is the scheduler's business (per-address and per-provider limits)
            use_dns_cache=False,
            happy_eyeballs_delay=None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxies from the environment
            trace_configs=[trace],
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, domain: str, address: str) -> tuple[PolicyFetch, bytes | None]:
        """Fetch the policy of ``domain`` from ``address``; the body only when status is success.

        Never raises for network or peer behaviour: the PolicyFetch says what happened.
        """
        if self._session is None:
            raise RuntimeError("PolicyFetcher used outside 'async with'")
        host = f"mta-sts.{domain}"
        exchange = _Exchange(self.timeouts)
        outcome = _Outcome()
        started = time.perf_counter()
        token = _CURRENT.set(exchange)
        try:
            async with asyncio.timeout(self.timeouts.total):
                async with asyncio.timeout(self.timeouts.connect) as deadline:
                    exchange.deadline = deadline
                    await self._exchange(host, address, exchange, outcome)
        except Exception as exc:  # every failure becomes a status; see _classify
            outcome.status, outcome.detail = _classify(exc, exchange.phase)
            outcome.body = None
        finally:
            _CURRENT.reset(token)
        return self._record(host, address, exchange, outcome, started), outcome.body

    async def _exchange(self, host: str, address: str, exchange: _Exchange, outcome: _Outcome) -> None:
        assert self._session is not None
        url = URL.build(scheme="https", host=address, port=self.port, path=POLICY_PATH)
        host_header = host if self.port == 443 else f"{host}:{self.port}"
        async with self._session.get(
            url,
            headers={"Host": host_header},
            server_hostname=host,
            allow_redirects=False,  # RFC 8461 §3.3: redirects MUST NOT be followed
            trace_request_ctx=exchange,
        ) as response:
            exchange.enter(_Phase.BODY)
            outcome.http_status = response.status
            outcome.content_type = bound_line(response.headers.get("Content-Type", ""), _DETAIL_LIMIT)
            if response.status != 200:
                outcome.status = Status.APPLICATION_ERROR
                outcome.detail = f"HTTP {response.status}"
                if 300 <= response.status < 400:
                    outcome.location = bound_line(response.headers.get("Location", ""), _DETAIL_LIMIT)
                    outcome.detail = f"redirect {response.status} not followed (RFC 8461 §3.3)"
                return
            if not is_text_plain(outcome.content_type):
                outcome.status = Status.PROTOCOL_ERROR
                outcome.detail = f"Content-Type is not text/plain: {outcome.content_type or '(none)'}"
                return
            await self._read_body(response, outcome)

    async def _read_body(self, response: aiohttp.ClientResponse, outcome: _Outcome) -> None:
        chunks: list[bytes] = []
        received = 0
        while True:
            chunk = await response.content.read(CHUNK_BYTES)
            if not chunk:
                break
            received += len(chunk)
            if received > self.max_body:
                # §3.3: stop at the cap; closing the response drops the connection unread.
                outcome.body_bytes = self.max_body + 1
                outcome.status = Status.PROTOCOL_ERROR
                outcome.detail = f"body over {self.max_body // 1024} KiB"
                response.close()
                return
            chunks.append(chunk)
        outcome.body_bytes = received
        outcome.body = b"".join(chunks)

    def _record(
        self, host: str, address: str, exchange: _Exchange, outcome: _Outcome, started: float
    ) -> PolicyFetch:
        chain: list[bytes] = []
        tls_version = ""
        obj = exchange.ssl_object
        if obj is not None:
            try:
                tls_version = obj.version() or ""
                chain = presented_chain(obj) if tls_version else []
            except (ValueError, ssl.SSLError):  # no completed handshake: nothing was presented
                chain = []
        facts = chain_facts(chain) if chain else None
        pkix = self.verifier.verify(chain, host, self.now()) if chain else None
        return PolicyFetch(
            url=f"https://{host}{POLICY_PATH}",
            address=address,
            status=outcome.status,
            http_status=outcome.http_status,
            content_type=outcome.content_type,
            location=outcome.location,
            body_bytes=outcome.body_bytes,
            tls_version=tls_version,
            chain=facts,
            pkix=pkix,
            detail=outcome.detail,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )

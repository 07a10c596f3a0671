"""The world's ports: the standard ones when they are free, else one free port per kind.

Every simulated host has its own 127.x.y.z address (the IPv6 cases share ::1),
so one port number serves every host of a kind, and a scan takes one
``--smtp-port`` and one ``--https-port``.  The standard ports may be taken:
Debian's default exim4 listens on 127.0.0.1:25 and [::1]:25, Postfix on every
address, another world may run, and without CAP_NET_BIND_SERVICE a port below
1024 gives EACCES even to root (a container).

Protocol between ``up`` and its server processes: a process that cannot bind
its port (EADDRINUSE, EACCES) writes ``<service> <port> <detail>`` to
``<ready file>.busy`` and exits with ``PORT_BUSY_EXIT``; ``up`` then moves every process
of that kind to one free port and starts them again (``PortChoice.move``),
unless the port was asked for by number.  The binding itself is the check,
so a port taken between a check and the bind cannot slip through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BUSY_ERRNOS",
    "DEFAULT_DNS_PORT",
    "HIGH_PORTS",
    "MAX_PORT_MOVES",
    "PORT_BUSY_EXIT",
    "STANDARD_PORTS",
    "PortBusy",
    "PortChoice",
    "binding",
    "busy_file",
    "default_port",
    "first_busy",
    "free_port",
    "is_taken",
    "raise_if_busy",
    "read_ready",
    "report_busy",
    "write_ready",
]

#: SMTP and HTTPS ports senders use: the world's default as root.
STANDARD_PORTS = {"smtp": 25, "https": 443}
#: The defaults without root (binding below 1024 needs the privilege).
HIGH_PORTS = {"smtp": 10025, "https": 10443}
#: The resolver endpoint's default port: high, so no root is needed.
DEFAULT_DNS_PORT = 10053
#: A port that cannot be bound for one of these reasons is "taken": move elsewhere.
BUSY_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})
#: Exit status of a server process whose port was taken (EX_TEMPFAIL: try again elsewhere).
PORT_BUSY_EXIT = 75
#: Moves per kind before ``up`` gives up (each move restarts that kind's processes).
MAX_PORT_MOVES = 5


def default_port(service: str) -> int:
    """The port tried first for ``service`` ("smtp" or "https"): standard as root, else high."""
    return STANDARD_PORTS[service] if os.geteuid() == 0 else HIGH_PORTS[service]


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port the kernel considers free on 127.0.0.1 now, not in ``exclude``.

    The world binds it on other addresses, where it may still be taken (another
    world): the server processes find out, and ``up`` moves again.
    """
    skip = set(exclude)
    for _ in range(20):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in skip:
            return port
    raise OSError(errno.EADDRNOTAVAIL, "no free port on 127.0.0.1")


def is_taken(exc: BaseException) -> bool:
    """Whether a bind failure says the port is taken (uvloop chains the OSError that has the errno)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in BUSY_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PortBusy(Exception):
    """``service``'s ``port`` could not be bound on one of the world's addresses."""

    def __init__(self, service: str, port: int, detail: str) -> None:
        super().__init__(f"{service} port {port} is taken ({detail})")
        self.service, self.port, self.detail = service, port, detail


@contextlib.asynccontextmanager
async def binding(fleet: AbstractAsyncContextManager[Any], service: str, port: int) -> AsyncIterator[None]:
    """``async with fleet``, where a bind failure on a taken port becomes ``PortBusy``."""
    try:
        await fleet.__aenter__()
    except OSError as exc:
        await fleet.__aexit__(type(exc), exc, exc.__traceback__)  # close what was bound already
        if is_taken(exc):
            raise PortBusy(service, port, str(exc)) from exc
        raise
    try:
        yield
    finally:
        await fleet.__aexit__(None, None, None)


def write_ready(path: Path, text: str) -> None:
    """A ready file's one line, atomically (``up`` polls for it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.rstrip("\n") + "\n")
    tmp.replace(path)


def read_ready(text: str) -> int | None:
    """The port a ready file announces; None while it is still empty."""
    text = text.strip()
    return int(text) if text else None


def busy_file(ready_file: Path) -> Path:
    """Where a server says its port was taken: beside its ready file, never in it (whoever
    waits for the ready file, docker-compose's health check too, must not take it for ready)."""
    return ready_file.with_name(ready_file.name + ".busy")


def report_busy(ready_file: Path, busy: PortBusy) -> None:
    write_ready(busy_file(ready_file), f"{busy.service} {busy.port} {' '.join(busy.detail.split())}")


def raise_if_busy(ready_file: Path) -> None:
    """``PortBusy`` when the server behind ``ready_file`` reported its port taken."""
    try:
        text = busy_file(ready_file).read_text().strip()
    except FileNotFoundError:
        return
    service, port, *detail = text.split(" ", 2)
    raise PortBusy(service, int(port), detail[0] if detail else "")


def first_busy(service: str, addresses: Iterable[str], port: int) -> PortBusy | None:
    """Try to bind TCP ``port`` on every address (closed again at once); the first failure.

    For servers that are configured before they start (tier (b)): there the port
    has to be known when the files are written.
    """
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno in BUSY_ERRNOS:
                    return PortBusy(service, port, f"{address}: {exc.strerror}")
                raise
    return None


@dataclass
class PortChoice:
    """The port of one kind of listener: what was asked, what is used, and why it moved.

    ``asked``: None for the default (standard, moving to a free port when taken),
    0 for any free port, else that port and no other.
    """

    service: str
    asked: int | None
    port: int
    tried: list[int] = field(default_factory=list)
    #: The first port that was taken, and why (only when the default was asked for).
    wanted: int | None = None
    reason: str = ""

    @classmethod
    def initial(cls, service: str, asked: int | None, exclude: Iterable[int] = ()) -> PortChoice:
        if asked is not None:
            port = asked
        elif service == "dns":
            port = DEFAULT_DNS_PORT
        else:
            port = default_port(service)
        if port == 0 and service != "dns":  # the DNS server picks its own (free for UDP and TCP)
            port = free_port(exclude)
        return cls(service, asked, port)

    @property
    def movable(self) -> bool:
        return self.asked in (None, 0) and len(self.tried) < MAX_PORT_MOVES

    def move(self, busy: PortBusy, exclude: Iterable[int] = ()) -> None:
        """Another port after ``busy``; raises ``busy`` again when this choice may not move."""
        if not self.movable:
            raise busy
        if self.asked is None and self.wanted is None:
            self.wanted, self.reason = busy.port, busy.detail
        self.tried.append(self.port)
        self.port = 0 if self.service == "dns" else free_port([*self.tried, *exclude])

    def refusal(self, busy: PortBusy) -> str:
        """Why ``up`` gave up on this kind, and what to do."""
        if self.asked not in (None, 0):
            flag = f"--{self.service}-port"
            return f"{busy}: pass another {flag}, or leave {flag} out to let the world pick a free port"
        return f"{busy}; no free {self.service} port after {len(self.tried) + 1} tries"

    def fallback(self, port: int) -> dict[str, Any] | None:
        """What ``endpoints.json`` says about a default port that was taken (None if it was not)."""
        if self.wanted is None:
            return None
        return {"service": self.service, "wanted": self.wanted, "port": port, "reason": self.reason}

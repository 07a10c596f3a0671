"""A tiny recursive-resolver stand-in for tests: a thread on a free UDP port of 127.0.0.1
that answers each query with what a test's ``answer`` function returns (wire bytes), or
not at all (None).  Started and stopped (joined) by ``resolver``."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

__all__ = ["HOST", "resolver"]

HOST = "127.0.0.1"


@contextlib.contextmanager
def resolver(answer: Callable[[bytes], bytes | None]) -> Iterator[tuple[str, int]]:
    """(host, port) of the resolver thread while the block runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            out = answer(data)
            if out is not None:
                sock.sendto(out, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield HOST, int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        sock.close()

"""Context managers that run parts of the world for a test, in their own processes.

    with running_dns(WorldSpec("scenarios")) as ep:
        dns.query.udp(query, ep.host, port=ep.port)

The server runs in a subprocess (true isolation: its event loop, its crash) and
is stopped by its PID when the block ends.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from testbed.control import (
    DEFAULT_DNS_ADDR,
    READY_TIMEOUT,
    NetOptions,
    WorldSpec,
    child_env,
    serve_argv,
    wait_ready,
)

__all__ = ["Endpoint", "running_dns"]


class Endpoint(NamedTuple):
    host: str
    port: int
    pid: int


@contextmanager
def running_dns(
    spec: WorldSpec | None = None,
    host: str = DEFAULT_DNS_ADDR,
    port: int = 0,
    net: NetOptions | None = None,
    timeout: float = READY_TIMEOUT,
) -> Iterator[Endpoint]:
    """A tier (a) resolver for ``spec`` (default: the scenario world) on host:port (0: any)."""
    spec = spec or WorldSpec("scenarios")
    with tempfile.TemporaryDirectory(prefix="testbed-dns-") as tmp:
        ready, log = Path(tmp) / "ready", Path(tmp) / "dns.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                serve_argv(spec, host, port, ready, net),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(),
            )
        try:
            yield Endpoint(host, wait_ready(proc, ready, timeout, log), proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

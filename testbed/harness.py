"""Context managers that run parts of the world for a test, in their own processes.

    with running_dns(WorldSpec("scenarios")) as ep:
        dns.query.udp(query, ep.host, port=ep.port)

    with running_world(WorldSpec("scenarios")) as world:
        world.endpoints["dns"], world.endpoints["smtp_port"], world.state_dir / "domains.txt"

The server runs in a subprocess (true isolation: its event loop, its crash) and
is stopped by its PID when the block ends.  ``running_world`` runs the whole
world (``control.up``/``down``) in a temporary state dir on free ports (``ports.py``:
another world running at the same time moves them again).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from testbed import control
from testbed.control import (
    DEFAULT_DNS_ADDR,
    READY_TIMEOUT,
    NetOptions,
    WorldSpec,
    child_env,
    serve_argv,
    wait_ready,
)

__all__ = ["Endpoint", "RunningWorld", "running_dns", "running_world"]


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


class RunningWorld(NamedTuple):
    state_dir: Path
    #: The contents of ``endpoints.json`` (dns, smtp_port, https_port, ca_file, intermediates, ...).
    endpoints: dict[str, Any]
    #: ``state.json``: the servers with their PIDs.
    state: dict[str, Any]


@contextmanager
def running_world(
    spec: WorldSpec | None = None,
    state_dir: Path | None = None,
    net: NetOptions | None = None,
) -> Iterator[RunningWorld]:
    """The whole tier (a) world for ``spec`` (default: the scenario world), any free high ports.

    ``state_dir``: where ``up`` keeps its files (default: a temporary directory).
    Every server ``up`` started is stopped by its PID when the block ends.
    """
    spec = spec or WorldSpec("scenarios")
    with tempfile.TemporaryDirectory(prefix="testbed-world-") as tmp:
        where = state_dir or Path(tmp)
        try:
            state = control.up(spec, where, dns_port=0, net=net, smtp_port=0, https_port=0)
            endpoints = json.loads((where / "endpoints.json").read_text())
            yield RunningWorld(where, endpoints, state)
        finally:
            control.down(where)

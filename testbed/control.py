"""Start, stop and inspect a running world: detached servers, PIDs recorded in a state dir.

``up`` is idempotent (the same world already running and answering: nothing
happens); ``down`` stops exactly the PIDs ``up`` recorded, after checking each
is still the process we started (PID plus its start time from /proc, so a
recycled PID is never signalled), SIGTERM first, SIGKILL after a grace period.

State dir layout: ``state.json`` (servers, endpoints, PIDs), ``world.json``
(the world spec and counts), ``domains.txt`` (the list to scan), ``dns.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query

from testbed.scale import load_profile, scale_world
from testbed.scenarios import scenario_world
from testbed.world import World

__all__ = [
    "DEFAULT_DNS_ADDR",
    "DEFAULT_DNS_PORT",
    "DEFAULT_STATE_DIR",
    "ControlError",
    "NetOptions",
    "WorldSpec",
    "dns_answers",
    "down",
    "serve_argv",
    "status",
    "up",
]

DEFAULT_STATE_DIR = Path("run/testbed")
#: The resolver endpoint; 127.0.0.0/16 is kept free of simulated hosts (addressing.py).
DEFAULT_DNS_ADDR = "127.0.0.53"
#: A high port, so no root is needed; 0 lets the OS pick.
DEFAULT_DNS_PORT = 10053
#: Seconds to wait for a server to report ready (a 1M-domain world takes a while to build).
READY_TIMEOUT = 180.0
#: Seconds between SIGTERM and SIGKILL in ``down``.
STOP_GRACE = 5.0


class ControlError(RuntimeError):
    """up/down could not do what was asked; the message says why."""


@dataclass(frozen=True)
class WorldSpec:
    """Which world: enough to rebuild it identically in any process."""

    kind: str = "scenarios"
    domains: int = 0
    seed: int = 1
    profile: str | None = None

    def build(self) -> World:
        if self.kind == "scenarios":
            return scenario_world()
        profile = load_profile(self.profile) if self.profile else None
        return scale_world(self.domains, self.seed, profile)

    def argv(self) -> list[str]:
        if self.kind == "scenarios":
            return ["--scenarios"]
        args = ["--domains", str(self.domains), "--seed", str(self.seed)]
        return [*args, "--profile", self.profile] if self.profile else args


@dataclass(frozen=True)
class NetOptions:
    """Imitated Internet conditions for the DNS server (seconds, fraction)."""

    rtt: float = 0.0
    jitter: float = 0.0
    blackhole: float = 0.0

    def argv(self) -> list[str]:
        return ["--rtt", str(self.rtt), "--jitter", str(self.jitter), "--blackhole", str(self.blackhole)]


def serve_argv(
    spec: WorldSpec, addr: str, port: int, ready_file: Path, net: NetOptions | None = None
) -> list[str]:
    """The command line of a tier (a) DNS server process."""
    net = net or NetOptions()
    head = [sys.executable, "-m", "testbed", "serve", *spec.argv()]
    return [*head, "--dns-addr", addr, "--dns-port", str(port), "--ready-file", str(ready_file), *net.argv()]


def child_env() -> dict[str, str]:
    """The environment for server processes: our package importable wherever we run from."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def wait_ready(
    proc: subprocess.Popen[bytes], ready_file: Path, timeout: float, log: Path | None = None
) -> int:
    """The port the server wrote to ``ready_file``; raises if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists() and (text := ready_file.read_text().strip()):
            return int(text)
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise ControlError(f"server exited with {proc.returncode} before ready\n{tail}")
        time.sleep(0.05)
    raise ControlError(f"server not ready after {timeout:.0f}s")


def dns_answers(addr: str, port: int, timeout: float = 2.0) -> bool:
    """True when the resolver answers the root SOA (the scanner's preflight name)."""
    query = dns.message.make_query(".", "SOA", use_edns=0)
    query.flags |= dns.flags.AD
    try:
        dns.query.udp(query, addr, port=port, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return False
    return True


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(server: dict[str, Any]) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(server["pid"], os.WNOHANG)  # reap if it is our own child
    return bool(_start_time(server["pid"]) == server["start_time"])


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def up(
    spec: WorldSpec,
    state_dir: Path = DEFAULT_STATE_DIR,
    dns_addr: str = DEFAULT_DNS_ADDR,
    dns_port: int = DEFAULT_DNS_PORT,
    net: NetOptions | None = None,
) -> dict[str, Any]:
    """Start the world's servers (detached) unless the same world already runs; the state."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(state_dir)
    if state is not None:
        running = all(_alive(s) and dns_answers(s["addr"], s["port"]) for s in state["servers"])
        if running and state["world"] == asdict(spec):
            return state
        if running:
            raise ControlError(f"another world is running from {state_dir}: run `testbed down` first")
        down(state_dir)  # crashed leftovers: clear them before starting afresh
    world = spec.build()
    (state_dir / "domains.txt").write_text("".join(f"{d.name}\n" for d in world.domains))
    counts = {"domains": len(world.domains), "hosts": len(world.hosts), "zones": len(world.zones)}
    _write_json(state_dir / "world.json", {"spec": asdict(spec), **counts})
    del world
    ready, log = state_dir / "dns.ready", state_dir / "dns.log"
    ready.unlink(missing_ok=True)
    argv = serve_argv(spec, dns_addr, dns_port, ready, net)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
    try:
        port = wait_ready(proc, ready, READY_TIMEOUT, log)
        if not dns_answers(dns_addr, port, timeout=5.0):
            raise ControlError("DNS server reported ready but does not answer")
    except ControlError:
        proc.kill()
        proc.wait()
        raise
    server = {
        "name": "dns",
        "pid": proc.pid,
        "start_time": _start_time(proc.pid),
        "addr": dns_addr,
        "port": port,
    }
    state = {
        "world": asdict(spec),
        "servers": [{**server, "log": str(log), "argv": argv}],
        "started": time.time(),
    }
    _write_json(state_dir / "state.json", state)
    return state


def down(state_dir: Path = DEFAULT_STATE_DIR, grace: float = STOP_GRACE) -> list[str]:
    """Stop the recorded servers; the names of those that were stopped.  Idempotent."""
    state = _read_state(state_dir)
    stopped: list[str] = []
    for server in state["servers"] if state else []:
        if not _alive(server):
            continue
        os.kill(server["pid"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(server):
            os.kill(server["pid"], signal.SIGKILL)
            while _alive(server):
                time.sleep(0.02)
        stopped.append(server["name"])
    for name in ("state.json", "dns.ready"):
        (state_dir / name).unlink(missing_ok=True)
    return stopped


def status(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """{"state": stopped|running|crashed, "servers": [...]} with each server's own state."""
    state = _read_state(state_dir)
    if state is None:
        return {"state": "stopped", "servers": []}
    servers = []
    for s in state["servers"]:
        alive = _alive(s)
        answers = alive and dns_answers(s["addr"], s["port"])
        servers.append({"name": s["name"], "pid": s["pid"], "addr": s["addr"], "port": s["port"],
                        "state": "running" if answers else "crashed"})  # fmt: skip
    overall = "running" if all(s["state"] == "running" for s in servers) else "crashed"
    return {"state": overall, "world": state["world"], "servers": servers}

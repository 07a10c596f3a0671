"""Start, stop and inspect a running world: detached servers, PIDs recorded in a state dir.

``up`` starts the whole tier (a) world: the DNS resolver endpoint, one mail
process per shard of the world's listeners (SMTP on every MX host's address,
HTTPS on every policy host's; ``services.py``) and the persistent PKI they
share (``worldpki.py``).  It is idempotent (the same world already running
and answering: nothing happens); ``down`` stops exactly the PIDs ``up``
recorded, after checking each is still the process we started (PID plus its
start time from /proc, so a recycled PID is never signalled), SIGTERM first,
SIGKILL after a grace period.

One state dir (``default_state_dir``: the same whatever the working
directory, ``--state-dir`` or ``$MXSCAN_TESTBED_DIR`` to choose another) is
how ``status``, ``stats``, ``truth`` and ``down`` find what ``up`` started.
Ports: ``ports.py`` (the standard ones, or one free port per kind when taken).

State dir layout: ``state.json`` (servers, PIDs), ``endpoints.json`` (what a
scan needs: resolver, ports, CA files, preflight name), ``world.json`` (the
world spec, counts and Internet-like conditions: latency, hostile shares and
their sources), ``domains.txt`` (the list to scan), ``pki/``, ``dns.log``,
``mail-<i>.shard`` (what mail process ``i`` serves: ``services.write_shard``),
``mail-<i>.log``, ``mail-<i>.stats.json`` (``mail_stats``).

The world is built once in ``up`` (and once more by the DNS process, which
answers for all of it); each mail process loads only its shard from its shard
file instead of rebuilding the world (at 1M domains: 34 processes x ~9 s of CPU
and ~400 MB each before).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dns.exception
import dns.flags
import dns.message
import dns.query

from testbed import services
from testbed.internet import conditions, internet_scenario_world
from testbed.ports import PortBusy, PortChoice, busy_file, first_busy, raise_if_busy, read_ready
from testbed.scale import load_profile, scale_world
from testbed.scenarios import PREFLIGHT_BOGUS, scenario_world
from testbed.world import World
from testbed.worldpki import WorldPki

__all__ = [
    "DEFAULT_DNS_ADDR",
    "STATE_DIR_ENV",
    "ControlError",
    "NetOptions",
    "WorldSpec",
    "default_state_dir",
    "dns_answers",
    "down",
    "mail_argv",
    "mail_stats",
    "merge_stats",
    "serve_argv",
    "status",
    "tcp_answers",
    "up",
]

#: Names the state dir of ``up``/``down``/``status``/``stats``/``truth`` when no
#: ``--state-dir`` is given (``default_state_dir``).
STATE_DIR_ENV = "MXSCAN_TESTBED_DIR"
#: The resolver endpoint; 127.0.0.0/16 is kept free of simulated hosts (addressing.py).
DEFAULT_DNS_ADDR = "127.0.0.53"
#: Seconds to wait for a server to report ready (a 1M-domain world takes a while to build).
READY_TIMEOUT = 180.0
#: Seconds between SIGTERM and SIGKILL in ``down``.
STOP_GRACE = 5.0


def default_state_dir() -> Path:
    """One state dir whatever the working directory, so every command finds the running world.

    ``$MXSCAN_TESTBED_DIR``, else ``$XDG_STATE_HOME/mxscan/testbed``, else
    ``~/.local/state/mxscan/testbed`` (XDG base directories: state that outlives
    a process; the PKI is reused, logs and a scale world's list can be large,
    too large for the ``$XDG_RUNTIME_DIR`` tmpfs).
    """
    named = os.environ.get(STATE_DIR_ENV)
    if named:
        try:
            return Path(named).expanduser().absolute()
        except RuntimeError:  # "~" with no home to expand it to
            raise ControlError(f"${STATE_DIR_ENV} is {named!r}, but there is no home directory") from None
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):  # a relative value is ignored (XDG base directory spec)
        return Path(xdg) / "mxscan" / "testbed"
    try:
        home = Path.home()
    except RuntimeError:  # no $HOME and no passwd entry (a container's arbitrary uid)
        return _private_tmp_dir()
    return home / ".local" / "state" / "mxscan" / "testbed"


def _private_tmp_dir() -> Path:
    """``<tmp>/mxscan-testbed-<uid>``, created 0700; refused unless it is ours alone.

    Another user could create that name first: a directory we do not own (or a link)
    could hand ``down`` PIDs to signal, so it is an error, never used.
    """
    path = Path(tempfile.gettempdir()) / f"mxscan-testbed-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ControlError(
            f"no home directory, and {path} is not a private directory of ours: "
            f"set ${STATE_DIR_ENV} or pass --state-dir"
        )
    return path


class ControlError(RuntimeError):
    """up/down could not do what was asked; the message says why."""


@dataclass(frozen=True)
class WorldSpec:
    """Which world: enough to rebuild it identically in any process.

    kind: "scenarios" (the catalogue), "internet-scenarios" (``internet.py``'s set, under
    the internet profile's latency or ``profile``'s), or "scale".  profile: a TOML path or a
    built-in profile name ("internet").
    """

    kind: str = "scenarios"
    domains: int = 0
    seed: int = 1
    profile: str | None = None

    def build(self) -> World:
        if self.kind == "scenarios":
            return scenario_world()
        profile = load_profile(self.profile) if self.profile else None
        if self.kind == "internet-scenarios":
            return internet_scenario_world(profile)
        return scale_world(self.domains, self.seed, profile)

    def argv(self) -> list[str]:
        if self.kind == "scenarios":
            return ["--scenarios"]
        if self.kind == "internet-scenarios":
            args = ["--scenarios", "internet"]
        else:
            args = ["--domains", str(self.domains), "--seed", str(self.seed)]
        return [*args, "--profile", self.profile] if self.profile else args


@dataclass(frozen=True)
class NetOptions:
    """Imitated Internet conditions for the DNS server (seconds, fraction); a latency left
    None is the world's own (its profile's ``dns_rtt``/``dns_jitter``, else none)."""

    rtt: float | None = None
    jitter: float | None = None
    blackhole: float = 0.0

    def argv(self) -> list[str]:
        given = [("--rtt", self.rtt), ("--jitter", self.jitter), ("--blackhole", self.blackhole)]
        return [arg for flag, value in given if value is not None for arg in (flag, str(value))]


def serve_argv(
    spec: WorldSpec,
    addr: str,
    port: int,
    ready_file: Path,
    net: NetOptions | None = None,
    pki_dir: Path | None = None,
) -> list[str]:
    """The command line of a tier (a) DNS server process (TLSA data from ``pki_dir`` when given)."""
    net = net or NetOptions()
    head = [sys.executable, "-m", "testbed", "serve", *spec.argv()]
    pki = ["--pki-dir", str(pki_dir)] if pki_dir is not None else []
    args = ["--dns-addr", addr, "--dns-port", str(port), "--ready-file", str(ready_file)]
    return [*head, *args, *net.argv(), *pki]


def mail_argv(
    spec: WorldSpec,
    shard: int,
    shards: int,
    pki_dir: Path,
    smtp_port: int,
    https_port: int,
    ready_file: Path,
    stats_file: Path | None = None,
    shard_file: Path | None = None,
) -> list[str]:
    """The command line of one mail process (SMTP + HTTPS of one shard): the shard from
    ``shard_file`` when given, else from the world ``spec`` rebuilt."""
    stats = ["--stats-file", str(stats_file)] if stats_file is not None else []
    world = ["--shard-file", str(shard_file)] if shard_file is not None else spec.argv()
    return [
        *(sys.executable, "-m", "testbed", "serve-mail", *world),
        *("--shard", str(shard), "--shards", str(shards), "--pki-dir", str(pki_dir)),
        *("--smtp-port", str(smtp_port), "--https-port", str(https_port), "--ready-file", str(ready_file)),
        *stats,
    ]


def child_env() -> dict[str, str]:
    """The environment for server processes: our package importable wherever we run from."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def wait_ready(
    proc: subprocess.Popen[bytes], ready_file: Path, timeout: float, log: Path | None = None
) -> int:
    """The port the server wrote to ``ready_file``; raises if it exits or takes too long, and
    ``PortBusy`` when it could not bind its port (``ports``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raise_if_busy(ready_file)
        if ready_file.exists() and (port := read_ready(ready_file.read_text())) is not None:
            return port
        if proc.poll() is not None:
            raise_if_busy(ready_file)  # written just before it exited
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


def tcp_answers(addr: str, port: int, timeout: float = 2.0) -> bool:
    """True when something accepts a TCP connection at addr:port (a mail process's listener)."""
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def _answers(server: dict[str, Any]) -> bool:
    if server.get("kind", "dns") == "dns":
        return dns_answers(server["addr"], server["port"])
    return server.get("addr") is None or tcp_answers(server["addr"], server["port"])


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


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )


def _server(name: str, kind: str, proc: subprocess.Popen[bytes], addr: str | None, port: int,
            log: Path, argv: list[str]) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "kind": kind, "pid": proc.pid, "start_time": _start_time(proc.pid),
            "addr": addr, "port": port, "log": str(log), "argv": argv}  # fmt: skip


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """SIGINT during the block acts when it ends, as it would have (KeyboardInterrupt, ...).

    Why: Ctrl-C between starting a process and recording it would leave that process running
    with nothing to stop it.  A handler, not a signal mask: a mask would be inherited by the
    servers started in the block, a handler is reset by exec.  Main thread only (signals are).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


class _Group:
    """Server processes that bind the ports of ``choices``, started and restarted together.

    When one reports its port taken (``PortBusy``), the whole group stops, that
    kind moves to one free port (a scan takes one port per kind), and the group
    starts again.
    """

    def __init__(self, plan: Callable[[], list[_Planned]], choices: list[PortChoice]) -> None:
        self._plan = plan
        self.choices = {c.service: c for c in choices}
        self.started: list[tuple[dict[str, Any], subprocess.Popen[bytes], Path]] = []

    def spawn(self) -> None:
        with _interrupt_deferred():  # a server started is in ``started`` before Ctrl-C acts
            for planned in self._plan():
                planned.ready.unlink(missing_ok=True)
                busy_file(planned.ready).unlink(missing_ok=True)
                proc = _spawn(planned.argv, planned.log)
                server = _server(planned.name, planned.kind, proc, planned.addr, planned.port, planned.log,
                                 planned.argv)  # fmt: skip
                self.started.append((server, proc, planned.ready))

    def wait(self) -> list[dict[str, Any]]:
        """Every server ready and answering (restarted on other ports as needed); their entries."""
        while True:
            try:
                for server, proc, ready in self.started:
                    port = wait_ready(proc, ready, READY_TIMEOUT, Path(server["log"]))
                    if server["kind"] == "dns":
                        server["port"] = port
                    if not _answers(server):
                        raise ControlError(f"{server['name']} reported ready but does not answer")
                return [server for server, _, _ in self.started]
            except PortBusy as busy:
                self.kill()
                choice = self.choices.get(busy.service)
                if choice is None:
                    raise ControlError(str(busy)) from None
                if not choice.movable:
                    raise ControlError(choice.refusal(busy)) from None
                choice.move(busy, [c.port for c in self.choices.values() if c is not choice])
                self.spawn()

    def kill(self) -> None:
        for _, proc, _ in self.started:
            proc.kill()
            proc.wait()
        self.started = []


class _Planned(NamedTuple):
    name: str
    kind: str
    argv: list[str]
    addr: str | None
    port: int
    ready: Path
    log: Path


def _write_shards(world: World, state_dir: Path) -> list[tuple[str, str] | None]:
    """Each mail process's shard file (``mail-<i>.shard``); per shard, the listener ``status``
    connects to."""
    parts = services.shards(world)
    for i, part in enumerate(parts):
        services.write_shard(_shard_file(state_dir, i), part, world.conditions)
    return [services.probe_address(part) for part in parts]


def _shard_file(state_dir: Path, index: int) -> Path:
    return state_dir / f"mail-{index}.shard"


def _mail_plan(
    spec: WorldSpec, state_dir: Path, pki_dir: Path, probes: list[tuple[str, str] | None],
    smtp: PortChoice, https: PortChoice,
) -> Callable[[], list[_Planned]]:  # fmt: skip
    """The mail processes, one per shard (its file written by ``_write_shards``), on the
    choices' current ports."""

    def plan() -> list[_Planned]:
        out = []
        for i, probe in enumerate(probes):
            ready, log = state_dir / f"mail-{i}.ready", state_dir / f"mail-{i}.log"
            stats = state_dir / f"mail-{i}.stats.json"
            argv = mail_argv(spec, i, len(probes), pki_dir, smtp.port, https.port, ready, stats,
                             _shard_file(state_dir, i))  # fmt: skip
            addr, port = (probe[1], smtp.port if probe[0] == "smtp" else https.port) if probe else (None, 0)
            out.append(_Planned(f"mail-{i}", "mail", argv, addr, port, ready, log))
        return out

    return plan


def up(
    spec: WorldSpec,
    state_dir: Path | None = None,
    dns_addr: str = DEFAULT_DNS_ADDR,
    dns_port: int | None = None,
    net: NetOptions | None = None,
    smtp_port: int | None = None,
    https_port: int | None = None,
    tier: str = "a",
) -> dict[str, Any]:
    """Start the world's servers (detached) unless the same world already runs; the state.

    Ports (``dns_port``, ``smtp_port``, ``https_port``): None for the default
    (``ports``: standard as root, else high; a free one when that is taken,
    listed in ``endpoints.json`` under ``port_fallbacks``), 0 for any free
    port, else exactly that port.  ``state_dir``: default ``default_state_dir()``.
    ``tier``: "a" (built-in servers) or "b" (NSD + unbound + nginx from Debian; root, port 53).
    """
    state_dir = state_dir or default_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(state_dir)
    if state is not None:
        running = all(_alive(s) and _answers(s) for s in state["servers"])
        if running and state["world"] == asdict(spec) and state.get("tier", "a") == tier:
            return state
        if running:
            raise ControlError(f"another world is running from {state_dir}: run `testbed down` first")
        down(state_dir)  # crashed leftovers: clear them before starting afresh
    state_dir = state_dir.resolve()
    if tier == "b":
        if spec.kind == "internet-scenarios" or (
            spec.profile and conditions(load_profile(spec.profile)).active()
        ):
            raise ControlError("tier (b) does not serve the Internet-like conditions: use tier (a)")
        return _up_tier_b(spec, state_dir, smtp_port)
    world = spec.build()
    (state_dir / "domains.txt").write_text("".join(f"{d.name}\n" for d in world.domains))
    pki = WorldPki.load_or_create(state_dir / "pki")
    pki.prepare(world)
    probes = _write_shards(world, state_dir)
    counts = {"domains": len(world.domains), "hosts": len(world.hosts), "zones": len(world.zones)}
    info = {
        "spec": asdict(spec),
        **counts,
        "mail_processes": len(probes),
        "conditions": world.conditions.as_dict(),
    }
    _write_json(state_dir / "world.json", info)
    del world
    dns = PortChoice.initial("dns", dns_port)
    smtp = PortChoice.initial("smtp", smtp_port)
    https = PortChoice.initial("https", https_port, exclude=(smtp.port,))

    def dns_plan() -> list[_Planned]:
        ready, log = state_dir / "dns.ready", state_dir / "dns.log"
        argv = serve_argv(spec, dns_addr, dns.port, ready, net, pki.directory)
        return [_Planned("dns", "dns", argv, dns_addr, dns.port, ready, log)]

    groups = [_Group(dns_plan, [dns]), _Group(_mail_plan(spec, state_dir, pki.directory, probes, smtp, https),
                                               [smtp, https])]  # fmt: skip
    try:
        for group in groups:  # all start at once (DNS builds the world, mail loads its shard); then wait
            group.spawn()
        servers = [server for group in groups for server in group.wait()]
    except BaseException:  # Ctrl-C while a big world builds too: no state file names them yet
        for group in groups:
            group.kill()
        raise
    fallbacks = [
        f for c in (dns, smtp, https) if (f := c.fallback(servers[0]["port"] if c is dns else c.port))
    ]
    state = {"world": asdict(spec), "servers": servers, "started": time.time(), "port_fallbacks": fallbacks}
    endpoints = {
        "dns": f"{dns_addr}:{servers[0]['port']}",
        "smtp_port": smtp.port,
        "https_port": https.port,
        "ca_file": str(pki.ca_file),
        "intermediates": str(pki.intermediates_file),
        # Both names are bogus in every world; only the scenario world has bogus.scenario.test.
        "preflight_bogus": PREFLIGHT_BOGUS[0] if spec.kind == "scenarios" else PREFLIGHT_BOGUS[1],
        # Default ports that were taken, and the port used instead: what ``up`` printed.
        "port_fallbacks": fallbacks,
        "egress_check": egress_check(f"{dns_addr}:{servers[0]['port']}"),
    }
    _write_json(state_dir / "endpoints.json", endpoints)
    _write_json(state_dir / "state.json", state)
    return state


def egress_check(resolver: str) -> list[str]:
    """The world's targets for a scanner's egress pre-flight (``--egress-check``): its
    resolver's TCP listener.  Any listener that completes a TCP handshake answers what the
    pre-flight asks (can this machine connect out?), and it is no MX host, so the check adds
    no connection to any host's ``stats``.  IPv4 only: the world's one IPv6 address (::1) is an
    MX host's (working in the catalogue, SYN-dropping in an Internet-like world), so IPv6
    egress stays "untested" and the scan probes IPv6 as asked."""
    return [resolver]


def _up_tier_b(spec: WorldSpec, state_dir: Path, smtp_port: int | None) -> dict[str, Any]:
    from testbed.tier_b.up_b import FLEET_HTTPS_PORT, start_tier_b_world

    world = spec.build()
    probes = _write_shards(world, state_dir)
    # Tier (b)'s files name the SMTP port before any server starts: check it by binding first.
    smtp = PortChoice.initial("smtp", smtp_port, exclude=(FLEET_HTTPS_PORT,))
    addresses = {a for h in services.smtp_hosts(world) for a in (h.ipv4, h.ipv6) if a}
    while busy := first_busy("smtp", sorted(addresses), smtp.port):
        if not smtp.movable:
            raise ControlError(smtp.refusal(busy))
        smtp.move(busy, (FLEET_HTTPS_PORT,))
    fallbacks = [f for f in (smtp.fallback(smtp.port),) if f]

    def start_mail(smtp_port: int, https_port: int) -> list[dict[str, Any]]:
        # Fixed now: the files already name these ports.
        fixed = [PortChoice("smtp", smtp_port, smtp_port), PortChoice("https", https_port, https_port)]
        group = _Group(_mail_plan(spec, state_dir, state_dir / "pki", probes, *fixed), fixed)
        group.spawn()
        try:
            return group.wait()
        except (ControlError, OSError):
            group.kill()
            raise

    servers, _ = start_tier_b_world(
        world, state_dir, scenarios=spec.kind == "scenarios", spec=asdict(spec), smtp_port=smtp.port,
        start_mail=start_mail,
    )  # fmt: skip
    endpoints = json.loads((state_dir / "endpoints.json").read_text())
    extra = {"port_fallbacks": fallbacks, "egress_check": egress_check(str(endpoints["dns"]))}
    _write_json(state_dir / "endpoints.json", {**endpoints, **extra})
    state = {"world": asdict(spec), "tier": "b", "servers": servers, "started": time.time(),
             "port_fallbacks": fallbacks}  # fmt: skip
    _write_json(state_dir / "state.json", state)
    return state


def down(state_dir: Path | None = None, grace: float = STOP_GRACE) -> list[str]:
    """Stop the recorded servers; the names of those that were stopped.  Idempotent."""
    state_dir = state_dir or default_state_dir()
    state = _read_state(state_dir)
    stopped: list[str] = []
    tier = state.get("tier", "a") if state else "a"
    for server in state["servers"] if state else []:
        if not _alive(server):
            continue
        if tier == "b":
            from testbed.tier_b.up_b import stop_server

            if stop_server(server):  # NSD forks and nginx has workers: stop the whole tree
                stopped.append(server["name"])
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
    for server in state["servers"] if state else []:
        (state_dir / f"{server['name']}.ready").unlink(missing_ok=True)
    for name in ("state.json", "endpoints.json"):
        (state_dir / name).unlink(missing_ok=True)
    return stopped


def status(state_dir: Path | None = None) -> dict[str, Any]:
    """{"state": stopped|running|crashed, "servers": [...]} with each server's own state."""
    state_dir = state_dir or default_state_dir()
    state = _read_state(state_dir)
    if state is None:
        return {"state": "stopped", "servers": []}
    servers = []
    for s in state["servers"]:
        answers = _alive(s) and _answers(s)
        servers.append({"name": s["name"], "pid": s["pid"], "addr": s["addr"], "port": s["port"],
                        "state": "running" if answers else "crashed"})  # fmt: skip
    overall = "running" if all(s["state"] == "running" for s in servers) else "crashed"
    return {"state": overall, "world": state["world"], "servers": servers}


def mail_stats(
    state_dir: Path | None = None, *, reset: bool = False, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Each running mail process's SMTP connection counts (``serve_mail``), one dict per process.

    Asks each process for a fresh snapshot (SIGUSR1; SIGUSR2 with ``reset``: the
    snapshot, then counts start again from zero) and waits for it.  Peaks are per
    process: a provider's global peak is one process's only if all its hosts share
    that process (every world under ``services.MAX_SOCKETS_PER_PROCESS`` listeners).
    """
    state_dir = state_dir or default_state_dir()
    state = _read_state(state_dir)
    if state is None:
        raise ControlError(f"no world is running from {state_dir}")
    snapshots = []
    for server in state["servers"]:
        if server.get("kind") != "mail":
            continue
        if not _alive(server):
            raise ControlError(f"{server['name']} is not running")
        path = state_dir / f"{server['name']}.stats.json"
        path.unlink(missing_ok=True)
        os.kill(server["pid"], signal.SIGUSR2 if reset else signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise ControlError(f"{server['name']} wrote no statistics within {timeout:.0f}s")
            time.sleep(0.02)
        snapshots.append({"name": server["name"], **json.loads(path.read_text())})
    return snapshots


def merge_stats(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """One view over every mail process's snapshot (``mail_stats``): counts summed per host
    and provider, the most connections at once per address (each address is served by one
    process, so exact), and the processes' peaks of open connections with their sum (an
    upper bound of the world's peak: the processes peak at different moments)."""
    merged: dict[str, Any] = {"processes": len(snapshots)}
    for key in ("connections", "connections_per_provider", "refused_421", "greylisted"):
        total: dict[str, int] = {}
        for snap in snapshots:
            for name, count in snap.get(key, {}).items():
                total[name] = total.get(name, 0) + count
        merged[key] = total
    merged["peak_per_address"] = {
        a: n for snap in snapshots for a, n in snap.get("peak_per_address", {}).items()
    }
    peaks = [snap.get("peak_open", 0) for snap in snapshots]
    merged["peak_open_per_process"] = peaks
    merged["peak_open_sum"] = sum(peaks)
    merged["max_connections_per_host"] = max(merged["connections"].values(), default=0)
    merged["max_at_once_per_address"] = max(merged["peak_per_address"].values(), default=0)
    return merged

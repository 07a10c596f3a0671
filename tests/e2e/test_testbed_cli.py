"""``mxscan testbed`` as a user runs it: the installed console script, from other directories.

Issue #13 item 17 (every subcommand answers ``--help``; a standard port that is
taken, e.g. by Debian's exim4 on [::1]:25, moves the world to a free port and
``up`` says so) and issue #18 items 6 and 9 (one state location whatever the
working directory; ``stats`` answers too).

Other worlds may run at the same time on the same addresses (other tests), so
a port is "ours" only once we hold it: ``_hold`` waits until it can bind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mxscan.cli import _build_parser
from testbed import ports, services
from testbed.cli import _parser as world_parser
from testbed.control import DEFAULT_DNS_ADDR, STATE_DIR_ENV, dns_answers
from testbed.scenarios import scenario_world

MXSCAN = str(Path(sys.executable).parent / "mxscan")
WORLD = scenario_world()
#: The scenario world's IPv6 MX host: it listens on ::1, where Debian's exim4 listens too.
IPV6_MX = next(h for h in services.smtp_hosts(WORLD) if h.ipv6)


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MXSCAN, *args], cwd=cwd, capture_output=True, text=True, timeout=240, env=env or dict(os.environ)
    )


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of an argparse tree, the root included."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


def test_every_testbed_subcommand_answers_help(tmp_path: Path) -> None:
    paths = list(_commands(world_parser()))
    assert {p[0] for p in paths if p} >= {"up", "down", "status", "stats", "truth"}
    for path in paths:
        done = _run("testbed", *path, "--help", cwd=tmp_path)
        assert done.returncode == 0, (path, done.stderr)
        assert done.stdout.startswith(f"usage: mxscan testbed {' '.join(path)}".rstrip()), (path, done.stdout)


def test_every_mxscan_subcommand_answers_help(tmp_path: Path) -> None:
    for path in _commands(_build_parser()):
        done = _run(*path, "--help", cwd=tmp_path)
        assert done.returncode == 0, (path, done.stderr)
        assert done.stdout.startswith("usage: mxscan"), (path, done.stdout)


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (STATE_DIR_ENV, "XDG_STATE_HOME")}
    return {**env, "HOME": str(home)}


def test_status_stats_truth_and_down_find_the_world_from_any_directory(tmp_path: Path) -> None:
    home, here, elsewhere = tmp_path / "home", tmp_path / "here", tmp_path / "elsewhere"
    for d in (home, here, elsewhere):
        d.mkdir()
    env = _clean_env(home)
    state = home / ".local" / "state" / "mxscan" / "testbed"
    up = _run("testbed", "up", "--scenarios", "--dns-port", "0", "--smtp-port", "0", "--https-port", "0",
              cwd=here, env=env)  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert f"endpoints in {state}/endpoints.json" in up.stdout
        assert not (here / "run").exists()
        status = _run("testbed", "status", cwd=elsewhere, env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["state"] == "running", status.stdout
        stats = _run("testbed", "stats", cwd=elsewhere, env=env)
        assert stats.returncode == 0 and [s["name"] for s in json.loads(stats.stdout)] == ["mail-0"]
        truth = _run("testbed", "truth", cwd=elsewhere, env=env)
        assert truth.returncode == 0 and len(truth.stdout.splitlines()) == len(WORLD.domains)
        pids = [s["pid"] for s in json.loads((state / "state.json").read_text())["servers"]]
        down = _run("testbed", "down", cwd=elsewhere, env=env)
        assert down.stdout.strip() == "stopped: dns, mail-0", down.stdout
        assert _run("testbed", "status", cwd=here, env=env).returncode == 3
        assert not any(Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid) for pid in pids)
    finally:
        _run("testbed", "down", "--state-dir", str(state), cwd=tmp_path)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "X"


@contextmanager
def _hold(address: str, port: int, kind: int = socket.SOCK_STREAM, patience: float = 60.0) -> Iterator[None]:
    """Bind (and for TCP listen on) address:port, as an MTA or resolver already on the machine would.

    Another world may hold it for a moment (other tests): wait until it is ours.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
    deadline = time.monotonic() + patience
    try:
        while True:
            try:
                sock.bind((address, port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if kind == socket.SOCK_STREAM:
            sock.listen()
        yield
    finally:
        sock.close()


def _banner(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=10) as conn:
        return conn.recv(512)


def test_a_taken_standard_port_moves_the_world_to_a_free_one_and_up_says_so(tmp_path: Path) -> None:
    smtp = ports.default_port("smtp")  # 25 as root
    state = tmp_path / "state"
    assert IPV6_MX.ipv6 == "::1"
    with _hold("::1", smtp), _hold(DEFAULT_DNS_ADDR, ports.DEFAULT_DNS_PORT, socket.SOCK_DGRAM):
        up = _run("testbed", "up", "--scenarios", "--state-dir", str(state), cwd=tmp_path)
        try:
            assert up.returncode == 0, up.stderr
            endpoints = json.loads((state / "endpoints.json").read_text())
            moved = {f["service"]: f for f in endpoints["port_fallbacks"]}
            assert moved["smtp"]["wanted"] == smtp and moved["smtp"]["port"] == endpoints["smtp_port"] != smtp
            assert moved["dns"]["wanted"] == ports.DEFAULT_DNS_PORT
            assert f"smtp port {smtp} is taken" in up.stdout and "'::1'" in up.stdout
            assert f"the MX hosts listen on port {endpoints['smtp_port']} instead" in up.stdout
            assert f"--smtp-port {endpoints['smtp_port']} " in up.stdout  # the scan command it prints
            addr, port = endpoints["dns"].rsplit(":", 1)
            assert int(port) == moved["dns"]["port"] != ports.DEFAULT_DNS_PORT and dns_answers(
                addr, int(port)
            )
            assert _banner("::1", endpoints["smtp_port"]).startswith(b"220 ")
        finally:
            _run("testbed", "down", "--state-dir", str(state), cwd=tmp_path)


def _servers_of(state: Path) -> set[int]:
    """PIDs of the processes whose command line names ``state`` (the world's servers)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if str(state).encode() in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return pids


def test_ctrl_c_while_a_world_comes_up_stops_every_server_it_started(tmp_path: Path) -> None:
    # A 20k world takes seconds to be ready (DNS replies and TLS contexts built first): the
    # interrupt lands while its servers run and before any state file names them for `down`.
    state = tmp_path / "state"
    argv = [MXSCAN, "testbed", "up", "--domains", "20000", "--state-dir", str(state)]
    # Ctrl-C's disposition in a terminal: a job run in the background by a shell (as CI may run
    # this suite) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    up = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(servers := _servers_of(state)) < 2:  # the DNS server and a mail process
            assert up.poll() is None and time.monotonic() < deadline, up.communicate()
            time.sleep(0.05)
        assert not (state / "state.json").exists()
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
        assert up.returncode == 128 + signal.SIGINT and "testbed up: interrupted" in err, err
        assert "Traceback" not in err
        assert not {pid for pid in servers if Path(f"/proc/{pid}").exists()}
        assert not _servers_of(state)
    finally:
        if up.poll() is None:
            up.kill()
        for pid in _servers_of(state):
            os.kill(pid, signal.SIGKILL)


def test_a_port_asked_for_by_number_is_used_or_up_fails_saying_which(tmp_path: Path) -> None:
    taken = ports.free_port()
    state = tmp_path / "state"
    with _hold("::1", taken):
        up = _run("testbed", "up", "--scenarios", "--state-dir", str(state), "--dns-port", "0",
                  "--smtp-port", str(taken), "--https-port", "0", cwd=tmp_path)  # fmt: skip
        try:
            assert up.returncode == 1
            assert f"smtp port {taken} is taken" in up.stderr and "--smtp-port" in up.stderr, up.stderr
            assert "Traceback" not in up.stderr
            assert _run("testbed", "status", "--state-dir", str(state), cwd=tmp_path).returncode == 3
        finally:
            _run("testbed", "down", "--state-dir", str(state), cwd=tmp_path)

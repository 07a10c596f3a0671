"""The scenario world one test session shares (fixtures re-exported by ``tests/conftest.py``).

Every test that only READS the scenario world (testbed/scenarios.py: scans it, asks its
resolver, opens TLS to its hosts, fetches its policies) takes ``shared_world``,
``shared_resolver`` or ``shared_scan``: the world is started on first use and stopped
by its servers' PIDs when the session ends (``testbed.harness.running_world``).  No scenario
there keeps state per client (no greylisting, no connection limit), so one scan sees what the
previous one saw.

A test keeps a private world, with the reason beside its fixture, when it would change what
a later test sees or needs another world: it kills or restarts servers, resets or counts the
servers' counters, talks to behaviours that remember a client (greylisting in the
Internet-like world), or uses another spec (a scale world's size, seed or profile; network
conditions such as a slow resolver).  Teardown checks that every shared server still answers,
so a test that broke the shared world is named in the run, not found later as a puzzle.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import control
from testbed.control import WorldSpec
from testbed.harness import Endpoint, RunningWorld, running_world
from tests.e2e.worldscan import world_scan_argv

__all__ = ["shared_resolver", "shared_scan", "shared_world"]

ROOT = Path(__file__).resolve().parents[1]
#: Generous for one scan of the scenario world (its slowest names wait out 3 s deadlines).
SCAN_TIMEOUT = 240


@pytest.fixture(scope="session")
def shared_world() -> Iterator[RunningWorld]:
    """The whole scenario world on free ports, shared read-only by the session."""
    with running_world(WorldSpec("scenarios")) as world:
        yield world
        state = control.status(world.state_dir)
        assert state["state"] == "running", (
            f"a test changed the shared scenario world ({state['servers']}): give it a private world"
        )


@pytest.fixture(scope="session")
def shared_resolver(shared_world: RunningWorld) -> Endpoint:
    """The shared world's resolver, for ``--dns-only`` scans and DNS questions."""
    host, _, port = str(shared_world.endpoints["dns"]).rpartition(":")
    (pid,) = (s["pid"] for s in shared_world.state["servers"] if s["name"] == "dns")
    return Endpoint(host, int(port), int(pid))


@pytest.fixture(scope="session")
def shared_scan(shared_world: RunningWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted ``mxscan scan`` of the whole shared world with the end-to-end options
    (``world_scan_argv``): the results file every test that holds records to the truth, or
    compares another run with an uninterrupted one, reads (and never writes)."""
    out = tmp_path_factory.mktemp("scenario-scan") / "results.ndjson"
    argv = world_scan_argv(shared_world.endpoints, shared_world.state_dir / "domains.txt", out)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=SCAN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return out

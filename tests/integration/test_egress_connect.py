"""The egress pre-flight's connect shell against real loopback listeners: one that accepts,
an address where nothing listens, and a listener that never accepts (its accept queue full,
so the kernel drops further SYNs, as a port-25 block looks from inside a cloud)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import uvloop

from probes.egress import Attempt, EgressTarget, check_egress


@pytest.fixture
def accepting() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def never_accepting() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the one-place accept queue (Linux holds backlog + 1)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_accepting_listener_is_connected_with_the_local_address(accepting: int) -> None:
    (attempt,) = uvloop.run(check_egress([EgressTarget("a", "127.0.0.1", accepting)], 2.0))
    assert attempt.outcome is Attempt.CONNECTED and attempt.local_address == "127.0.0.1"
    assert attempt.family == "ipv4"


def test_nothing_listening_is_refused() -> None:
    (attempt,) = uvloop.run(check_egress([EgressTarget("b", "127.0.0.1", _free_port())], 2.0))
    assert attempt.outcome is Attempt.REFUSED and attempt.local_address == ""


def test_a_listener_that_never_accepts_times_out_within_the_deadline(never_accepting: int) -> None:
    began = time.monotonic()
    (attempt,) = uvloop.run(check_egress([EgressTarget("c", "127.0.0.1", never_accepting)], 0.5))
    assert attempt.outcome is Attempt.TIMEOUT
    assert time.monotonic() - began < 0.5 + 2.0


def test_all_targets_are_tried_at_once(never_accepting: int, accepting: int) -> None:
    targets = [EgressTarget("c", "127.0.0.1", never_accepting) for _ in range(4)]
    began = time.monotonic()
    attempts = uvloop.run(check_egress([*targets, EgressTarget("a", "127.0.0.1", accepting)], 1.0))
    assert [a.outcome for a in attempts] == [Attempt.TIMEOUT] * 4 + [Attempt.CONNECTED]
    assert time.monotonic() - began < 4 * 1.0  # concurrent, not one after another

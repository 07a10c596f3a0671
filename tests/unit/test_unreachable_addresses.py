"""The memory of unreachable addresses (probes/retry.py ``UnreachableAddresses``): a
connect-level failure is a property of (address, port), remembered for a bounded time and
size; silence after the handshake is never remembered.  Injectable clock, no sleeps."""

from __future__ import annotations

import pytest

from engine.status import Status
from probes.retry import Unreachable, UnreachableAddresses, connect_failed
from probes.smtp.polite import remembered_result
from probes.smtp.records import Phase, Starttls
from tests.unit.fakeclock import FakeClock


@pytest.mark.parametrize(
    ("status", "phase", "failed"),
    [
        (Status.CONNECTION_TIMEOUT, Phase.CONNECT, True),
        (Status.CONNECTION_REFUSED, Phase.CONNECT, True),
        (Status.IO_TIMEOUT, Phase.BANNER, False),  # accepted, then silent: per virtual host
        (Status.CONNECTION_CLOSED, Phase.BANNER, False),
        (Status.SUCCESS, Phase.DONE, False),
        (Status.CONNECTION_TIMEOUT, Phase.BANNER, False),
    ],
)
def test_only_a_failed_tcp_connect_is_an_address_property(status: Status, phase: Phase, failed: bool) -> None:
    assert connect_failed(status, phase) is failed


def test_a_connect_failure_is_remembered_per_address_and_port() -> None:
    clock = FakeClock()
    memory = UnreachableAddresses(ttl=60.0, max_entries=10, clock=clock)
    assert memory.note("::1", 25, Status.CONNECTION_TIMEOUT, "smtp:mx.a.test@[::1]:25")
    found = memory.get("::1", 25)
    assert found == Unreachable(Status.CONNECTION_TIMEOUT, 0.0, "smtp:mx.a.test@[::1]:25")
    assert memory.get("::1", 443) is None  # another port is another service
    assert memory.get("127.0.0.1", 25) is None


def test_silence_after_the_handshake_is_not_remembered() -> None:
    memory = UnreachableAddresses(ttl=60.0, max_entries=10, clock=FakeClock())
    assert not memory.note("192.0.2.1", 25, Status.IO_TIMEOUT, "smtp:mx.a.test@192.0.2.1:25")
    assert memory.get("192.0.2.1", 25) is None and len(memory) == 0


def test_an_unreachable_address_is_forgotten_after_its_ttl() -> None:
    clock = FakeClock()
    memory = UnreachableAddresses(ttl=60.0, max_entries=10, clock=clock)
    memory.note("192.0.2.1", 25, Status.CONNECTION_REFUSED, "smtp:mx.a.test@192.0.2.1:25")
    clock.now = 59.9
    assert memory.get("192.0.2.1", 25) is not None
    clock.now = 60.0
    assert memory.get("192.0.2.1", 25) is None and len(memory) == 0


def test_the_memory_is_bounded_least_recently_used_first() -> None:
    memory = UnreachableAddresses(ttl=60.0, max_entries=2, clock=FakeClock())
    for last in (1, 2):
        memory.note(f"192.0.2.{last}", 25, Status.CONNECTION_TIMEOUT, "r")
    assert memory.get("192.0.2.1", 25) is not None  # used: .2 is now the least recent
    memory.note("192.0.2.3", 25, Status.CONNECTION_TIMEOUT, "r")
    assert len(memory) == 2
    assert memory.get("192.0.2.2", 25) is None
    assert memory.get("192.0.2.1", 25) is not None and memory.get("192.0.2.3", 25) is not None


def test_a_renewed_failure_restarts_the_ttl() -> None:
    clock = FakeClock()
    memory = UnreachableAddresses(ttl=60.0, max_entries=10, clock=clock)
    memory.note("192.0.2.1", 25, Status.CONNECTION_TIMEOUT, "first")
    clock.now = 50.0
    memory.note("192.0.2.1", 25, Status.CONNECTION_REFUSED, "second")
    clock.now = 100.0
    found = memory.get("192.0.2.1", 25)
    assert found is not None and (found.status, found.ref) == (Status.CONNECTION_REFUSED, "second")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        UnreachableAddresses(ttl=0, max_entries=1)
    with pytest.raises(ValueError):
        UnreachableAddresses(ttl=1, max_entries=0)


def test_a_remembered_target_is_recorded_honestly() -> None:
    """Same status, phase connect, no connection made, STARTTLS unknown (never "no"), and the
    detail names when and by which probe the address was found unreachable."""
    found = Unreachable(Status.CONNECTION_TIMEOUT, 1_765_000_000.0, "smtp:mx.a.test@[::1]:25")
    result = remembered_result("mx.b.test", "::1", 25, found, 1800.0)
    assert (result.host, result.address, result.port) == ("mx.b.test", "::1", 25)
    assert (result.status, result.phase, result.starttls) == (
        Status.CONNECTION_TIMEOUT,
        Phase.CONNECT,
        Starttls.UNKNOWN,
    )
    assert result.attempts == 0 and result.attempt_log == ()
    assert "earlier probe at 2025-12-06T05:46:40Z" in result.detail
    assert "smtp:mx.a.test@[::1]:25" in result.detail

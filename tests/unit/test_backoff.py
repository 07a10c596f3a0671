"""AIMD back-off over a KeyedLimiter, and the slow-lane rule; injectable clock, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.backoff import AimdPolicy, SlowLane
from engine.limits import KeyedLimiter, Limit
from tests.unit.fakeclock import FakeClock

BASE = {"google.com": 4.0, "tail.example": None}


def _limit_for(key: Hashable) -> Limit:
    rate = BASE.get(str(key), 2.0)
    return Limit(concurrency=8, rate=rate, burst=1.0)


def _setup(**kw: float) -> tuple[FakeClock, KeyedLimiter, AimdPolicy]:
    clock = FakeClock()
    limiter = KeyedLimiter(_limit_for, clock=clock, sleep=clock.sleep)
    options = {"floor": 0.25, "increase": 0.5, "cooldown": 5.0, **kw}
    policy = AimdPolicy(limiter, base_rate_for=lambda k: _limit_for(k).rate, clock=clock, **options)
    return clock, limiter, policy


def _limiter_rate(limiter: KeyedLimiter, key: str) -> float | None:
    """The slot's current rate; a key without a slot yet runs at its configured rate."""
    return next((s.rate for s in limiter.statistics() if s.key == key), _limit_for(key).rate)


def test_throttle_halves_the_rate_in_the_limiter() -> None:
    _, limiter, policy = _setup()
    assert policy.on_throttle("google.com") is True
    assert policy.rate("google.com") == 2.0
    assert _limiter_rate(limiter, "google.com") == 2.0


def test_a_burst_of_throttles_counts_once_per_cooldown() -> None:
    clock, _, policy = _setup()
    results = [policy.on_throttle("google.com") for _ in range(20)]
    assert results == [True] + [False] * 19
    assert policy.rate("google.com") == 2.0
    clock.now += 4.9
    assert policy.on_throttle("google.com") is False
    clock.now += 0.1
    assert policy.on_throttle("google.com") is True
    assert policy.rate("google.com") == 1.0
    (stats,) = policy.statistics()
    assert (stats.throttles, stats.decreases, stats.increases) == (22, 2, 0)


def test_floor_is_respected() -> None:
    clock, limiter, policy = _setup()
    for _ in range(10):
        policy.on_throttle("google.com")
        clock.now += 10
    assert policy.rate("google.com") == 0.25
    assert _limiter_rate(limiter, "google.com") == 0.25
    assert policy.statistics()[0].decreases == 4  # 4 → 2 → 1 → 0.5 → 0.25, then no more cuts


def test_recovers_additively_once_per_interval_up_to_base() -> None:
    clock, limiter, policy = _setup(increase_interval=2.0)
    policy.on_throttle("google.com")  # 4 → 2 at t=0
    assert policy.on_success("google.com") is False  # too soon after the cut
    rates = []
    for _ in range(8):
        clock.now += 1.0
        policy.on_success("google.com")
        policy.on_success("google.com")  # a second success in the same interval changes nothing
        rates.append(policy.rate("google.com"))
    assert rates == [2.0, 2.5, 2.5, 3.0, 3.0, 3.5, 3.5, 4.0]
    clock.now += 10
    assert policy.on_success("google.com") is False  # at the base rate: never above it
    assert _limiter_rate(limiter, "google.com") == 4.0
    assert policy.statistics()[0].increases == 4


def test_a_throttle_during_recovery_cuts_from_the_current_rate() -> None:
    clock, _, policy = _setup(increase_interval=1.0)
    policy.on_throttle("google.com")  # 2.0
    clock.now += 1
    policy.on_success("google.com")  # 2.5
    clock.now += 5
    policy.on_throttle("google.com")
    assert policy.rate("google.com") == 1.25


def test_success_on_a_key_that_never_throttled_changes_nothing() -> None:
    _, limiter, policy = _setup()
    assert policy.on_success("google.com") is False
    assert policy.statistics() == []
    assert limiter.statistics() == []  # no slot created either


def test_unlimited_key_gets_a_rate_then_its_unlimited_state_back() -> None:
    clock, limiter, policy = _setup(unlimited_rate=2.0, increase=1.0, increase_interval=1.0)
    policy.on_throttle("tail.example")
    assert policy.rate("tail.example") == 1.0
    assert _limiter_rate(limiter, "tail.example") == 1.0
    clock.now += 1
    assert policy.on_success("tail.example") is True
    assert policy.rate("tail.example") is None
    assert _limiter_rate(limiter, "tail.example") is None


def test_keys_are_independent() -> None:
    _, _, policy = _setup()
    policy.on_throttle("google.com")
    assert policy.rate("outlook.com") == 2.0
    assert policy.on_throttle("outlook.com") is True  # its own cooldown


def test_halved_rate_paces_the_limiter() -> None:
    async def main() -> list[float]:
        clock, limiter, policy = _setup()
        policy.on_throttle("google.com")  # 4/s → 2/s: one start every 0.5 s
        starts = []
        for _ in range(4):
            async with limiter.hold("google.com"):
                starts.append(clock.now)
        return starts

    assert asyncio.run(main()) == pytest.approx([0.0, 0.5, 1.0, 1.5])


@pytest.mark.parametrize(
    "kw",
    [{"floor": 0}, {"increase": -1}, {"decrease": 1.0}, {"decrease": 0}, {"cooldown": -1}],
    ids=["zero-floor", "negative-increase", "decrease-one", "decrease-zero", "negative-cooldown"],
)
def test_nonsense_parameters_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _setup(**kw)


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 20)), max_size=60))
def test_rate_stays_between_floor_and_base(events: list[tuple[bool, float]]) -> None:
    clock, limiter, policy = _setup()
    for throttle, dt in events:
        clock.now += dt
        (policy.on_throttle if throttle else policy.on_success)("google.com")
        rate = policy.rate("google.com")
        assert rate is not None and 0.25 <= rate <= 4.0
    if events:
        assert _limiter_rate(limiter, "google.com") == policy.rate("google.com")


SLOW_CASES = [
    (0.2, False, False, "fast-greeting"),
    (10.0, False, False, "at-threshold"),
    (10.5, False, True, "slow-greeting"),
    (None, True, True, "timed-out-before-greeting"),
    (0.1, True, True, "timed-out-later"),
    (None, False, False, "refused-no-greeting"),
]


@pytest.mark.parametrize(
    ("delay", "timed_out", "slow"), [c[:3] for c in SLOW_CASES], ids=[c[3] for c in SLOW_CASES]
)
def test_slow_lane_rule(delay: float | None, timed_out: bool, slow: bool) -> None:
    lane = SlowLane(greeting_threshold=10.0)
    assert lane.classify(delay, timed_out) is slow
    assert lane.observe("mx.example.com", greeting_delay=delay, timed_out=timed_out) is slow
    assert lane.is_slow("mx.example.com") is slow


def test_slow_lane_remembers_and_is_bounded() -> None:
    lane = SlowLane(greeting_threshold=1.0, max_hosts=2)
    lane.observe("a", greeting_delay=5.0)
    assert lane.observe("a", greeting_delay=0.1) is True  # once slow, stays slow
    lane.observe("b", greeting_delay=None, timed_out=True)
    lane.observe("c", greeting_delay=2.0)
    assert len(lane) == 2
    assert not lane.is_slow("a") and lane.is_slow("b") and lane.is_slow("c")

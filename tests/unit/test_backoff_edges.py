"""AIMD back-off and the slow lane at their edges: the parameters refused, what statistics
report, the floor, the slow-lane memory (engine/backoff.py)."""

from __future__ import annotations

import pytest

from engine.backoff import DEFAULT_GREETING_THRESHOLD, BackoffStats, SlowLane
from tests.unit.test_backoff import _setup

BAD_PARAMETERS = [
    ({"floor": 0}, "floor, increase and unlimited_rate must be > 0"),
    ({"increase": 0}, "floor, increase and unlimited_rate must be > 0"),
    ({"unlimited_rate": 0}, "floor, increase and unlimited_rate must be > 0"),
    ({"decrease": 0}, "decrease must be in (0, 1)"),
    ({"decrease": 1}, "decrease must be in (0, 1)"),
    ({"cooldown": -0.001}, "cooldown and increase_interval must be >= 0"),
    ({"increase_interval": -0.001}, "cooldown and increase_interval must be >= 0"),
]


@pytest.mark.parametrize(("options", "message"), BAD_PARAMETERS, ids=[str(c[0]) for c in BAD_PARAMETERS])
def test_policy_refuses_parameters_outside_their_range(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        _setup(**options)
    assert str(caught.value) == message


def test_policy_accepts_the_edges_of_its_ranges() -> None:
    _, _, policy = _setup(cooldown=0, increase_interval=0, decrease=0.999)
    assert (policy.cooldown, policy.increase_interval, policy.decrease) == (0, 0, 0.999)
    _, _, defaulted = _setup(cooldown=7)
    assert defaulted.increase_interval == 7  # no interval given: the cooldown


def test_statistics_report_each_key_that_throttled() -> None:
    clock, _, policy = _setup(cooldown=1.0, decrease=0.3)
    policy.on_throttle("google.com")  # 4.0 -> 1.2
    policy.on_throttle("google.com")  # within the cooldown: counted, not cut
    policy.on_throttle("tail.example")  # unlimited -> 10 * 0.3
    clock.now += 2.0
    policy.on_success("google.com")  # 1.2 -> 1.7
    assert policy.statistics() == [
        BackoffStats(key="google.com", rate=1.7, base_rate=4.0, throttles=2, decreases=1, increases=1),
        BackoffStats(key="tail.example", rate=3.0, base_rate=None, throttles=1, decreases=1, increases=0),
    ]


def test_statistics_round_the_rate_to_three_places() -> None:
    _, _, policy = _setup(decrease=1 / 3)
    policy.on_throttle("google.com")
    (stats,) = policy.statistics()
    assert stats.rate == 1.333


def test_a_throttle_at_the_floor_cuts_nothing() -> None:
    _, _, policy = _setup(floor=1.0, cooldown=0)
    assert policy.on_throttle("google.com") is True  # 4 -> 2
    assert policy.on_throttle("google.com") is True  # 2 -> 1 (the floor)
    assert policy.on_throttle("google.com") is False
    assert policy.rate("google.com") == 1.0 and policy.statistics()[0].decreases == 2


def test_recovery_stops_at_the_configured_base_rate() -> None:
    clock, _, policy = _setup(increase=10.0, cooldown=0)
    policy.on_throttle("google.com")
    clock.now += 1.0
    assert policy.on_success("google.com") is True
    assert policy.rate("google.com") == 4.0  # its base, not 2 + 10
    assert policy.on_success("google.com") is False


def test_slow_lane_defaults_and_refusals() -> None:
    lane = SlowLane()
    assert lane.greeting_threshold == DEFAULT_GREETING_THRESHOLD == 10.0
    assert lane.observe("edge", greeting_delay=10.0) is False  # the threshold itself is not slow
    assert lane.observe("edge", greeting_delay=10.001) is True
    for options in ({"greeting_threshold": 0}, {"max_hosts": 0}):
        with pytest.raises(ValueError, match="greeting_threshold must be > 0 and max_hosts >= 1"):
            SlowLane(**options)  # type: ignore[arg-type]


def test_an_observation_without_a_timeout_is_judged_by_its_greeting_alone() -> None:
    lane = SlowLane(greeting_threshold=1.0)
    assert lane.observe("fast", greeting_delay=0.1) is False and not lane.is_slow("fast")
    assert lane.observe("silent", greeting_delay=None) is False  # no greeting, no timeout: not slow


def test_slow_lane_remembers_a_slow_host_and_forgets_the_oldest_beyond_its_size() -> None:
    lane = SlowLane(greeting_threshold=1.0, max_hosts=2)
    assert lane.observe("a", greeting_delay=None, timed_out=True)
    assert lane.observe("a", greeting_delay=0.1) is True  # once slow, slow for the scan
    lane.observe("b", greeting_delay=5.0)
    lane.observe("c", greeting_delay=5.0)
    assert len(lane) == 2 and not lane.is_slow("a") and lane.is_slow("b") and lane.is_slow("c")


def test_small_positive_parameters_are_accepted() -> None:
    _, _, policy = _setup(unlimited_rate=0.5, floor=0.1)
    assert policy.unlimited_rate == 0.5
    lane = SlowLane(max_hosts=1)
    lane.observe("a", greeting_delay=None, timed_out=True)
    lane.observe("b", greeting_delay=None, timed_out=True)
    assert (len(lane), lane.is_slow("b")) == (1, True)


def test_statistics_of_a_key_unlimited_again_say_so() -> None:
    clock, _, policy = _setup(increase=100.0, cooldown=0)
    policy.on_throttle("tail.example")  # unlimited -> 5 per second
    clock.now += 1.0
    assert policy.on_success("tail.example") is True
    assert policy.rate("tail.example") is None
    assert policy.statistics()[0].rate is None


def test_slow_lane_refusal_message_is_exact() -> None:
    with pytest.raises(ValueError) as caught:
        SlowLane(max_hosts=0)
    assert str(caught.value) == "greeting_threshold must be > 0 and max_hosts >= 1"


def test_slow_lane_remembers_100000_hosts_by_default() -> None:
    lane = SlowLane()
    for i in range(100_001):
        lane.observe(f"h{i}", greeting_delay=None, timed_out=True)
    assert len(lane) == 100_000 and not lane.is_slow("h0") and lane.is_slow("h1")

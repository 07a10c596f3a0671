"""AIMD back-off keeps state only while it matters: a key recovered to its base rate and idle
for ``release_after`` seconds is released, its counts kept in the run's totals (issue #17:
one entry per provider that ever throttled, for the whole run, before).  Injectable clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.backoff import DEFAULT_RELEASE_AFTER, AimdPolicy, SlowLane
from engine.limits import KeyedLimiter
from probes.smtp.polite import Unresponsive
from probes.smtp.politeness import politeness_of
from tests.unit.fakeclock import FakeClock
from tests.unit.test_backoff import _limit_for, _limiter_rate, _setup


def _recover(clock: FakeClock, policy: AimdPolicy, key: str) -> None:
    """Successes once per interval until ``key`` is back at its base rate."""
    for _ in range(100):
        clock.now += policy.increase_interval
        policy.on_success(key)
        if not any(s.key == key and s.rate != s.base_rate for s in policy.statistics()):
            return
    raise AssertionError(f"{key} did not recover")


def test_recovered_idle_keys_are_released_and_their_counts_stay_in_the_totals() -> None:
    clock, _, policy = _setup(cooldown=1.0)
    for n in range(100):
        policy.on_throttle(f"p{n}.example")  # 2 -> 1
        policy.on_throttle(f"p{n}.example")  # same burst: counted only
        _recover(clock, policy, f"p{n}.example")
    clock.now += DEFAULT_RELEASE_AFTER
    policy.on_throttle("late.example")
    assert [s.key for s in policy.statistics()] == ["late.example"]
    assert policy.released == 100
    assert (policy.released_throttles, policy.released_decreases, policy.released_increases) == (
        200,
        100,
        200,
    )


def test_a_recovered_key_stays_in_the_statistics_until_it_has_been_idle_long_enough() -> None:
    clock, _, policy = _setup(cooldown=1.0)
    policy.on_throttle("google.com")
    _recover(clock, policy, "google.com")
    clock.now += DEFAULT_RELEASE_AFTER - 0.001
    policy.on_throttle("other.example")
    assert {s.key for s in policy.statistics()} == {"google.com", "other.example"}
    assert policy.released == 0


def test_a_key_still_below_its_base_rate_is_never_released() -> None:
    clock, limiter, policy = _setup()
    policy.on_throttle("google.com")  # 4 -> 2, and no success since
    clock.now += 100 * DEFAULT_RELEASE_AFTER
    policy.on_throttle("other.example")
    assert policy.rate("google.com") == 2.0 and _limiter_rate(limiter, "google.com") == 2.0
    assert policy.released == 0


def test_a_recovered_key_that_throttles_again_is_kept_while_it_is_below_its_base() -> None:
    clock, _, policy = _setup(cooldown=1.0)
    policy.on_throttle("google.com")
    _recover(clock, policy, "google.com")
    clock.now += 1.0
    policy.on_throttle("google.com")  # throttled again before it was released: 4 -> 2
    clock.now += 10 * DEFAULT_RELEASE_AFTER
    policy.on_throttle("other.example")
    assert policy.rate("google.com") == 2.0 and policy.released == 0


def test_a_released_unlimited_key_is_unlimited_and_a_new_throttle_starts_afresh() -> None:
    clock, limiter, policy = _setup(cooldown=1.0, increase=100.0)
    policy.on_throttle("tail.example")  # unlimited -> 5 per second
    clock.now += 1.0
    assert policy.on_success("tail.example") is True  # unlimited again
    clock.now += DEFAULT_RELEASE_AFTER
    assert policy.on_throttle("tail.example") is True  # released first, then cut afresh
    (stats,) = policy.statistics()
    assert (stats.rate, stats.throttles, stats.decreases) == (5.0, 1, 1)
    assert _limiter_rate(limiter, "tail.example") == 5.0 and policy.released == 1


def test_release_after_is_at_least_the_quiet_time_of_the_rule() -> None:
    _, _, policy = _setup(cooldown=120.0)
    assert policy.release_after == 120.0  # the default 60 s would be shorter than the cooldown
    with pytest.raises(ValueError) as caught:
        _setup(cooldown=5.0, increase_interval=8.0, release_after=7.9)
    assert str(caught.value) == "release_after must be >= cooldown and increase_interval"
    assert _setup(cooldown=5.0, increase_interval=8.0, release_after=8.0)[2].release_after == 8.0


def test_state_held_is_bounded_by_the_keys_recovering_within_release_after() -> None:
    """A long scan where a new provider throttles and recovers every few seconds holds the
    last ``release_after`` seconds' worth of keys, not every key of the run."""
    clock, _, policy = _setup(cooldown=1.0, release_after=60.0)
    held = []
    for n in range(2_000):
        policy.on_throttle(f"p{n}.example")
        _recover(clock, policy, f"p{n}.example")  # 2 intervals: 2 s per key
        held.append(len(policy.statistics()))
    assert max(held) <= 32 and policy.released >= 1_960


KEYS = ("google.com", "tail.example", "p.example")
EVENTS = st.lists(
    st.tuples(st.sampled_from(("throttle", "success", "wait")), st.sampled_from(KEYS), st.floats(0, 90)),
    max_size=60,
)


@given(EVENTS)
def test_releasing_state_never_changes_a_rate(events: list[tuple[str, str, float]]) -> None:
    """Released or kept, every decision and every rate (the policy's and the limiter's) is the
    same: a release happens only when a new throttle would be treated as the first one."""
    runs = []
    for release_after in (None, float("inf")):
        clock = FakeClock()
        limiter = KeyedLimiter(_limit_for, clock=clock, sleep=clock.sleep)
        policy = AimdPolicy(
            limiter,
            base_rate_for=lambda k: _limit_for(k).rate,
            floor=0.25,
            increase=0.5,
            cooldown=5.0,
            release_after=release_after,
            clock=clock,
        )
        seen = []
        for kind, key, seconds in events:
            if kind == "wait":
                clock.now += seconds
                continue
            changed = policy.on_throttle(key) if kind == "throttle" else policy.on_success(key)
            seen.append(
                (changed, tuple(policy.rate(k) for k in KEYS), tuple(_limiter_rate(limiter, k) for k in KEYS))
            )
        runs.append(seen)
    assert runs[0] == runs[1]


def test_summary_totals_count_the_throttles_of_released_keys() -> None:
    """``--summary-json``'s back-off totals and the progress line's ``throttled`` are over the run,
    not over the keys still held."""
    clock, limiter, policy = _setup(cooldown=1.0)
    for n in range(30):
        policy.on_throttle(f"p{n}.example")
        _recover(clock, policy, f"p{n}.example")
    clock.now += DEFAULT_RELEASE_AFTER
    policy.on_throttle("late.example")
    polite = SimpleNamespace(
        provider_limits=limiter, backoff=policy, slow_lane=SlowLane(), unresponsive=Unresponsive()
    )
    summary = politeness_of(polite, full=True)  # type: ignore[arg-type]
    assert summary["throttled"] == 31
    assert {k: summary["backoff"][k] for k in ("keys", "released", "throttles", "decreases")} == {
        "keys": 1,
        "released": 30,
        "throttles": 31,
        "decreases": 31,
    }

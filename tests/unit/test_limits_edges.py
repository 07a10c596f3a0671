"""Keyed limits at their edges: the bucket's arithmetic at fractions of a token, the
statistics a run reports, back-off rates set and lifted, and the eviction bound (a new key is
never released before its holder enters; at most 64 slots looked at per new key)."""

from __future__ import annotations

import asyncio

import pytest

from engine.limits import KeyedLimiter, Limit, TokenBucket
from tests.unit.fakeclock import FakeClock


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, 0.99)])
def test_a_bucket_refused_says_what_it_needs(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match=r"^rate must be > 0 and burst >= 1$"):
        TokenBucket(rate, burst, FakeClock())


def test_a_bucket_of_one_token_is_accepted_and_paces_one_start_per_period() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1.0, clock=clock)
    assert bucket.delay() == 0.0
    assert bucket.delay() == pytest.approx(2.0)
    clock.now += 2.0
    assert bucket.delay() == 0.0


def test_the_delay_is_the_time_to_the_missing_part_of_a_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=1.0, clock=clock)
    assert bucket.delay() == 0.0
    clock.now += 0.2  # 0.4 of a token back
    assert bucket.delay() == pytest.approx(0.3)
    clock.now += 0.3  # the asking above took nothing: a whole token now
    assert bucket.delay() == 0.0
    assert bucket.delay() == pytest.approx(0.5)


def test_a_token_is_taken_at_exactly_one_and_not_before() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=1.0, clock=clock)
    assert bucket.delay() == 0.0
    clock.now += 0.25  # exactly one token
    assert bucket.delay() == 0.0
    clock.now += 0.125  # half a token
    assert bucket.delay() == pytest.approx(0.125)


def test_statistics_count_acquired_waited_and_the_rounded_wait_per_key() -> None:
    async def main() -> None:
        clock = FakeClock()
        limiter = KeyedLimiter(lambda _k: Limit(3, rate=3.0), clock=clock, sleep=clock.sleep)
        for _ in range(3):
            async with limiter.hold("p"):
                pass
        (stats,) = limiter.statistics()
        assert (stats.key, stats.concurrency, stats.rate, stats.in_flight) == ("p", 3, 3.0, 0)
        assert (stats.acquired, stats.waited, stats.peak_in_flight) == (3, 2, 1)
        assert stats.wait_seconds == 0.667  # 2 x 1/3 s, to the millisecond

    asyncio.run(main())


def test_a_holder_that_did_not_wait_is_not_counted_as_waiting() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(2))
        async with limiter.hold("k"), limiter.hold("k"):
            (stats,) = limiter.statistics()
            assert (stats.in_flight, stats.peak_in_flight, stats.waited) == (2, 2, 0)
        (stats,) = limiter.statistics()
        assert (stats.in_flight, stats.acquired, stats.wait_seconds) == (0, 2, 0.0)

    asyncio.run(main())


def test_a_rate_set_on_an_unpaced_key_paces_it_until_lifted() -> None:
    async def main() -> None:
        clock = FakeClock()
        limiter = KeyedLimiter(lambda _k: Limit(5), clock=clock, sleep=clock.sleep)
        limiter.set_rate("k", 2.0)  # back-off on a key with no rate of its own: one token banked
        for _ in range(2):
            async with limiter.hold("k"):
                pass
        assert clock.sleeps == [pytest.approx(0.5)] and limiter.statistics()[0].rate == 2.0
        limiter.set_rate("k", None)
        for _ in range(3):
            async with limiter.hold("k"):
                pass
        assert len(clock.sleeps) == 1 and limiter.statistics()[0].rate is None

    asyncio.run(main())


def test_a_new_key_is_not_released_before_its_holder_enters() -> None:
    """Bug: with the map full of keys in use, the slot just made for a new key was the only
    releasable one, so it was released at once; the key's next holder got a second slot and
    two holders of a concurrency-1 key ran together."""

    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(1), max_keys=1)
        gate = asyncio.Event()
        inside = peak = 0

        async def hold(key: str) -> None:
            nonlocal inside, peak
            async with limiter.hold(key):
                inside += key == "x"
                peak = max(peak, inside)
                await gate.wait()
                inside -= key == "x"

        tasks = [asyncio.create_task(hold(k)) for k in ("busy", "x", "x")]
        for _ in range(5):
            await asyncio.sleep(0)
        assert peak == 1 and {s.key for s in limiter.statistics()} == {"busy", "x"}
        gate.set()
        await asyncio.gather(*tasks)
        assert {s.key: s.acquired for s in limiter.statistics()} == {"busy": 1, "x": 2}

    asyncio.run(main())


@pytest.mark.parametrize(("busy", "kept"), [(63, False), (64, True)], ids=["63-busy", "64-busy"])
def test_eviction_looks_at_64_slots_per_new_key_at_most(busy: int, kept: bool) -> None:
    """An idle key behind ``busy`` keys in use at the least recently used end: released when
    fewer than 64 stand before it, left for a later new key otherwise (bounded work per key)."""

    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(1), max_keys=1)
        gate = asyncio.Event()

        async def hold(key: str) -> None:
            async with limiter.hold(key):
                await gate.wait()

        tasks = [asyncio.create_task(hold(f"b{i}")) for i in range(busy)]
        await asyncio.sleep(0)
        async with limiter.hold("idle"):
            pass
        async with limiter.hold("new"):
            pass
        assert ("idle" in {s.key for s in limiter.statistics()}) is kept
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_released_keys_add_their_counts_to_the_run_totals() -> None:
    async def main() -> None:
        clock = FakeClock()
        limiter = KeyedLimiter(lambda _k: Limit(1, rate=1.0), max_keys=1, clock=clock, sleep=clock.sleep)
        for key in ("a", "a", "a", "b", "b", "c"):
            async with limiter.hold(key):
                pass
        assert (limiter.evicted, limiter.evicted_acquired, limiter.evicted_waited) == (2, 5, 3)
        assert [s.key for s in limiter.statistics()] == ["c"]

    asyncio.run(main())


def test_a_holder_cancelled_while_paced_gives_its_slot_back() -> None:
    async def main() -> None:
        clock = FakeClock()
        asleep = asyncio.Event()

        async def sleep(seconds: float) -> None:
            asleep.set()
            await asyncio.Event().wait()  # paced forever: only cancelling ends it

        limiter = KeyedLimiter(lambda _k: Limit(1, rate=1.0), clock=clock, sleep=sleep)
        async with limiter.hold("k"):
            pass  # the one token
        paced = asyncio.create_task(_enter(limiter, "k"))
        await asleep.wait()
        paced.cancel()
        with pytest.raises(asyncio.CancelledError):
            await paced
        clock.now += 1.0
        async with limiter.hold("k"):  # the semaphore was released: enters at once
            (stats,) = limiter.statistics()
            assert (stats.in_flight, stats.acquired) == (1, 2)

    asyncio.run(main())


def test_a_failing_holder_leaves_the_slot_free() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(1))
        with pytest.raises(RuntimeError):
            async with limiter.hold("k"):
                raise RuntimeError("work failed")
        async with limiter.hold("k"):
            assert limiter.statistics()[0].in_flight == 1

    asyncio.run(main())


async def _enter(limiter: KeyedLimiter, key: str) -> None:
    async with limiter.hold(key):
        pass

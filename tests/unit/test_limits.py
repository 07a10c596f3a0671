"""Keyed limiter and token bucket, driven by an injectable clock (no real sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from engine.limits import KeyedLimiter, Limit, TokenBucket
from tests.unit.fakeclock import FakeClock


def test_token_bucket_spends_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2.0, clock=clock)
    assert bucket.delay() == 0.0
    assert bucket.delay() == 0.0
    assert bucket.delay() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.delay() == 0.0
    clock.now += 100
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]  # burst caps banking


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)], ids=["zero-rate", "negative", "tiny-burst"]
)
def test_token_bucket_rejects_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, FakeClock())


def test_concurrency_cap_holds_per_key_and_keys_are_independent() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda key: Limit(concurrency=2 if key == "a" else 1))
        active: dict[str, int] = {"a": 0, "b": 0}
        peak: dict[str, int] = {"a": 0, "b": 0}

        async def work(key: str) -> None:
            async with limiter.hold(key):
                active[key] += 1
                peak[key] = max(peak[key], active[key])
                await asyncio.sleep(0.001)
                active[key] -= 1

        await asyncio.gather(*(work("a") for _ in range(10)), *(work("b") for _ in range(10)))
        assert peak == {"a": 2, "b": 1}
        stats = {s.key: s for s in limiter.statistics()}
        assert stats["a"].peak_in_flight == 2 and stats["a"].acquired == 10 and stats["a"].in_flight == 0
        assert stats["b"].waited > 0

    asyncio.run(main())


def test_rate_limit_paces_starts_with_fake_clock() -> None:
    async def main() -> None:
        clock = FakeClock()
        limiter = KeyedLimiter(lambda key: Limit(concurrency=10, rate=4.0), clock=clock, sleep=clock.sleep)
        starts = []
        for _ in range(5):
            async with limiter.hold("p"):
                starts.append(clock.now)
        assert starts == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
        limiter.set_rate("p", 1.0)
        async with limiter.hold("p"):
            starts.append(clock.now)
        assert starts[-1] == pytest.approx(2.0)

    asyncio.run(main())


def test_idle_keys_are_evicted_but_busy_ones_are_not() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda key: Limit(concurrency=1), max_keys=2)
        async with limiter.hold("busy"):
            for key in ("x", "y", "z"):
                async with limiter.hold(key):
                    pass
            keys = {s.key for s in limiter.statistics()}
            assert "busy" in keys and len(keys) <= 2

    asyncio.run(main())


def test_cancelled_waiter_releases_nothing_it_did_not_take() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda key: Limit(concurrency=1))
        async with limiter.hold("k"):
            waiter = asyncio.create_task(limiter.hold("k").__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with limiter.hold("k"):
            assert limiter.statistics()[0].in_flight == 1

    asyncio.run(main())

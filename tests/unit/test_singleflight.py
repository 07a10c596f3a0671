from __future__ import annotations

import asyncio

import pytest

from engine.singleflight import SingleFlight


def test_concurrent_callers_share_one_computation() -> None:
    async def main() -> None:
        cache: SingleFlight[str, int] = SingleFlight(10)
        calls = 0
        gate = asyncio.Event()

        async def compute() -> int:
            nonlocal calls
            calls += 1
            await gate.wait()
            return 42

        tasks = [asyncio.create_task(cache.get("k", compute)) for _ in range(50)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*tasks) == [42] * 50
        assert calls == 1
        stats = cache.statistics()
        assert (stats.misses, stats.joins, stats.in_flight) == (1, 49, 0)
        assert await cache.get("k", compute) == 42
        assert calls == 1 and cache.statistics().hits == 1

    asyncio.run(main())


def test_unretained_values_are_shared_in_flight_but_not_kept() -> None:
    async def main() -> None:
        cache: SingleFlight[str, int] = SingleFlight(10)
        calls = 0

        async def compute() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            return calls

        assert await asyncio.gather(cache.get("k", compute, retain=False), cache.get("k", compute)) == [1, 1]
        assert await cache.get("k", compute, retain=False) == 2
        assert cache.statistics().entries == 0

    asyncio.run(main())


def test_lru_bound_evicts_oldest() -> None:
    async def main() -> None:
        cache: SingleFlight[int, int] = SingleFlight(3)
        for i in range(5):
            await cache.get(i, lambda i=i: asyncio.sleep(0, result=i))
        assert cache.statistics().entries == 3
        calls = []

        async def again() -> int:
            calls.append(1)
            return -1

        assert await cache.get(0, again) == -1  # evicted, recomputed
        assert await cache.get(4, again) == 4  # still cached
        assert len(calls) == 1

    asyncio.run(main())


def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    async def main() -> None:
        cache: SingleFlight[str, int] = SingleFlight(10)

        async def boom() -> int:
            await asyncio.sleep(0)
            raise RuntimeError("bad")

        results = await asyncio.gather(cache.get("k", boom), cache.get("k", boom), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await cache.get("k", lambda: asyncio.sleep(0, result=7)) == 7

    asyncio.run(main())


def test_cancelled_leader_hands_over_to_a_follower() -> None:
    async def main() -> None:
        cache: SingleFlight[str, str] = SingleFlight(10)
        started = asyncio.Event()

        async def slow() -> str:
            started.set()
            await asyncio.sleep(10)
            return "leader"

        leader = asyncio.create_task(cache.get("k", slow))
        await started.wait()
        follower = asyncio.create_task(cache.get("k", lambda: asyncio.sleep(0, result="follower")))
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert await asyncio.wait_for(follower, 1) == "follower"

    asyncio.run(main())

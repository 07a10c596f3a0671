"""Per-key limiter state is released when idle and holding no back-off (issue #17): a scan
of many self-hosted domains (each its own provider) must not keep one slot per provider."""

from __future__ import annotations

import asyncio

from engine.limits import KeyedLimiter, Limit
from tests.unit.fakeclock import FakeClock


def test_idle_keys_beyond_the_bound_are_released_and_counted() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(1), max_keys=3)
        for key in range(10):
            async with limiter.hold(key):
                pass
        assert len(limiter.statistics()) == 3 and limiter.evicted == 7
        assert [s.key for s in limiter.statistics()] == ["7", "8", "9"]  # least recently used first

    asyncio.run(main())


def test_a_key_in_use_or_waiting_is_never_released() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(1), max_keys=1)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold(key: str) -> None:
            async with limiter.hold(key):
                holding.set()
                await release.wait()

        first = asyncio.create_task(hold("busy"))
        await holding.wait()
        waiter = asyncio.create_task(hold("busy"))  # waits on the same slot
        await asyncio.sleep(0)
        for key in ("a", "b", "c"):
            async with limiter.hold(key):
                pass
        assert "busy" in {s.key for s in limiter.statistics()}
        release.set()
        await asyncio.gather(first, waiter)
        stats = {s.key: s for s in limiter.statistics()}
        assert stats["busy"].acquired == 2 and stats["busy"].peak_in_flight == 1  # one slot, never two

    asyncio.run(main())


def test_a_holder_waiting_for_a_token_keeps_its_slot() -> None:
    """Between taking the semaphore and its token a holder is not yet in flight; releasing the
    slot then would hand the next caller a fresh bucket (a second start at once)."""

    async def main() -> None:
        gate = asyncio.Event()
        clock = FakeClock()

        async def sleep(seconds: float) -> None:
            await gate.wait()
            clock.now += seconds

        limiter = KeyedLimiter(lambda _k: Limit(4, rate=1.0), max_keys=1, sleep=sleep, clock=clock)
        async with limiter.hold("p"):
            pass  # spends the one token
        pacing = asyncio.create_task(_enter(limiter, "p"))
        await asyncio.sleep(0)
        async with limiter.hold("other"):
            pass
        assert "p" in {s.key for s in limiter.statistics()}
        gate.set()
        await pacing

    asyncio.run(main())


async def _enter(limiter: KeyedLimiter, key: str) -> None:
    async with limiter.hold(key):
        pass


def test_a_key_holding_back_off_is_kept_until_its_rate_is_back() -> None:
    async def main() -> None:
        limiter = KeyedLimiter(lambda _k: Limit(1, rate=10.0), max_keys=1, clock=FakeClock())
        async with limiter.hold("throttled"):
            pass
        limiter.set_rate("throttled", 0.2)  # the back-off halved it down
        for key in ("a", "b"):
            async with limiter.hold(key):
                pass
        assert "throttled" in {s.key for s in limiter.statistics()}
        limiter.set_rate("throttled", 10.0)  # recovered to its configured rate
        async with limiter.hold("c"):
            pass
        assert {s.key for s in limiter.statistics()} == {"c"}

    asyncio.run(main())

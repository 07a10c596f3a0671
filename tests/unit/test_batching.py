"""engine.batching: items ready together run back to back; nobody waits for company
that is not coming, nobody gets another caller's result."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.batching import Batcher


class Recorder:
    """A step that records which batch each item ran in."""

    def __init__(self) -> None:
        self.batcher: Batcher[int, int] = Batcher(self.step, size=4, wait=60.0)
        self.ran: list[tuple[int, int]] = []  # (batch number, item)

    def step(self, item: int) -> int:
        if item < 0:
            raise ValueError(f"bad item {item}")
        self.ran.append((self.batcher.batches, item))
        return item * 10


async def _produce(batcher: Batcher[int, int], item: int, ready: asyncio.Event) -> int:
    with batcher.upcoming():
        await ready.wait()
    return await batcher.run(item)


def test_a_lone_caller_never_waits_for_company() -> None:
    rec = Recorder()  # wait=60 s: only "nothing else in flight" can run it in time

    async def main() -> int:
        return await asyncio.wait_for(rec.batcher.run(7), 2)

    assert asyncio.run(main()) == 70


def test_items_ready_together_run_in_one_batch_of_at_most_size() -> None:
    rec = Recorder()

    async def main() -> list[int]:
        ready = asyncio.Event()
        tasks = [asyncio.create_task(_produce(rec.batcher, i, ready)) for i in range(10)]
        await asyncio.sleep(0)
        ready.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 2)

    assert asyncio.run(main()) == [i * 10 for i in range(10)]
    sizes = [sum(1 for b, _ in rec.ran if b == n) for n in sorted({b for b, _ in rec.ran})]
    assert max(sizes) <= 4 and sum(sizes) == 10 and len(sizes) <= 4


def test_company_that_stays_in_flight_is_waited_for_only_until_the_deadline() -> None:
    batcher: Batcher[int, int] = Batcher(lambda item: item + 1, size=8, wait=0.05)

    async def main() -> tuple[int, float]:
        never = asyncio.Event()
        straggler = asyncio.create_task(_produce(batcher, 1, never))
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await asyncio.wait_for(_produce(batcher, 5, _set(asyncio.Event())), 2)
        waited = loop.time() - began
        straggler.cancel()
        return result, waited

    result, waited = asyncio.run(main())
    assert result == 6
    assert 0.04 <= waited < 1.0


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def test_each_caller_gets_its_own_exception() -> None:
    rec = Recorder()

    async def main() -> list[object]:
        ready = asyncio.Event()
        tasks = [asyncio.create_task(_produce(rec.batcher, i, ready)) for i in (1, -2, 3)]
        await asyncio.sleep(0)
        ready.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    one, bad, three = asyncio.run(main())
    assert (one, three) == (10, 30)
    assert isinstance(bad, ValueError) and "bad item -2" in str(bad)


def test_a_cancelled_caller_costs_no_step() -> None:
    rec = Recorder()
    rec.batcher.size = 100

    async def main() -> None:
        blocker = asyncio.Event()
        pending = asyncio.create_task(_produce(rec.batcher, 99, blocker))  # keeps company "upcoming"
        waiting = asyncio.create_task(rec.batcher.run(5))
        await asyncio.sleep(0.01)
        waiting.cancel()
        blocker.set()
        await asyncio.wait_for(pending, 2)

    asyncio.run(main())
    assert [item for _, item in rec.ran] == [99]


def test_a_batcher_outlives_the_event_loop_that_left_a_timer() -> None:
    """The probe process's prober is used by one loop; a benchmark runs several in turn."""
    batcher: Batcher[int, int] = Batcher(lambda item: item, size=8, wait=30.0)

    async def abandon() -> None:
        never = asyncio.Event()
        straggler = asyncio.create_task(_produce(batcher, 1, never))
        waiting = asyncio.create_task(_produce(batcher, 2, _set(asyncio.Event())))
        await asyncio.sleep(0.01)  # item 2 waits on a 30 s timer for item 1's company
        waiting.cancel()
        straggler.cancel()

    asyncio.run(abandon())

    async def later() -> int:
        return await asyncio.wait_for(batcher.run(3), 2)

    assert asyncio.run(later()) == 3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda item: item, size=0)
    with pytest.raises(ValueError):
        Batcher(lambda item: item, wait=-1)


@given(
    groups=st.lists(st.lists(st.integers(0, 1000), min_size=1, max_size=6), min_size=1, max_size=5),
    size=st.integers(1, 5),
)
def test_every_caller_gets_the_step_of_its_own_item(groups: list[list[int]], size: int) -> None:
    """Whatever the arrival pattern (groups finishing at different times) and batch size,
    each item runs exactly once and its caller gets that result."""
    batcher: Batcher[int, int] = Batcher(lambda item: item * 3 + 1, size=size, wait=0.001)

    async def main() -> list[int]:
        events = [asyncio.Event() for _ in groups]
        tasks = [
            asyncio.create_task(_produce(batcher, item, events[g]))
            for g, group in enumerate(groups)
            for item in group
        ]
        for event in events:
            await asyncio.sleep(0)
            event.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 5)

    expected = [item * 3 + 1 for group in groups for item in group]
    assert asyncio.run(main()) == expected
    assert batcher.items == len(expected)

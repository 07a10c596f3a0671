from __future__ import annotations

import asyncio
import random

from hypothesis import given
from hypothesis import strategies as st

from engine.scheduler import parked, run_targets


def _run(targets, handle, *, concurrency=4, stop=None, grace=1.0):
    emitted: dict[int, object] = {}

    def emit(t, r):
        assert t not in emitted, "emitted twice"
        emitted[t] = r

    stats = asyncio.run(
        run_targets(
            iter(targets),
            handle,
            emit,
            lambda t, exc: f"crash:{type(exc).__name__}",
            concurrency=concurrency,
            stop=stop,
            grace=grace,
            tick_interval=0.01,
        )
    )
    return emitted, stats


def test_every_target_emitted_once_with_bounded_concurrency() -> None:
    active = peak = 0

    async def handle(t: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(random.random() / 1000)
        active -= 1
        return t * 2

    emitted, stats = _run(range(200), handle, concurrency=7)
    assert emitted == {t: t * 2 for t in range(200)}
    assert peak == 7 and stats.emitted == 200 and not stats.stopped


def test_crash_becomes_a_record_and_the_scan_goes_on() -> None:
    async def handle(t: int) -> str:
        if t % 3 == 0:
            raise KeyError(t)
        return "ok"

    emitted, stats = _run(range(30), handle)
    assert sum(v == "crash:KeyError" for v in emitted.values()) == 10
    assert len(emitted) == 30 and stats.crashed == 10


def test_iterator_is_consumed_lazily() -> None:
    pulled = 0

    def targets():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    seen_max_gap = 0
    done = 0

    async def handle(t: int) -> int:
        nonlocal seen_max_gap, done
        seen_max_gap = max(seen_max_gap, pulled - done)
        await asyncio.sleep(0)
        done += 1
        return t

    _run(targets(), handle, concurrency=5)
    assert seen_max_gap <= 5  # never more than `concurrency` targets pulled ahead


def test_stop_takes_no_new_targets_and_abandons_after_grace() -> None:
    async def main() -> tuple[dict[int, object], object]:
        stop = asyncio.Event()
        emitted: dict[int, object] = {}

        async def handle(t: int) -> int:
            if t == 3:
                stop.set()
            if t == 1:
                await asyncio.sleep(60)  # stuck: must be abandoned after grace
            await asyncio.sleep(0.01)
            return t

        stats = await run_targets(
            iter(range(100)),
            handle,
            lambda t, r: emitted.__setitem__(t, r),
            lambda t, e: -1,
            concurrency=4,
            stop=stop,
            grace=0.2,
            tick_interval=0.01,
        )
        return emitted, stats

    emitted, stats = asyncio.run(main())
    assert stats.stopped and stats.abandoned == 1
    assert 1 not in emitted and set(emitted) <= {0, 2, 3}


@given(st.lists(st.sampled_from(["ok", "raise", "slow"]), max_size=40), st.integers(1, 8))
def test_any_mix_of_outcomes_emits_each_target_exactly_once(kinds: list[str], concurrency: int) -> None:
    async def handle(i: int) -> str:
        if kinds[i] == "raise":
            raise ValueError
        if kinds[i] == "slow":
            await asyncio.sleep(0.001)
        return "ok"

    emitted, _ = _run(range(len(kinds)), handle, concurrency=concurrency)
    assert sorted(emitted) == list(range(len(kinds)))


def test_parked_targets_do_not_stall_the_rest() -> None:
    """Targets of a 'slow provider' park until every fast target is done: without
    parking, two permits held by waiting targets would stall the scan forever."""

    async def main() -> tuple[dict[int, object], object, int]:
        fast_done = asyncio.Event()
        finished_fast = 0
        in_flight = peak = 0

        async def handle(t: int) -> str:
            nonlocal finished_fast, in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                if t % 10 == 0:  # the slow provider's customers
                    async with parked():
                        await fast_done.wait()
                    return "slow"
                await asyncio.sleep(0)
                finished_fast += 1
                if finished_fast == 90:
                    fast_done.set()
                return "fast"
            finally:
                in_flight -= 1

        emitted: dict[int, object] = {}
        stats = await asyncio.wait_for(
            run_targets(
                iter(range(100)),
                handle,
                emitted.__setitem__,
                lambda t, e: "crash",
                concurrency=2,
                max_parked=10,
                tick_interval=0.01,
            ),
            10,
        )
        return emitted, stats, peak

    emitted, stats, peak = asyncio.run(main())
    assert len(emitted) == 100 and sum(v == "slow" for v in emitted.values()) == 10
    assert stats.peak_parked == 10 and stats.parked == 0
    assert peak <= 2 + 10  # never more than concurrency + max_parked targets in flight


def test_room_bounds_parked_targets() -> None:
    async def main() -> int:
        release = asyncio.Event()
        admitted = 0

        async def handle(t: int) -> int:
            nonlocal admitted
            admitted += 1
            async with parked():
                await release.wait()
            return t

        async def releaser() -> None:
            await asyncio.sleep(0.05)
            seen = admitted
            release.set()
            return seen

        task = asyncio.create_task(releaser())
        await run_targets(
            iter(range(50)),
            handle,
            lambda t, r: None,
            lambda t, e: -1,
            concurrency=3,
            max_parked=5,
            tick_interval=0.01,
        )
        return await task

    assert asyncio.run(main()) == 8  # 3 working + 5 parked, then admissions wait for room


def test_parked_is_a_no_op_outside_a_scan() -> None:
    async def main() -> str:
        async with parked():
            return "ok"

    assert asyncio.run(main()) == "ok"


def test_stop_while_parked_abandons_cleanly() -> None:
    async def main() -> object:
        stop = asyncio.Event()

        async def handle(t: int) -> int:
            if t == 0:
                stop.set()
            async with parked():
                await asyncio.sleep(60)
            return t

        return await run_targets(
            iter(range(10)), handle, lambda t, r: None, lambda t, e: -1,
            concurrency=2, max_parked=2, stop=stop, grace=0.1, tick_interval=0.01,
        )  # fmt: skip

    stats = asyncio.run(main())
    assert stats.stopped and stats.emitted == 0 and stats.abandoned >= 1

"""The batched probe calls of a scan worker to a probe actor (``scaleout.cluster.calls``), without
Ray: ``send`` here serves a batch in this process as a probe actor's ``serve`` does
(``answers_as_they_finish``), or loses it as a dead actor's stream does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scaleout.cluster.calls import Answer, Calls, Request, answers_as_they_finish


class Lost(Exception):
    """What a dead actor's stream raises here (Ray: ``RayActorError``)."""


class Actor:
    """Serves batches in this process; records each batch's request ids.  ``lose``: batches
    (by number) whose stream dies once nothing more is answered for 50 ms."""

    def __init__(self, lose: set[int] | None = None, slow: set[str] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.lose = lose or set()
        self.slow = slow or set()
        self.never = asyncio.Event()

    async def serve(self, kind: str, first: str, second: str) -> Any:
        if first in self.slow:
            await self.never.wait()
        if kind == "fail":
            raise ValueError(first)
        return f"{kind}:{first}:{second}"

    async def send(self, requests: list[Request]) -> AsyncIterator[list[Answer]]:
        number = len(self.batches)
        self.batches.append([rid for rid, *_ in requests])
        stream = answers_as_they_finish(requests, self.serve, linger=0)
        if number not in self.lose:
            async for answers in stream:
                yield answers
            return
        with contextlib.suppress(TimeoutError, StopAsyncIteration):
            while True:  # what finishes soon is answered, then the stream dies
                yield await asyncio.wait_for(anext(stream), 0.05)
        await stream.aclose()
        raise Lost(f"batch {number}")


def test_requests_made_together_go_out_in_one_call_and_each_caller_gets_its_own_answer() -> None:
    async def main() -> list[Any]:
        actor = Actor()
        calls = Calls(actor.send, (Lost,), size=64, wait=0.05)
        got = await asyncio.gather(*(calls.call("smtp", f"mx{i}", "192.0.2.1") for i in range(5)))
        assert len(actor.batches) == 1 and len(actor.batches[0]) == 5, actor.batches
        assert (calls.calls, calls.requests) == (1, 5)
        return got

    assert asyncio.run(main()) == [f"smtp:mx{i}:192.0.2.1" for i in range(5)]


def test_a_full_batch_goes_out_without_waiting_for_the_timer() -> None:
    async def main() -> None:
        actor = Actor()
        calls = Calls(actor.send, (Lost,), size=3, wait=600)
        got = await asyncio.wait_for(asyncio.gather(*(calls.call("smtp", str(i), "a") for i in range(6))), 10)
        assert got == [f"smtp:{i}:a" for i in range(6)]
        assert [len(batch) for batch in actor.batches] == [3, 3]

    asyncio.run(main())


def test_a_slow_probe_does_not_hold_back_a_fast_one_in_the_same_batch() -> None:
    async def main() -> None:
        actor = Actor(slow={"silent"})
        calls = Calls(actor.send, (Lost,), size=64, wait=0.01)
        slow = asyncio.ensure_future(calls.call("smtp", "silent", "a"))
        fast = await asyncio.wait_for(calls.call("smtp", "answers", "a"), 10)
        assert fast == "smtp:answers:a" and not slow.done()
        assert len(actor.batches) == 1  # both in one call
        actor.never.set()
        assert await asyncio.wait_for(slow, 10) == "smtp:silent:a"

    asyncio.run(main())


def test_the_requests_a_lost_actor_did_not_answer_are_sent_again_and_answered_once() -> None:
    async def main() -> None:
        actor = Actor(lose={0}, slow={"slow"})
        calls = Calls(actor.send, (Lost,), size=64, wait=0.01, again=0)
        pending = [asyncio.ensure_future(calls.call("smtp", name, "a")) for name in ("fast", "slow", "slow2")]
        actor.slow.add("slow2")
        await asyncio.sleep(0.1)  # batch 0: "fast" answered, then the stream is lost
        assert pending[0].done() and pending[0].result() == "smtp:fast:a"
        actor.never.set()
        got = await asyncio.wait_for(asyncio.gather(*pending), 10)
        assert got == ["smtp:fast:a", "smtp:slow:a", "smtp:slow2:a"]
        assert actor.batches == [[0, 1, 2], [1, 2]]  # only the unanswered again

    asyncio.run(main())


def test_a_request_lost_with_its_actor_on_every_attempt_is_its_callers_error() -> None:
    async def main() -> None:
        actor = Actor(lose={0, 1, 2, 3}, slow={"slow"})
        calls = Calls(actor.send, (Lost,), size=64, wait=0.001, attempts=3, again=0.01)
        fast = asyncio.ensure_future(calls.call("smtp", "fast", "a"))
        with pytest.raises(Lost, match="batch 2"):
            await asyncio.wait_for(calls.call("smtp", "slow", "a"), 10)
        assert await fast == "smtp:fast:a"
        assert len(actor.batches) == 3

    asyncio.run(main())


def test_a_probe_that_raises_fails_only_its_own_caller() -> None:
    async def main() -> None:
        actor = Actor()
        calls = Calls(actor.send, (Lost,), size=64, wait=0.01)
        ok, failed = await asyncio.gather(
            calls.call("smtp", "mx", "a"), calls.call("fail", "broken", "a"), return_exceptions=True
        )
        assert ok == "smtp:mx:a"
        assert isinstance(failed, ValueError) and str(failed) == "broken"

    asyncio.run(main())


def test_answers_that_finish_within_the_linger_travel_together() -> None:
    async def main() -> list[list[int]]:
        async def serve(kind: str, first: str, second: str) -> str:
            await asyncio.sleep(float(first))
            return first

        requests = [(0, "smtp", "0", ""), (1, "smtp", "0.01", ""), (2, "smtp", "1", "")]
        return [
            sorted(rid for rid, _, _ in group) async for group in answers_as_they_finish(requests, serve, 0.3)
        ]

    assert asyncio.run(main()) == [[0, 1], [2]]


@pytest.mark.parametrize(
    ("size", "wait", "attempts", "again"),
    [(0, 0.01, 3, 1), (64, -1, 3, 1), (64, 0.01, 0, 1), (64, 0.01, 3, -1)],
)
def test_calls_refuse_settings_that_could_never_send(
    size: int, wait: float, attempts: int, again: float
) -> None:
    with pytest.raises(ValueError, match="Calls needs"):
        Calls(Actor().send, (Lost,), size=size, wait=wait, attempts=attempts, again=again)

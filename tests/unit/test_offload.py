"""engine.offload: handlers in a forked child, results and failures back in the parent.

Real processes and sockets (no mocks): each test forks a child, so they run
before any event loop exists in the test (``asyncio.run`` per test).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from engine.offload import Handler, Offload, OffloadError, OffloadLost, fork_offload


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    size: int


async def _setup(stack: contextlib.AsyncExitStack) -> Mapping[str, Handler]:
    async def echo(text: str) -> Reply:
        return Reply(text, len(text))

    async def slow(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async def fail() -> None:
        raise KeyError("no such thing")

    async def unpicklable() -> object:
        return lambda: None

    async def die() -> None:
        os._exit(3)

    return {"echo": echo, "slow": slow, "fail": fail, "unpicklable": unpicklable, "die": die}


def _fork() -> Offload:
    return fork_offload(_setup, asyncio.run)


def test_results_come_back_typed_and_concurrent_calls_complete_out_of_order() -> None:
    offload = _fork()

    async def main() -> None:
        await offload.start()
        slow = asyncio.create_task(offload.call("slow", 0.3))
        fast = await offload.call("echo", "héllo")
        assert fast == Reply("héllo", 5)
        assert not slow.done()
        assert await slow == 0.3
        results = await asyncio.gather(*(offload.call("echo", str(i)) for i in range(200)))
        assert [r.text for r in results] == [str(i) for i in range(200)]
        await offload.aclose()

    asyncio.run(main())
    with pytest.raises(ChildProcessError):
        os.waitpid(offload.pid, os.WNOHANG)  # reaped


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("fail", "KeyError: 'no such thing'", id="handler-raises"),
        pytest.param("unpicklable", "unpicklable result", id="result-cannot-travel"),
        pytest.param("nonexistent", "KeyError: 'nonexistent'", id="unknown-handler"),
    ],
)
def test_a_failing_call_raises_offload_error_and_the_child_keeps_serving(name: str, message: str) -> None:
    offload = _fork()

    async def main() -> None:
        await offload.start()
        with pytest.raises(OffloadError, match=message) as caught:
            await offload.call(name)
        assert not isinstance(caught.value, OffloadLost)
        assert (await offload.call("echo", "still here")).text == "still here"
        await offload.aclose()

    asyncio.run(main())


def test_a_dead_child_fails_pending_and_later_calls_at_once() -> None:
    offload = _fork()

    async def main() -> None:
        await offload.start()
        pending = asyncio.create_task(offload.call("slow", 30))
        await asyncio.sleep(0.05)
        with pytest.raises(OffloadLost):
            await asyncio.wait_for(offload.call("die"), 10)
        with pytest.raises(OffloadLost):
            await asyncio.wait_for(pending, 10)
        with pytest.raises(OffloadLost, match="exited"):
            await offload.call("echo", "too late")
        await offload.aclose()

    asyncio.run(main())


def test_a_child_whose_setup_fails_is_reported_at_start() -> None:
    async def broken(stack: contextlib.AsyncExitStack) -> Mapping[str, Handler]:
        raise RuntimeError("no trust store")

    offload = fork_offload(broken, asyncio.run)

    async def main() -> None:
        with pytest.raises(OffloadLost):
            await offload.start(startup=10)
        offload.kill()

    asyncio.run(main())


def test_the_child_ignores_sigint_and_exits_when_the_parent_closes() -> None:
    offload = _fork()

    async def main() -> None:
        await offload.start()
        os.kill(offload.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        assert (await offload.call("echo", "x")).size == 1
        await offload.aclose(grace=10)

    asyncio.run(main())
    with pytest.raises(ChildProcessError):
        os.waitpid(offload.pid, os.WNOHANG)

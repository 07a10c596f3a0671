"""What every built-in test-world server fleet shares: its listening servers, the
tasks it owns, and an orderly stop (no task outlives the fleet)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

__all__ = ["ServerSet"]


class ServerSet:
    """Base of the SMTP and HTTPS fleets; subclasses implement ``start``."""

    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self._servers.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

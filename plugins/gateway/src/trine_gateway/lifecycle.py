"""What outlives a request handler: event-stream pumps and long-polls, so that a shutdown ends
them at once instead of waiting out a 300 s ``?wait`` or an endless SSE stream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Lifecycle:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def closing(self) -> bool:
        return self.stopping.is_set()

    @property
    def open_tasks(self) -> int:
        """Tasks started with :meth:`spawn` that have not finished (tests check for leaks)."""
        return len(self._tasks)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """A snapshot of the tasks started with :meth:`spawn` that have not finished."""
        return frozenset(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as a task that :meth:`close` cancels; a reference is kept until it ends."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def until_stopping(
        self, work: Coroutine[Any, Any, T], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        """``await work``, unless shutdown begins first: then cancel it and ``await fallback()``."""
        if self.closing:
            work.close()
            return await fallback()
        job = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            job.cancel()
            stop.cancel()
            raise
        stop.cancel()
        if job in done:
            return job.result()
        job.cancel()
        await asyncio.wait({job})
        return await fallback()

    async def close(self) -> None:
        """Begin shutdown: wake every long-poll, end every event stream, and wait for them."""
        self.stopping.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

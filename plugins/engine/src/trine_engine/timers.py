"""The engine's timers: waits coming due, run and cancellation deadlines, retry backoffs ending,
leases expiring. In memory only: the open engine sets them again from durable state.

One heap and one task (:meth:`Timers.start`, :meth:`Timers.stop`). Entries are never removed: a
timer whose reason went away (the lease was renewed or released, the wait was resolved, the run
ended) finds that out when it fires and does nothing, so renewing a lease is one push.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

import structlog

from trine_engine.clock import Clock


class Timers:
    def __init__(self, clock: Clock, log: structlog.stdlib.BoundLogger) -> None:
        self._clock = clock
        self._log = log
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def at(self, when_ms: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the clock reaches ``when_ms``."""
        entry = (when_ms, next(self._order), callback)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._heap)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="trine-engine-timers")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = self._clock.now_ms()
            while self._heap and self._heap[0][0] <= now:
                _, _, callback = heapq.heappop(self._heap)
                try:
                    callback()
                except Exception:
                    self._log.exception("timer callback failed")
            self._wake.clear()
            await self._clock.wait_until(self._heap[0][0] if self._heap else None, self._wake)

"""Runs ready to dispatch, FIFO per function, and the ``take_work`` calls waiting for them.

Entries are checked when popped, not removed when they stop being ready (cancelled, leased
again): the ``queued`` flag keeps a run in at most one place, and a stale entry costs one check.
A run given back (lease released or expired) goes to the front of its queue: it was ready first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from trine_engine.run_state import RunState


class ReadyQueues:
    def __init__(self) -> None:
        self._queues: dict[str, deque[RunState]] = {}
        self._waiters: list[tuple[frozenset[str], asyncio.Event]] = []

    def push(self, state: RunState, front: bool = False) -> None:
        if state.queued:
            return
        state.queued = True
        state.ready_at = time.perf_counter()
        function = state.run.function
        queue = self._queues.get(function)
        if queue is None:
            queue = self._queues[function] = deque()
        if front:
            queue.appendleft(state)
        else:
            queue.append(state)
        for functions, event in self._waiters:
            if not functions or function in functions:
                event.set()

    def pop(
        self, functions: Sequence[str], limit: int, dispatchable: Callable[[RunState], bool]
    ) -> list[RunState]:
        """Up to ``limit`` runs of ``functions`` (every function when empty) that are still
        ``dispatchable``, taking one per function in turn so one busy function does not starve
        the others."""
        names = list(functions) or list(self._queues)
        taken: list[RunState] = []
        while len(taken) < limit:
            progress = False
            for name in names:
                queue = self._queues.get(name)
                while queue:
                    state = queue.popleft()
                    state.queued = False
                    if dispatchable(state):
                        taken.append(state)
                        progress = True
                        break
                if len(taken) == limit:
                    break
            if not progress:
                break
        return taken

    async def wait(self, functions: Sequence[str], timeout_s: float) -> None:
        """Return when a run of ``functions`` may have become ready, or after ``timeout_s``."""
        entry = (frozenset(functions), asyncio.Event())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await entry[1].wait()
        except TimeoutError:
            pass
        finally:
            self._waiters.remove(entry)

    @property
    def waiters(self) -> int:
        return len(self._waiters)

    def wake_all(self) -> None:
        for _, event in self._waiters:
            event.set()

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def depths(self) -> dict[str, int]:
        """Entries per function (stale ones included)."""
        return {function: len(queue) for function, queue in list(self._queues.items())}

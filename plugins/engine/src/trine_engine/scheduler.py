"""When a run may be dispatched: now (it waits in a ready queue), later (a timer brings it back
when its retry backoff ends), or not at all (leased, suspended, final, or its creation not yet
durable). ``take_work`` pops from here.

In memory only: the open engine queues every non-final run again (docs/internals.md, "Runs").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from trine_engine.clock import Clock
from trine_engine.ready_queue import Pin, ReadyQueues
from trine_engine.run_state import RunState
from trine_engine.timers import Timers
from trine_proto.trine.v1 import RunStatus


class Scheduler:
    def __init__(self, clock: Clock, timers: Timers, pin_of: Pin | None = None) -> None:
        self._clock = clock
        self._timers = timers
        self._queues = ReadyQueues(pin_of)

    @property
    def queues(self) -> ReadyQueues:
        return self._queues

    def make_dispatchable(self, state: RunState, now: int | None = None) -> None:
        """Queue a pending, unleased run, or set a timer for the end of its retry backoff."""
        self._queue(state, now, front=False)

    def requeue(self, state: RunState) -> None:
        """Its lease ended without a record: the run was ready first, so it goes first."""
        self._queue(state, None, front=True)

    def take(
        self, functions: Sequence[str], limit: int, now: int, build: str = ""
    ) -> list[RunState]:
        """Up to ``limit`` dispatchable runs of ``functions`` that a taker of ``build`` may take,
        out of their queues."""
        dispatchable = functools.partial(self._dispatchable_at, now=now)
        return self._queues.pop(functions, limit, dispatchable, build)

    async def wait(
        self,
        functions: Sequence[str],
        timeout_s: float,
        build: str = "",
        ticket: int | None = None,
    ) -> int:
        """Return when a run of ``functions`` a taker of ``build`` may take may have been queued,
        or after ``timeout_s``, with the waiter's ticket (see ``ReadyQueues.wait``)."""
        return await self._queues.wait(functions, timeout_s, build, ticket)

    def repin(self, function: str) -> None:
        """Which build may take a run of ``function`` may have changed: requeue them."""
        self._queues.rekey(function)

    def wake_waiters(self) -> None:
        self._queues.wake_all()

    @property
    def queued(self) -> int:
        """Queue entries, stale ones included."""
        return len(self._queues)

    @property
    def waiters(self) -> int:
        """``take_work`` calls waiting for a run."""
        return self._queues.waiters

    def _queue(self, state: RunState, now: int | None, front: bool) -> None:
        if not _dispatchable(state):
            return
        now = self._clock.now_ms() if now is None else now
        if state.run.not_before_ms > now:
            self._timers.at(
                state.run.not_before_ms, functools.partial(self.make_dispatchable, state)
            )
            return
        self._queues.push(state, front=front)

    def _dispatchable_at(self, state: RunState, *, now: int) -> bool:
        if not _dispatchable(state):
            return False
        if state.run.not_before_ms > now:
            # Queued when its backoff ended, popped after the wall clock stepped back: the pop
            # drops it from the queue, so a timer must bring it back.
            self.make_dispatchable(state, now)
            return False
        return True


def _dispatchable(state: RunState) -> bool:
    return (
        state.run.status == RunStatus.PENDING
        and state.lease is None
        and state.durable_run is not None
    )

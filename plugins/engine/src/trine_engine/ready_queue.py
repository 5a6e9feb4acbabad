"""Runs ready to dispatch, FIFO per function and pin, and the ``take_work`` calls waiting for them.

A run's *pin* is the only build that may take it, "" for any (``trine_engine.builds.pin_of``).
Each function has one queue per pin, so a taker looks only where runs it may take wait: the
unpinned queue and its own build's. Runs pinned to a build no worker of asks for stay where they
are, costing the other takers nothing, and never block the runs behind them.

Entries are checked when popped, not removed when they stop being ready (cancelled, leased
again): the ``queued`` flag keeps a run in at most one place, and a stale entry costs one check.
A run whose pin changed while it waited (a move, a function re-registered as pinned or not) is
moved by :meth:`ReadyQueues.rekey`; one popped from the wrong queue all the same goes to its
right one. A run given back (lease released or expired) goes to the front of its queue: it was
ready first.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence

from trine_engine.run_state import RunState

Pin = Callable[[RunState], str]


class ReadyQueues:
    def __init__(self, pin_of: Pin | None = None) -> None:
        self._pin_of: Pin = pin_of or (lambda _state: "")
        self._queues: dict[str, dict[str, deque[RunState]]] = {}
        """function → pin → runs."""
        self._waiters: list[_Waiter] = []
        """In ticket order: the order they are woken in, and so take runs in."""
        self._tickets = itertools.count()

    def push(self, state: RunState, front: bool = False) -> None:
        if state.queued:
            return
        state.queued = True
        state.ready_at = time.perf_counter()
        self._put(state, front)

    def _put(self, state: RunState, front: bool) -> None:
        function, pin = state.run.function, self._pin_of(state)
        queue = self._queues.setdefault(function, {}).setdefault(pin, deque())
        if front:
            queue.appendleft(state)
        else:
            queue.append(state)
        for waiter in self._waiters:
            if (not waiter.functions or function in waiter.functions) and (
                not pin or pin == waiter.build
            ):
                waiter.event.set()

    def pop(
        self,
        functions: Sequence[str],
        limit: int,
        dispatchable: Callable[[RunState], bool],
        build: str = "",
    ) -> list[RunState]:
        """Up to ``limit`` runs of ``functions`` (every function when empty) that are still
        ``dispatchable`` and may go to a taker of ``build``, taking one per function in turn so
        one busy function does not starve the others."""
        names = list(functions) or list(self._queues)
        pins = ("", build) if build else ("",)
        taken: list[RunState] = []
        while len(taken) < limit:
            progress = False
            for name in names:
                state = self._pop_one(name, pins, dispatchable)
                if state is not None:
                    taken.append(state)
                    progress = True
                    if len(taken) == limit:
                        break
            if not progress:
                break
        return taken

    def _pop_one(
        self, function: str, pins: Sequence[str], dispatchable: Callable[[RunState], bool]
    ) -> RunState | None:
        """The run of ``function`` ready first among the queues of ``pins``."""
        by_pin = self._queues.get(function)
        if not by_pin:
            return None
        while True:
            heads = [(q[0].ready_at, pin) for pin in pins if (q := by_pin.get(pin))]
            if not heads:
                return None
            pin = min(heads)[1]
            state = by_pin[pin].popleft()
            state.queued = False
            if not dispatchable(state):
                continue
            if self._pin_of(state) != pin:  # its pin changed while it waited: requeue it there
                state.queued = True
                self._put(state, front=True)
                continue
            return state

    def rekey(self, function: str) -> None:
        """The pins of ``function``'s runs may have changed (a move, a re-registration): put
        each queued run in the queue of its pin now, keeping the order they became ready in."""
        by_pin = self._queues.pop(function, None)
        if not by_pin:
            return
        for state in sorted((s for q in by_pin.values() for s in q), key=lambda s: s.ready_at):
            self._put(state, front=False)

    async def wait(
        self,
        functions: Sequence[str],
        timeout_s: float,
        build: str = "",
        ticket: int | None = None,
    ) -> int:
        """Return when a run of ``functions`` that a taker of ``build`` may take may have become
        ready, or after ``timeout_s``; returns the waiter's ticket. Waiters are woken in ticket
        order and the first to run takes the run. A taker that found nothing when woken
        (another took the run) waits again with the ticket it was given, so it stays ahead of
        the one that took it and takers that stay (work streams) take runs in turn instead of
        the first one always winning; one that took a run waits next with a new ticket."""
        waiter = _Waiter(
            next(self._tickets) if ticket is None else ticket,
            frozenset(functions),
            build,
            asyncio.Event(),
        )
        bisect.insort(self._waiters, waiter, key=_ticket)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter.event.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters.remove(waiter)
        return waiter.ticket

    @property
    def waiters(self) -> int:
        return len(self._waiters)

    def wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.event.set()

    def __len__(self) -> int:
        return sum(len(q) for by_pin in self._queues.values() for q in by_pin.values())

    def depths(self) -> dict[str, int]:
        """Entries per function (stale ones included)."""
        return {
            function: sum(len(q) for q in list(by_pin.values()))
            for function, by_pin in list(self._queues.items())
        }


@dataclasses.dataclass(slots=True, eq=False)
class _Waiter:
    ticket: int
    functions: frozenset[str]
    build: str
    event: asyncio.Event


def _ticket(waiter: _Waiter) -> int:
    return waiter.ticket

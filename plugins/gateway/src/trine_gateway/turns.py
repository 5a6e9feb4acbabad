"""The gateway's share of the event loop: at most ``requests_per_turn`` HTTP requests enter the
app in one turn of the loop; the others wait, in the order they came, for the next turns.

Why: with ``--target=all`` one event loop runs every role, and a turn of the loop runs every
callback that is ready. A flood of requests (200 connections sending malformed bodies, as
``bench/storm.py`` does) put hundreds of requests into one turn, and the engine's commits, the
coordinator's dispatch and the workers' heartbeats (callbacks on the same loop) waited for all of
them: the loop ran 0.1 to 0.25 s late. Each request's work in the app (litestar, the body's
decoding, the answer) is about seven tenths of what the flood costs the process (py-spy, in the
flood); bounded per turn, a commit waits for at most ``requests_per_turn`` of them.

How: a request enters at once while its turn has room and nobody waits. Otherwise it waits on a
future, and a callback of the next turn lets the first ``requests_per_turn`` waiting go on (they
run in the turn after it, the earliest a released task can run). While any wait or were just let
go, every newcomer queues behind them, so the order holds and no turn runs more than the share
(where the count restarts, a turn may get up to twice that: the requests admitted at once just
before the callback ran, and those after).

Exempt: ``/healthz`` and ``/metrics``, which probes and scrapers must reach under a flood. Not
bounded here: uvicorn's reading of a request's head, below the app (the rest of a request's cost),
and what a request does after its first turn (a long-poll or an event stream is admitted once).
A request is never refused; under a flood clients wait longer for their answers, and the runs in
flight keep their pace. ``trine_http_requests_waiting`` shows the queue.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

from trine_gateway.metrics import HTTP_WAITED, HTTP_WAITING, method_label

App = Callable[..., Awaitable[None]]
EXEMPT_PATHS = frozenset({"/healthz", "/metrics"})
"""Paths that never wait: a load balancer's probe and a metrics scraper."""


class Turns:
    """Admits HTTP requests into the app, ``per_turn`` a turn of the event loop (0: all)."""

    def __init__(self, app: App, per_turn: int) -> None:
        self._app = app
        self._per_turn = per_turn
        self._admitted = 0  # at once, in this turn
        self._released = 0  # by the last callback: they run in the turn after it
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._next_turn_due = False

    @property
    def counting(self) -> bool:
        """Whether the next turn's count is queued on the loop: only while requests come or
        wait, so that an idle gateway leaves the loop idle."""
        return self._next_turn_due

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._per_turn and scope["type"] == "http" and scope["path"] not in EXEMPT_PATHS:
            await self._admission(scope)
        await self._app(scope, receive, send)

    async def _admission(self, scope: Any) -> None:
        """Return at once while this turn has room and nobody queues; else wait for a turn."""
        if self._admitted < self._per_turn and not self._waiting and not self._released:
            self._admitted += 1
            self._count_from_next_turn()
            return
        admitted = asyncio.get_running_loop().create_future()
        self._waiting.append(admitted)
        self._count_from_next_turn()
        method = method_label(scope)
        HTTP_WAITED.labels(method).inc()
        waiting = HTTP_WAITING.labels(method)
        waiting.inc()
        try:
            await admitted  # a cancelled waiter is skipped when its turn comes
        finally:
            waiting.dec()

    def _count_from_next_turn(self) -> None:
        if not self._next_turn_due:
            self._next_turn_due = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A callback of the next turn: let the first ``per_turn`` waiting go on (their requests
        run in the turn after this one), and start this turn's count afresh."""
        self._next_turn_due = False
        self._admitted = 0
        self._released = 0
        while self._waiting and self._released < self._per_turn:
            admitted = self._waiting.popleft()
            if not admitted.done():
                admitted.set_result(None)
                self._released += 1
        if self._released or self._waiting:
            self._count_from_next_turn()

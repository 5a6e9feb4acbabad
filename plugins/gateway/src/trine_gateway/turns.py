"""The gateway's share of the event loop: at most ``requests_per_turn`` HTTP requests enter the
app in one turn of the loop; the others wait, in the order they came, for the next turns.

Why: with ``--target=all`` one event loop runs every role, and a turn of the loop runs every
callback that is ready. A flood of requests (200 connections sending malformed bodies, as
``bench/storm.py`` does) put hundreds of requests into one turn, and the engine's commits, the
coordinator's dispatch and the workers' heartbeats (callbacks on the same loop) waited for all of
them: the loop ran 0.25 to 0.5 s late. Each request's work in the app (litestar, the body's
decoding, the answer) is about four fifths of what the flood costs the process (py-spy, in the
flood); bounded per turn, a commit waits at most for ``requests_per_turn`` of them.

What it does not bound: uvicorn's reading of a request's head, below the app (the rest of a
request's cost), and what a request does after its first turn: a long-poll or an event stream
is admitted once, and then waits like any other task. A request is never refused here; under a
flood clients wait longer for their answers, and the runs they started keep their pace.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

App = Callable[..., Awaitable[None]]


class Turns:
    """Admits HTTP requests into the app, ``per_turn`` a turn of the event loop (0: all)."""

    def __init__(self, app: App, per_turn: int) -> None:
        self._app = app
        self._per_turn = per_turn
        self._admitted = 0  # in this turn
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._next_turn_due = False

    @property
    def counting(self) -> bool:
        """Whether the next turn's count is queued on the loop: only while requests come or
        wait, so that an idle gateway leaves the loop idle."""
        return self._next_turn_due

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._per_turn and scope["type"] == "http":
            await self._admission()
        await self._app(scope, receive, send)

    async def _admission(self) -> None:
        """Return at once while this turn has room and nobody waits; else wait for a turn."""
        if self._admitted < self._per_turn and not self._waiting:
            self._admitted += 1
            self._count_from_next_turn()
            return
        admitted = asyncio.get_running_loop().create_future()
        self._waiting.append(admitted)
        self._count_from_next_turn()
        await admitted  # a cancelled waiter is skipped when its turn comes

    def _count_from_next_turn(self) -> None:
        if not self._next_turn_due:
            self._next_turn_due = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A callback of the next turn: admit the first ``per_turn`` waiting (their requests go
        on in the turn after), and count this turn's newcomers against the same share."""
        self._next_turn_due = False
        self._admitted = 0
        while self._waiting and self._admitted < self._per_turn:
            admitted = self._waiting.popleft()
            if not admitted.done():
                admitted.set_result(None)
                self._admitted += 1
        if self._admitted or self._waiting:
            self._count_from_next_turn()

"""The engine's time: every timestamp it writes into a record and every timer it sets.

Injected (``Engine.open(config, clock=…)``) so a test moves time instead of waiting for it. A
caller's own waits (the ``wait_ms`` of ``take_work`` and ``wait_run``) are not the
engine's time: they bound how long a call blocks, and run on the event loop's clock.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from trine_proto.vocabulary import now_ms


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    async def wait_until(self, when_ms: int | None, woken: asyncio.Event) -> None:
        """Return once ``woken`` is set or this clock reaches ``when_ms`` (never, if None),
        whichever comes first. The timer loop sleeps here."""
        ...


class SystemClock:
    """The wall clock. It may step back (NTP); the engine's timers re-check when they fire."""

    def now_ms(self) -> int:
        return now_ms()

    async def wait_until(self, when_ms: int | None, woken: asyncio.Event) -> None:
        timeout = None if when_ms is None else max(0.0, (when_ms - self.now_ms()) / 1000)
        try:
            async with asyncio.timeout(timeout):
                await woken.wait()
        except TimeoutError:
            pass


class ManualClock:
    """A clock that moves only when told to, for tests: moving it wakes whatever waits on it, so
    every timer due by the new time fires, and nothing fires by itself."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = now_ms
        self._sleepers: set[asyncio.Event] = set()

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        self.set(self._now_ms + ms)

    def set(self, now_ms: int) -> None:
        """Move to ``now_ms``, backwards too (a wall clock stepping back)."""
        self._now_ms = now_ms
        for woken in self._sleepers:
            woken.set()

    async def wait_until(self, when_ms: int | None, woken: asyncio.Event) -> None:
        self._sleepers.add(woken)
        try:
            await woken.wait()
        finally:
            self._sleepers.discard(woken)

"""The engine's time: every timestamp it writes into a record and every timer it sets.

Injected (``Engine.open(config, clock=…)``) so a test moves time instead of waiting for it. A
caller's own waits (the ``wait_ms`` of ``take_work`` and ``wait_run``) are not the
engine's time: they bound how long a call blocks, and run on the event loop's clock.
"""

from __future__ import annotations

import asyncio
import time
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


class SkippingClock:
    """Real time plus an offset that only grows: the clock of ``trine.testing``'s test kit.

    It runs at the wall clock's pace (a sleep of 50 ms takes 50 ms) and can be moved ahead: by
    :meth:`advance` (a test asks for it), or by :meth:`skip`, to the earliest time a parked timer
    loop waits for (the test kit does that when nothing else can make progress). It never moves
    back, and it is read from ``time.monotonic`` after its start, so a wall clock stepped by NTP
    does not move it either.

    Whether moving it is safe is the caller's business: the clock does not know what the engine
    is doing, only when its timer loop wants to wake (:meth:`next_due_ms`).
    """

    def __init__(self, start_ms: int | None = None) -> None:
        """Start at ``start_ms`` (milliseconds since the Unix epoch; default: now)."""
        self._origin_ms = now_ms() if start_ms is None else start_ms
        self._origin = time.monotonic()
        self._offset_ms = 0
        self._sleepers: dict[asyncio.Event, int | None] = {}
        self._parks = 0
        self._parked = asyncio.Event()

    def now_ms(self) -> int:
        return self._origin_ms + int((time.monotonic() - self._origin) * 1000) + self._offset_ms

    @property
    def skipped_ms(self) -> int:
        """How far this clock was moved ahead of real time, in total."""
        return self._offset_ms

    @property
    def parks(self) -> int:
        """How many times a timer loop parked here: a caller that reads :meth:`next_due_ms`,
        lets the event loop run, and finds this unchanged knows no timer fired in between."""
        return self._parks

    def advance(self, ms: int) -> None:
        """Move ``ms`` ahead (not back: a negative ``ms`` is a ValueError) and wake every timer
        loop, so each timer due by the new time fires."""
        if ms < 0:
            raise ValueError(f"a clock that only moves forward cannot advance by {ms} ms")
        self._offset_ms += ms
        self._wake()

    def next_due_ms(self) -> int | None:
        """The earliest time a parked timer loop waits for; None when no loop is parked with a
        due time, or when one was woken and has not parked again (it may be about to wait for
        an earlier time: a timer was just set)."""
        if any(woken.is_set() for woken in self._sleepers):
            return None
        due = [when for when in self._sleepers.values() if when is not None]
        return min(due) if due else None

    def skip(self) -> int:
        """Move to :meth:`next_due_ms` if it is ahead and wake the timer loops; the milliseconds
        skipped (0: nothing was due, or it was due already and the loop is only woken)."""
        due = self.next_due_ms()
        if due is None:
            return 0
        ahead = max(0, due - self.now_ms())
        self._offset_ms += ahead
        self._wake()
        return ahead

    async def settled(self) -> None:
        """Return once a timer loop is parked with nothing due by now: every timer due by the
        current time has fired (what those timers wrote may still be on its way to disk)."""
        while not self._settled():
            self._parked.clear()
            await self._parked.wait()

    def _settled(self) -> bool:
        if not self._sleepers or any(woken.is_set() for woken in self._sleepers):
            return False
        now = self.now_ms()
        return all(when is None or when > now for when in self._sleepers.values())

    def _wake(self) -> None:
        for woken in self._sleepers:
            woken.set()

    async def wait_until(self, when_ms: int | None, woken: asyncio.Event) -> None:
        self._sleepers[woken] = when_ms
        self._parks += 1
        self._parked.set()
        try:
            while not woken.is_set():
                if when_ms is None:
                    await woken.wait()
                    return
                remaining = when_ms - self.now_ms()
                if remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(remaining / 1000):
                        await woken.wait()
                except TimeoutError:
                    continue  # real time ran out; the loop re-reads the clock (ms rounding)
        finally:
            self._sleepers.pop(woken, None)

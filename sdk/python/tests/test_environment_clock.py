"""``trine_engine.clock.SkippingClock``, the test kit's clock: real time plus an offset that grows,
skipped to the timer loop's next due time on request."""

from __future__ import annotations

import asyncio

import pytest

from trine_engine.clock import SkippingClock

START = 1_700_000_000_000
HOUR = 3_600_000


async def parked(
    clock: SkippingClock, woken: asyncio.Event, when_ms: int | None
) -> asyncio.Task[None]:
    """A timer loop's wait, started and parked on ``clock`` (it parks before its first await)."""
    parks = clock.parks
    task = asyncio.create_task(clock.wait_until(when_ms, woken))
    await asyncio.sleep(0)
    assert clock.parks == parks + 1
    return task


async def test_it_runs_at_real_time_from_its_start() -> None:
    clock = SkippingClock(START)
    first = clock.now_ms()
    assert START <= first < START + 1000
    await asyncio.sleep(0.02)
    assert clock.now_ms() >= first + 20
    assert clock.skipped_ms == 0


async def test_skip_jumps_to_the_next_due_time_and_wakes_the_loop() -> None:
    clock, woken = SkippingClock(START), asyncio.Event()
    wait = await parked(clock, woken, START + HOUR)
    assert clock.next_due_ms() == START + HOUR
    skipped = clock.skip()
    assert HOUR - 1000 < skipped <= HOUR
    assert clock.now_ms() >= START + HOUR
    await asyncio.wait_for(wait, 1)
    assert woken.is_set()


async def test_nothing_is_due_while_the_loop_is_woken_or_waits_for_nothing() -> None:
    clock, woken = SkippingClock(START), asyncio.Event()
    wait = await parked(clock, woken, None)
    assert clock.next_due_ms() is None
    assert clock.skip() == 0
    woken.set()  # a timer was set: the loop will wait again, maybe for an earlier time
    assert clock.next_due_ms() is None
    await asyncio.wait_for(wait, 1)


async def test_advance_wakes_the_loop_and_settled_waits_for_it_to_park_again() -> None:
    clock, woken = SkippingClock(START), asyncio.Event()
    await parked(clock, woken, START + HOUR)
    clock.advance(2 * HOUR)
    assert clock.now_ms() >= START + 2 * HOUR

    async def timer_loop() -> None:  # fires what is due, then waits for what comes next
        await woken.wait()
        woken.clear()
        await clock.wait_until(START + 10 * HOUR, woken)

    loop = asyncio.create_task(timer_loop())
    await asyncio.wait_for(clock.settled(), 1)
    assert clock.next_due_ms() == START + 10 * HOUR
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)


async def test_it_never_moves_back() -> None:
    clock = SkippingClock(START)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


async def test_a_due_time_reached_in_real_time_ends_the_wait() -> None:
    clock, woken = SkippingClock(START), asyncio.Event()
    await asyncio.wait_for(clock.wait_until(clock.now_ms() + 20, woken), 1)
    assert not woken.is_set()

"""The event loop's lag: a stalled loop shows as late ticks, a free one as none."""

from __future__ import annotations

import asyncio
import time

from trine_metrics.loop_lag import LoopLagSampler

STALL_S = 0.3


async def test_a_stalled_loop_is_observed_as_lag() -> None:
    seen: asyncio.Queue[float] = asyncio.Queue()
    sampler = LoopLagSampler(seen.put_nowait, tick_s=0.01)
    sampler.start()
    try:
        free = await asyncio.wait_for(seen.get(), 5)
        time.sleep(STALL_S)  # noqa: ASYNC251 (the stall under test: a role hogging the loop)
        stalled = await asyncio.wait_for(seen.get(), 5)
    finally:
        sampler.stop()
    assert free < STALL_S / 2
    assert stalled >= STALL_S - 0.01 - 0.005  # due 10 ms into the stall at the latest


async def test_stop_ends_sampling() -> None:
    sampler = LoopLagSampler(lambda _: None, tick_s=0.01)
    sampler.start()
    assert sampler.running
    sampler.stop()
    await asyncio.sleep(0)  # the cancellation is delivered on the task's next step
    assert not sampler.running

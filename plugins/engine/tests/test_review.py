"""Regressions found in review: durability across the finished-run cache, retry schedules from
nonsensical policies, and runs dropped from the ready queue."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from trine_core import RunFinished
from trine_engine import retry
from trine_proto.trine.v1 import (
    CancelRunRequest,
    GetRunRequest,
    ListRunsRequest,
    ReportOutcome,
    RetryPolicy,
    RunStatus,
)

Harness = Any


async def test_a_finish_is_not_evicted_from_the_cache_before_it_is_durable(h: Harness) -> None:
    # With a small finished-run cache, a run that finished in memory used to be evicted before its
    # record was durable; the next lookup reloaded the stale (running) run from RocksDB as a second,
    # "active" copy, so a cancel was accepted and overwrote the acknowledged completion.
    engine = await h.reopen(finished_cache_size=0)
    await h.register()
    run = await h.start()
    item = await h.take_one()
    finished, cancelled = await asyncio.gather(
        h.report(item, h.finish(b'"ok"')),
        engine.cancel_run(CancelRunRequest(run_id=run.id)),
        return_exceptions=True,
    )
    assert finished.outcome == ReportOutcome.FINISHED
    assert isinstance(cancelled, RunFinished)
    final = await engine.get_run(GetRunRequest(run_id=run.id))
    assert (final.status, final.result) == (RunStatus.COMPLETED, b'"ok"')
    assert [e.type for e in await h.events(run.id)] == ["run.started", "run.completed"]
    assert not engine._cache.active  # no stale copy left behind as a pending run
    assert (await engine.list_runs(ListRunsRequest(status=RunStatus.PENDING))).runs == []


def test_retry_delay_stays_within_the_policy() -> None:
    negative = retry.Policy(initial_interval_ms=100, backoff_coefficient=-1e13)
    assert [negative.delay_ms(a) for a in (1, 2, 3)] == [100, 0, 10_000]
    nan = retry.Policy(backoff_coefficient=math.nan)
    assert nan.delay_ms(2) == 10_000


async def test_a_negative_backoff_does_not_strand_the_run_after_a_restart(h: Harness) -> None:
    # A negative coefficient gave a retry time far in the past; stored as an unsigned int it came
    # back from RocksDB as ~1.8e19 ms, so after a restart the run was never dispatched again.
    policy = RetryPolicy(max_attempts=5, initial_interval_ms=10, backoff_coefficient=-1e13)
    await h.register(retry=policy)
    run = await h.start()
    for attempt in (1, 2):
        item = await h.take_one(wait_ms=2_000)
        response = await h.report(item, h.failed(0, attempt=attempt))
        assert response.outcome == ReportOutcome.RETRY_SCHEDULED
        now = h.clock.now_ms()
        assert now <= response.retry_at_ms <= now + 10
        h.clock.advance(10)
    await h.reopen()
    assert (await h.take_one(wait_ms=2_000)).run.id == run.id


async def test_a_nan_backoff_schedules_a_retry(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=5, backoff_coefficient=math.nan))
    await h.start()
    item = await h.take_one()
    assert (await h.report(item, h.failed(0))).outcome == ReportOutcome.RETRY_SCHEDULED
    h.clock.advance(100)
    item = await h.take_one(wait_ms=2_000)
    response = await h.report(item, h.failed(0, attempt=2))  # was: ValueError
    assert response.outcome == ReportOutcome.RETRY_SCHEDULED


async def test_a_clock_step_back_does_not_drop_a_queued_run(h: Harness) -> None:
    # A run queued once its backoff ended, then popped while the wall clock had stepped back, was
    # dropped from the queue with no timer: it stayed pending until the next restart.
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=20))
    run = await h.start()
    await h.report(await h.take_one(), h.failed(0))
    state = h.engine._cache.get(run.id)
    h.clock.advance(20)
    await h.until(lambda: state.queued)  # the backoff ended: queued again
    h.clock.advance(-1_000)  # the wall clock steps back a second
    assert await h.take() == []  # not ready by this clock
    h.clock.advance(1_000)
    assert (await h.take_one(wait_ms=2_000)).run.id == run.id


async def test_a_take_work_woken_by_close_leases_nothing(h: Harness) -> None:
    # close() writes the gathered batch, which queues a just-started run and wakes the long-polls:
    # they used to lease it on the stopped engine, so a worker ran a step it could never report.
    await h.register()
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # the poll waits
    start = asyncio.create_task(h.start())
    await asyncio.sleep(0)  # the start is appended, not yet written
    await h.close()
    assert await asyncio.wait_for(poll, 5) == []
    await start

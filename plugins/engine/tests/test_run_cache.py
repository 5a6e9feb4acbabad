"""The run cache: finished runs read back from RocksDB once the cache let them go, and a run's end
kept in memory until it is durable."""

from __future__ import annotations

import asyncio
from typing import Any

from trine_core import RunFinished
from trine_proto.trine.v1 import (
    CancelRunRequest,
    GetJournalRequest,
    GetRunRequest,
    ListRunsRequest,
    ReportOutcome,
    RunStatus,
)

Harness = Any


async def test_finished_runs_are_read_back_when_not_cached(h: Harness) -> None:
    await h.register()
    run = await h.start()
    await h.report(await h.take_one(), h.completed(0), h.finish())
    engine = await h.reopen(finished_cache_size=0)
    assert engine.inspect(run.id) is None
    assert (await h.backend.get_run(GetRunRequest(run_id=run.id))).status == RunStatus.COMPLETED
    assert [e.type for e in await h.events(run.id)] == [
        "run.started",
        "step.completed",
        "run.completed",
    ]
    assert len((await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries) == 1


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
        h.backend.cancel_run(CancelRunRequest(run_id=run.id)),
        return_exceptions=True,
    )
    assert finished.outcome == ReportOutcome.FINISHED
    assert isinstance(cancelled, RunFinished)
    final = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert (final.status, final.result) == (RunStatus.COMPLETED, b'"ok"')
    assert [e.type for e in await h.events(run.id)] == ["run.started", "run.completed"]
    assert engine.stats().active_runs == 0  # no stale copy left behind as a pending run
    assert (await h.backend.list_runs(ListRunsRequest(status=RunStatus.PENDING))).runs == []


async def test_the_finished_runs_in_memory_are_bounded_in_bytes(h: Harness) -> None:
    """Sized in runs only, 150 finished runs of 0.93 MB inputs kept +325 MB."""
    budget = 30_000
    engine = await h.reopen(run_cache_bytes=budget)
    await h.register()
    big = b'"' + b"x" * 4000 + b'"'
    runs = []
    for _ in range(10):
        run = await h.start(data=big)
        await h.report(await h.take_one(), h.finish())
        runs.append(run)
    await h.until(lambda: engine.inspect(runs[-1].id) is not None)
    cached = [run.id for run in runs if engine.inspect(run.id) is not None]
    assert 1 <= len(cached) < len(runs)
    assert cached == [run.id for run in runs[-len(cached) :]]  # the newest
    assert 0 < engine._cache.finished_bytes <= budget
    # The others are read back from RocksDB, whole.
    first = await h.backend.get_run(GetRunRequest(run_id=runs[0].id))
    assert (first.status, first.input) == (RunStatus.COMPLETED, big)
    assert engine._cache.finished_bytes <= budget
    # A run larger than the whole budget is not kept at all.
    small = await h.reopen(run_cache_bytes=1_000)
    await h.backend.get_run(GetRunRequest(run_id=runs[0].id))
    assert small.inspect(runs[0].id) is None
    assert small._cache.finished_bytes == 0

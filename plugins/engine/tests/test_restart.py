"""Close and reopen the same data dir: what is durable survives, what is in memory starts over."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trine_core import LeaseLost
from trine_proto.trine.v1 import (
    GetJournalRequest,
    GetRunRequest,
    ListFunctionsRequest,
    ReportOutcome,
    RetryPolicy,
    RunStatus,
    StartRunRequest,
)

Harness = Any


async def test_runs_steps_and_functions_survive(h: Harness) -> None:
    await h.register("greet", "other", retry=RetryPolicy(max_attempts=5))
    done = await h.start()
    busy = await h.start()
    waiting = await h.start()
    item = await h.take_one()
    await h.report(item, h.started(0, "a"), h.completed(0, "a", b'"A"'), h.finish(b"7"))
    item = await h.take_one()
    assert item.run.id == busy.id
    await h.report(item, h.started(0, "a"), h.completed(0, "a", b'"A"'))
    await h.report(item, h.started(1, "b"), h.failed(1, "b", retryable=False))
    done_events = await h.events(done.id)

    await h.reopen()

    functions = await h.backend.list_functions(ListFunctionsRequest())
    assert [(f.name, f.retry.max_attempts) for f in functions.functions] == [
        ("greet", 5),
        ("other", 5),
    ]
    final = await h.backend.get_run(GetRunRequest(run_id=done.id))
    assert final.status == RunStatus.COMPLETED
    assert final.result == b"7"
    assert [e.seq for e in await h.events(done.id)] == [e.seq for e in done_events]
    assert await h.events(done.id) == done_events

    # The running run is pending again (its lease died with the process), the waiting one too;
    # both are dispatchable, in creation order, and the journal comes along.
    assert (await h.backend.get_run(GetRunRequest(run_id=busy.id))).status == RunStatus.PENDING
    again = await h.take_one(max_items=1)
    assert again.run.id == busy.id
    assert again.lease.attempt == 2
    assert again.run.attempt == 2
    assert [(e.index, e.name, e.output) for e in again.journal] == [(0, "a", b'"A"'), (1, "b", b"")]
    assert again.journal[1].error.type == "ValueError"
    assert again.step_attempts == {1: 1}
    assert (await h.take_one()).run.id == waiting.id

    with pytest.raises(LeaseLost):  # a lease from before the restart is refused
        await h.report(item, h.finish())
    assert (await h.report(again, h.finish())).outcome == ReportOutcome.FINISHED
    journal = await h.backend.get_journal(GetJournalRequest(run_id=busy.id))
    assert len(journal.entries) == 2


async def test_retry_schedule_survives(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=300))
    run = await h.start()
    item = await h.take_one()
    retry = await h.report(item, h.failed(0))
    assert retry.outcome == ReportOutcome.RETRY_SCHEDULED

    await h.reopen()
    pending = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert pending.not_before_ms == retry.retry_at_ms
    assert await h.take() == []  # the backoff is not over
    h.clock.advance(300)
    again = await h.take_one(wait_ms=5_000)  # the engine's timer makes it ready
    assert again.run.id == run.id
    assert again.step_attempts == {0: 1}
    failed = [json.loads(e.data) for e in h.inspect(run.id).events if e.type == "step.failed"]
    assert failed == [
        {
            "index": 0,
            "attempt": 1,
            "error": {"type": "ValueError", "message": "boom"},
            "retry_at_ms": retry.retry_at_ms,
        }
    ]


async def test_a_runs_trace_context_survives_a_restart(h: Harness) -> None:
    """An added field of the run's record: no storage format change, kept across a restart, so
    the attempts after it join the run's trace."""
    await h.register("greet")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    started = await h.backend.start_run(
        StartRunRequest(function="greet", input=b"1", trace_context={"traceparent": parent})
    )
    item = await h.take_one()
    await h.report(item, h.started(0, "a"), h.completed(0, "a", b'"A"'))

    await h.reopen()

    run = await h.backend.get_run(GetRunRequest(run_id=started.run.id))
    assert run.trace_context == {"traceparent": parent}
    again = await h.take_one()
    assert again.run.trace_context == {"traceparent": parent}

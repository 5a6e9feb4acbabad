"""Step retries: the policy that applies, the backoff schedule, the final failure the workflow
sees, and schedules from nonsensical policies that must still bring the run back."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from trine_core import LeaseLost
from trine_proto import retry
from trine_proto.trine.v1 import (
    GetJournalRequest,
    GetRunRequest,
    ReportOutcome,
    RetryPolicy,
    RunStatus,
)

Harness = Any


async def test_step_retry_then_final_failure(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=20))
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0, "ok"))

    retry = await h.report(item, h.started(1, "flaky"), h.failed(1, "flaky", attempt=1))
    assert retry.outcome == ReportOutcome.RETRY_SCHEDULED
    assert retry.retry_at_ms > 0
    pending = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert pending.status == RunStatus.PENDING
    assert pending.not_before_ms == retry.retry_at_ms
    assert await h.take() == []  # still backing off
    with pytest.raises(LeaseLost):  # the attempt ended with the retry
        await h.report(item, h.finish())

    h.clock.advance(20)
    second = await h.take_one(wait_ms=5_000)
    assert second.lease.attempt == 2
    assert second.step_attempts == {1: 1}
    retry2 = await h.report(second, h.failed(1, "flaky", attempt=2))
    assert retry2.outcome == ReportOutcome.RETRY_SCHEDULED
    # Backoff doubles: 20 ms after attempt 1, 40 ms after attempt 2.
    gaps = [
        json.loads(e.data)["retry_at_ms"] - e.at_ms
        for e in h.inspect(run.id).events
        if "retry" in e.data.decode()
    ]
    assert gaps == [20, 40]

    h.clock.advance(40)
    third = await h.take_one(wait_ms=5_000)
    assert third.lease.attempt == 3
    assert third.step_attempts == {1: 2}
    final = await h.report(third, h.failed(1, "flaky", attempt=3))
    assert final.outcome == ReportOutcome.STEP_FAILED  # max_attempts reached
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.name) for e in journal] == [(0, "ok"), (1, "flaky")]
    assert journal[1].error.type == "ValueError"
    assert journal[1].attempt == 3
    assert journal[1].output == b""
    # The workflow may catch the error and go on under the same lease.
    assert (await h.report(third, h.completed(2, "after"))).outcome == ReportOutcome.CONTINUE
    assert (await h.report(third, h.finish())).outcome == ReportOutcome.FINISHED

    failed = [json.loads(e.data) for e in await h.events(run.id) if e.type == "step.failed"]
    assert [f["attempt"] for f in failed] == [1, 2, 3]
    assert "retry_at_ms" in failed[0]
    assert "retry_at_ms" in failed[1]
    assert failed[2]["final"] is True
    assert "retry_at_ms" not in failed[2]
    assert failed[2]["error"] == {"type": "ValueError", "message": "boom"}


async def test_non_retryable_and_step_policy(h: Harness) -> None:
    await h.register()  # the function has the default policy (3 attempts)
    await h.start()
    item = await h.take_one()
    hard = await h.report(item, h.failed(0, retryable=False))
    assert hard.outcome == ReportOutcome.STEP_FAILED
    # The step's own policy wins: one attempt means no retry.
    single = await h.report(item, h.failed(1, retry=RetryPolicy(max_attempts=1)))
    assert single.outcome == ReportOutcome.STEP_FAILED
    default = await h.report(item, h.failed(2))
    assert default.outcome == ReportOutcome.RETRY_SCHEDULED
    assert default.retry_at_ms - h.inspect(item.run.id).events[-1].at_ms == 100


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

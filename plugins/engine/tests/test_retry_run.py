"""Retrying a failed or blocked run (docs/versioning.md): the journal is cut at its first error,
the run is pending again under its id, and what the run left behind is put straight (step
attempts, kept signals, children, its deadline); all of it durable across a restart."""

from __future__ import annotations

import asyncio

import pytest
from tests.versioning_kit import blocked, event_data, run_of

from tests.conftest import Harness
from trine_core import RunNotFound
from trine_core.errors import RunNotRetryable
from trine_proto.trine.v1 import (
    GetJournalRequest,
    ReportOutcome,
    RetryPolicy,
    RetryRunRequest,
    RunStatus,
    SignalRunRequest,
    StartRunRequest,
    WaitRunRequest,
)


async def retry(h: Harness, run_id: str, reason: str = "fixed") -> None:
    await h.backend.retry_run(RetryRunRequest(run_id=run_id, reason=reason))


async def journal(h: Harness, run_id: str) -> list[tuple[int, str]]:
    entries = (await h.backend.get_journal(GetJournalRequest(run_id=run_id))).entries
    return [(e.index, e.name) for e in entries]


async def test_a_run_failed_at_its_second_step_resumes_there(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.started(0, "a"), h.completed(0, "a", b'"A"'))
    await h.report(item, h.started(1, "b"), h.failed(1, "b", retryable=False))
    await h.report(item, h.fail("b broke"))
    assert (await run_of(h, run.id)).status == RunStatus.FAILED

    retried = await h.backend.retry_run(RetryRunRequest(run_id=run.id, reason="fixed b"))
    assert (retried.id, retried.status, retried.error, retried.retries) == (
        run.id,
        RunStatus.PENDING,
        None,
        1,
    )
    assert await journal(h, run.id) == [(0, "a")]
    assert await event_data(h, run.id, "run.retried") == [
        {"from_index": 1, "reason": "fixed b", "automatic": False, "retries": 1}
    ]

    await h.reopen()  # the cut is durable: its rows are gone
    assert await journal(h, run.id) == [(0, "a")]
    again = await h.take_one()
    assert (again.run.id, [e.output for e in again.journal]) == (run.id, [b'"A"'])
    assert again.step_attempts == {}
    await h.report(again, h.started(1, "b"), h.completed(1, "b"), h.finish())
    types = [e.type for e in await h.events(run.id)]  # the stream goes on past run.failed
    assert types[-5:] == [
        "run.failed",
        "run.retried",
        "step.started",
        "step.completed",
        "run.completed",
    ]


async def test_only_failed_and_blocked_runs_are_retried(h: Harness) -> None:
    await h.register()
    pending = await h.start()
    with pytest.raises(RunNotRetryable, match=f"run {pending.id} is pending"):
        await retry(h, pending.id)
    item = await h.take_one()
    with pytest.raises(RunNotRetryable, match="is running"):
        await retry(h, pending.id)
    await h.report(item, h.finish())
    with pytest.raises(RunNotRetryable, match="is completed"):
        await retry(h, pending.id)
    with pytest.raises(RunNotFound):
        await retry(h, "01NOSUCHRUN000000000000000")
    assert (await run_of(h, pending.id)).retries == 0


async def test_step_attempts_are_counted_afresh(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=100))
    run = await h.start()
    item = await h.take_one()
    assert (await h.report(item, h.failed(0))).outcome == ReportOutcome.RETRY_SCHEDULED
    h.clock.advance(100)
    item = await h.take_one(wait_ms=5_000)  # once the backoff's timer fired
    assert item.step_attempts == {0: 1}
    await h.report(item, blocked())
    await retry(h, run.id)
    await h.reopen()
    assert (await h.take_one()).step_attempts == {}


async def test_a_timed_out_run_gets_its_timeout_again_each_retry(h: Harness) -> None:
    await h.register()
    started = await h.backend.start_run(StartRunRequest(function="greet", timeout_ms=1_000))
    run_id = started.run.id
    for retries in (0, 1, 2):
        h.clock.advance(1_000)
        ended = await h.backend.wait_run(WaitRunRequest(run_id=run_id, wait_ms=5_000))
        assert (ended.status, ended.error.type, ended.retries) == (
            RunStatus.FAILED,
            "RunTimeout",
            retries,
        )
        h.clock.advance(300)
        await retry(h, run_id)
        assert (await run_of(h, run_id)).deadline_ms == h.clock.now_ms() + 1_000


async def test_kept_signals_come_back_with_the_waits_cut(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.started(0), h.failed(0, retryable=False))  # the workflow catches it
    assert (await h.report(item, h.wait_signal(1, "go"))).outcome == ReportOutcome.SUSPENDED
    for n in (1, 2):  # the first resolves the wait, the second is kept
        await h.backend.signal_run(
            SignalRunRequest(run_id=run.id, name="go", payload=b'{"n":%d}' % n)
        )
    await h.report(await h.take_one(), h.fail())  # the run's end drops what it kept
    assert dict(h.inspect(run.id).signals) == {}

    await retry(h, run.id)  # cut at 0: the wait that took n=1 goes
    await h.reopen()
    assert dict(h.inspect(run.id).signals) == {"go": (b'{"n":1}', b'{"n":2}')}
    item = await h.take_one()
    assert item.journal == []
    answer = await h.report(item, h.started(0), h.completed(0), h.wait_signal(1, "go"))
    assert [e.output for e in answer.resolved] == [b'{"n":1}']
    assert dict(h.inspect(run.id).signals) == {"go": (b'{"n":2}',)}


async def test_a_failed_childs_retry_leaves_its_parent_alone(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    await h.report(await h.take_one(), h.child(0))
    child_id = h.inspect(parent.id).journal[0].child_run_id
    child = await h.take_one()
    assert child.run.id == child_id
    await h.report(child, h.fail("child broke"))
    seen = h.inspect(parent.id)
    assert (seen.run.status, seen.journal[0].error.message) == (RunStatus.PENDING, "child broke")

    await retry(h, child_id)
    [again] = [i for i in await h.take(max_items=2) if i.run.id == child_id]
    await h.report(again, h.finish())
    assert (await run_of(h, child_id)).status == RunStatus.COMPLETED
    after = h.inspect(parent.id)
    assert after.journal == seen.journal
    assert after.run.last_event_seq == seen.run.last_event_seq


async def test_a_child_the_cut_part_waits_for_is_cancelled(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    item = await h.take_one()
    await h.report(item, h.started(0), h.failed(0, retryable=False), h.child(1), blocked())
    child_id = h.inspect(parent.id).journal[1].child_run_id
    await retry(h, parent.id)
    assert (await run_of(h, child_id)).status == RunStatus.CANCELLED
    shown = await run_of(h, parent.id)
    assert (shown.status, shown.journal_length) == (RunStatus.PENDING, 0)


async def test_a_child_the_kept_part_waits_for_keeps_the_run_suspended(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    await h.report(await h.take_one(), h.child(0), blocked())
    child_id = h.inspect(parent.id).journal[0].child_run_id
    await retry(h, parent.id)
    assert (await run_of(h, parent.id)).status == RunStatus.SUSPENDED
    child = await h.take_one()
    assert child.run.id == child_id
    await h.report(child, h.finish(b"5"))
    resumed = await h.take_one()
    assert (resumed.run.id, resumed.journal[0].output) == (parent.id, b"5")


async def test_a_failed_run_resolves_a_child_that_ended_meanwhile(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    await h.report(await h.take_one(), h.child(0), h.fail("the workflow raised"))
    assert (await run_of(h, parent.id)).status == RunStatus.FAILED
    child = await h.take_one()
    await h.report(child, h.finish(b"7"))  # its end finds the parent final: nothing resolves
    assert h.inspect(parent.id).journal[0].pending

    await retry(h, parent.id)  # nothing failed in the journal: the cut is at its end
    await h.reopen()
    shown = await run_of(h, parent.id)
    assert (shown.status, shown.journal_length) == (RunStatus.PENDING, 1)
    resumed = await h.take_one()
    assert (resumed.run.id, resumed.journal[0].output) == (parent.id, b"7")
    finished = await event_data(h, parent.id, "child.finished")
    assert finished == [{"index": 0, "child_run_id": child.run.id, "status": "completed"}]


async def test_a_retry_right_after_the_failure_finds_the_run_active(h: Harness) -> None:
    await h.register()
    run = await h.start()
    failing = asyncio.create_task(h.report(await h.take_one(), h.fail()))
    await asyncio.sleep(0)  # the failure is appended, not yet durable
    assert h.inspect(run.id).run.status == RunStatus.FAILED
    assert h.inspect(run.id).durable_run.status != RunStatus.FAILED
    await retry(h, run.id)
    await failing
    assert h.inspect(run.id).active
    assert (await h.take_one()).run.id == run.id

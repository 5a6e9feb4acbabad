"""Dispatcher: take_work, reports, leases, retries, and the events and journal they produce."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from trine_core import InvalidArgument, LeaseLost, PayloadTooLarge
from trine_proto.trine.v1 import (
    CancelRunRequest,
    GetJournalRequest,
    GetRunRequest,
    ReleaseLeasesRequest,
    RenewLeasesRequest,
    ReportOutcome,
    RetryPolicy,
    RunStatus,
    SubscribeRequest,
    WaitRunRequest,
)

Harness = Any


async def test_full_lifecycle_events_and_journal(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one(worker="w7")
    assert item.run.id == run.id
    assert item.run.status == RunStatus.RUNNING
    assert item.run.worker_id == "w7"
    assert item.lease.attempt == 1
    assert item.lease.id
    assert item.lease.expires_at_ms > run.created_at_ms
    assert item.journal == []
    assert item.step_attempts == {}
    got = await h.engine.get_run(GetRunRequest(run_id=run.id))
    assert got.status == RunStatus.RUNNING
    assert got.worker_id == "w7"

    first = await h.report(item, h.started(0, "fetch"), h.completed(0, "fetch", b'{"n":1}'))
    assert first.outcome == ReportOutcome.CONTINUE
    second = await h.report(
        item, h.started(1, "send"), h.completed(1, "send", b"[1,2]"), h.emit("progress", b"0.5")
    )
    assert second.outcome == ReportOutcome.CONTINUE
    done = await h.report(item, h.finish(b'{"ok":true}'))
    assert done.outcome == ReportOutcome.FINISHED

    final = await h.engine.get_run(GetRunRequest(run_id=run.id))
    assert final.status == RunStatus.COMPLETED
    assert final.result == b'{"ok":true}'
    assert final.worker_id == ""
    assert final.attempt == 1
    assert final.journal_length == 2
    assert final.last_event_seq == 7

    journal = (await h.engine.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.name, e.output) for e in journal] == [
        (0, "fetch", b'{"n":1}'),
        (1, "send", b"[1,2]"),
    ]

    events = await h.events(run.id)
    assert [(e.seq, e.type, e.name) for e in events] == [
        (1, "run.started", "greet"),
        (2, "step.started", "fetch"),
        (3, "step.completed", "fetch"),
        (4, "step.started", "send"),
        (5, "step.completed", "send"),
        (6, "custom", "progress"),
        (7, "run.completed", ""),
    ]
    data = [json.loads(e.data) for e in events]
    assert data[0] == {"function": "greet"}
    assert data[1] == {"index": 0, "attempt": 1}
    assert data[2] == {"index": 0, "attempt": 1, "output": {"n": 1}}
    assert data[5] == 0.5
    assert data[6] == {"ok": True}
    assert all(e.run_id == run.id and e.at_ms > 0 for e in events)


async def test_run_failed(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    assert (await h.report(item, h.fail("no luck"))).outcome == ReportOutcome.FINISHED
    final = await h.engine.get_run(GetRunRequest(run_id=run.id))
    assert final.status == RunStatus.FAILED
    assert final.error.message == "no luck"
    events = await h.events(run.id)
    assert events[-1].type == "run.failed"
    assert json.loads(events[-1].data) == {"type": "RuntimeError", "message": "no luck"}


async def test_subscribe_backlog_then_live_without_gap_or_duplicate(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.started(0))  # seq 2
    await h.report(item, h.completed(0))  # seq 3

    received: list[int] = []
    first_two = asyncio.Event()

    async def follow() -> None:
        async for event in h.engine.subscribe(SubscribeRequest(run_id=run.id, after_seq=1)):
            received.append(event.seq)
            if len(received) == 2:
                first_two.set()

    follower = asyncio.create_task(follow())
    await first_two.wait()  # the backlog (2, 3) arrived; everything after is live
    assert received == [2, 3]
    await h.report(item, h.started(1))  # seq 4
    await h.report(item, h.emit("a", b"1"), h.emit("b", b"2"))  # seq 5, 6
    await h.report(item, h.finish())  # seq 7, final: the iterator ends by itself
    await asyncio.wait_for(follower, 5)
    assert received == [2, 3, 4, 5, 6, 7]

    # Resuming from any cursor gives exactly the rest; at the end, nothing.
    assert [e.seq for e in await h.events(run.id, after_seq=5)] == [6, 7]
    assert await h.events(run.id, after_seq=7) == []


async def test_subscribers_see_only_durable_events(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    stream = h.engine.subscribe(SubscribeRequest(run_id=run.id, after_seq=1))
    nxt = asyncio.ensure_future(stream.__anext__())
    report = asyncio.ensure_future(h.report(item, h.started(0)))
    await asyncio.sleep(0)  # the report is accepted (in memory) but its batch is not written
    state = h.engine._cache.get(run.id)
    assert len(state.events) == 2
    assert state.durable_seq == 1
    assert not nxt.done()
    await report
    assert (await nxt).seq == 2
    await stream.aclose()


async def test_stale_lease_is_refused_and_changes_nothing(h: Harness) -> None:
    await h.register()
    run = await h.start()
    old = await h.take_one()
    await h.engine.release_leases(ReleaseLeasesRequest(lease_ids=[old.lease.id]))
    new = await h.take_one()
    assert new.lease.id != old.lease.id
    before = await h.engine.get_run(GetRunRequest(run_id=run.id))
    with pytest.raises(LeaseLost):
        await h.report(old, h.started(0), h.completed(0), h.finish())
    after = await h.engine.get_run(GetRunRequest(run_id=run.id))
    assert after == before
    assert len(h.engine._cache.get(run.id).events) == 1
    assert (await h.engine.get_journal(GetJournalRequest(run_id=run.id))).entries == []
    assert (await h.report(new, h.finish())).outcome == ReportOutcome.FINISHED


async def test_unknown_lease_and_unknown_run(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    item.lease.id = "forged"
    with pytest.raises(LeaseLost):
        await h.report(item, h.finish())


async def test_release_redispatches_first_with_the_next_attempt(h: Harness) -> None:
    await h.register()
    first = await h.start()
    second = await h.start()
    item = await h.take_one()
    assert item.run.id == first.id
    await h.report(item, h.completed(0, "a"))
    await h.engine.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id], reason="gone"))
    assert (await h.engine.get_run(GetRunRequest(run_id=first.id))).status == RunStatus.PENDING
    again = await h.take_one(worker="w2")
    assert again.run.id == first.id  # front of the queue, ahead of `second`
    assert again.lease.attempt == 2
    assert again.run.attempt == 2
    assert again.run.worker_id == "w2"
    assert [e.name for e in again.journal] == ["a"]
    assert (await h.take_one()).run.id == second.id


async def test_lease_expiry_releases_the_run(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one(ttl_ms=30)
    h.clock.advance(30)
    # Long-poll: the expiry (a timer in the engine) puts the run back and wakes this call.
    again = await h.take_one(wait_ms=5_000)
    assert again.run.id == run.id
    assert again.lease.attempt == 2
    with pytest.raises(LeaseLost):
        await h.report(item, h.finish())


async def test_renew_keeps_a_lease_and_reports_lost_ones(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one(ttl_ms=50)
    for _ in range(4):
        renewed = await h.engine.renew_leases(
            RenewLeasesRequest(lease_ids=[item.lease.id, "unknown"], lease_ttl_ms=200)
        )
        assert list(renewed.lost) == ["unknown"]
        h.clock.advance(30)  # longer than the first ttl, in total
    assert (await h.report(item, h.finish())).outcome == ReportOutcome.FINISHED
    lost = await h.engine.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))
    assert list(lost.lost) == [item.lease.id]


async def test_step_retry_then_final_failure(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=20))
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0, "ok"))

    retry = await h.report(item, h.started(1, "flaky"), h.failed(1, "flaky", attempt=1))
    assert retry.outcome == ReportOutcome.RETRY_SCHEDULED
    assert retry.retry_at_ms > 0
    pending = await h.engine.get_run(GetRunRequest(run_id=run.id))
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
    state = h.engine._cache.get(run.id)
    gaps = [
        json.loads(e.data)["retry_at_ms"] - e.at_ms
        for e in state.events
        if "retry" in e.data.decode()
    ]
    assert gaps == [20, 40]

    h.clock.advance(40)
    third = await h.take_one(wait_ms=5_000)
    assert third.lease.attempt == 3
    assert third.step_attempts == {1: 2}
    final = await h.report(third, h.failed(1, "flaky", attempt=3))
    assert final.outcome == ReportOutcome.STEP_FAILED  # max_attempts reached
    journal = (await h.engine.get_journal(GetJournalRequest(run_id=run.id))).entries
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
    assert default.retry_at_ms - h.engine._cache.get(item.run.id).events[-1].at_ms == 100


async def test_cancel_running_run_tells_its_worker_and_ends_cancelled(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    asked = await h.engine.cancel_run(CancelRunRequest(run_id=run.id, reason="stop"))
    assert asked.status == RunStatus.RUNNING
    assert asked.cancel_requested
    renewed = await h.engine.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))
    assert renewed.cancel_requested == [item.lease.id]
    # The workflow cleans up (a step), then ends with the cancellation it was given.
    cleanup = await h.report(item, h.completed(1, "refund"))
    assert cleanup.cancel_requested
    await h.report(item, h.fail("cancelled"))
    final = await h.engine.get_run(GetRunRequest(run_id=run.id))
    assert final.status == RunStatus.CANCELLED
    types = [e.type for e in await h.events(run.id)]
    assert types[-3:] == ["run.cancel_requested", "step.completed", "run.cancelled"]


async def test_cancel_forced_after_grace_fences_the_worker(h: Harness) -> None:
    await h.reopen(cancel_grace_ms=50)
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    await h.engine.cancel_run(CancelRunRequest(run_id=run.id, reason="stop"))
    h.clock.advance(50)
    final = await h.engine.wait_run(WaitRunRequest(run_id=run.id, timeout_ms=5_000))
    assert final.status == RunStatus.CANCELLED
    assert final.worker_id == ""
    assert "grace" in final.error.message
    with pytest.raises(LeaseLost):
        await h.report(item, h.completed(1))
    assert (await h.engine.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))).lost


async def test_repeated_final_report_is_idempotent(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    first, second = await asyncio.gather(
        h.report(item, h.finish(b"1")), h.report(item, h.finish(b"2"))
    )
    assert first.outcome == second.outcome == ReportOutcome.FINISHED
    third = await h.report(item, h.finish(b"3"))
    assert third.outcome == ReportOutcome.FINISHED
    final = await h.engine.get_run(GetRunRequest(run_id=run.id))
    assert final.result == b"1"
    assert final.last_event_seq == 2
    assert [e.type for e in await h.events(run.id)] == ["run.started", "run.completed"]
    with pytest.raises(LeaseLost):  # not a final report: the lease is over
        await h.report(item, h.started(0))


async def test_journal_order_is_enforced(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0, "a"))
    with pytest.raises(InvalidArgument, match="does not follow"):
        await h.report(item, h.started(5), h.completed(2, "c"))
    with pytest.raises(InvalidArgument):  # same index, another name: not a repeat
        await h.report(item, h.completed(0, "z"))
    # A repeat of the last entry is a no-op.
    assert (await h.report(item, h.completed(0, "a", b"9"))).outcome == ReportOutcome.CONTINUE
    journal = (await h.engine.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.output) for e in journal] == [(0, b"1")]
    assert h.engine._cache.get(run.id).run.last_event_seq == 2  # refused reports added nothing


async def test_step_output_and_result_limits(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    big = b'"' + b"x" * h.config.max_payload_bytes + b'"'
    with pytest.raises(PayloadTooLarge):
        await h.report(item, h.started(0), h.completed(0, output=big))
    with pytest.raises(PayloadTooLarge):
        await h.report(item, h.finish(big))
    with pytest.raises(PayloadTooLarge):
        await h.report(item, h.emit("huge", big))
    assert h.engine._cache.get(run.id).run.last_event_seq == 1
    assert (await h.report(item, h.finish())).outcome == ReportOutcome.FINISHED


async def test_take_work_long_poll_wakes_on_start(h: Harness) -> None:
    await h.register("greet", "other")
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # one step: the poll runs until it waits
    assert h.engine._queues._waiters
    await h.start("other")  # not a function this poll asked for
    await asyncio.sleep(0)
    assert not poll.done()
    run = await h.start("greet")
    items = await asyncio.wait_for(poll, 5)
    assert [i.run.id for i in items] == [run.id]


async def test_take_work_returns_empty_after_wait(h: Harness) -> None:
    await h.register()
    assert await h.take(wait_ms=20) == []


async def test_cancelled_take_work_loses_no_run(h: Harness) -> None:
    await h.register()
    # Cancelled while waiting.
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # one step: the poll runs until it waits
    assert h.engine._queues._waiters
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    # Cancelled after a run woke it, before it ran again.
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # one step: the poll runs until it waits
    assert h.engine._queues._waiters
    queues = h.engine._queues
    push = queues.push

    def push_then_cancel(state: Any, front: bool = False) -> None:
        push(state, front)
        poll.cancel()

    queues.push = push_then_cancel
    run = await h.start()
    with pytest.raises(asyncio.CancelledError):
        await poll
    queues.push = push
    assert (await h.take_one()).run.id == run.id


async def test_take_work_max_items_and_fifo(h: Harness) -> None:
    await h.register("greet", "other")
    greets = [(await h.start("greet")).id for _ in range(3)]
    others = [(await h.start("other")).id for _ in range(2)]
    items = await h.take(functions=("greet", "other"), max_items=4)
    assert [i.run.id for i in items] == [greets[0], others[0], greets[1], others[1]]
    assert [i.run.id for i in await h.take(max_items=10)] == [greets[2]]
    assert len({i.lease.id for i in items}) == 4

"""Reports: the events and journal entries a worker's commands produce, the order the journal
enforces, payload limits, and a run's end (completed, failed, repeated, cancelled)."""

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
    RenewLeasesRequest,
    ReportOutcome,
    RunStatus,
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
    got = await h.backend.get_run(GetRunRequest(run_id=run.id))
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

    final = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert final.status == RunStatus.COMPLETED
    assert final.result == b'{"ok":true}'
    assert final.worker_id == ""
    assert final.attempt == 1
    assert final.journal_length == 2
    assert final.last_event_seq == 7

    journal = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
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
        (7, "run.completed", "greet"),
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
    final = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert final.status == RunStatus.FAILED
    assert final.error.message == "no luck"
    events = await h.events(run.id)
    assert events[-1].type == "run.failed"
    assert json.loads(events[-1].data) == {"type": "RuntimeError", "message": "no luck"}


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
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.output) for e in journal] == [(0, b"1")]
    assert h.inspect(run.id).run.last_event_seq == 2  # refused reports added nothing


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
    assert h.inspect(run.id).run.last_event_seq == 1
    assert (await h.report(item, h.finish())).outcome == ReportOutcome.FINISHED


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
    final = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert final.result == b"1"
    assert final.last_event_seq == 2
    assert [e.type for e in await h.events(run.id)] == ["run.started", "run.completed"]
    with pytest.raises(LeaseLost):  # not a final report: the lease is over
        await h.report(item, h.started(0))


async def test_cancel_running_run_tells_its_worker_and_ends_cancelled(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    asked = await h.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="stop"))
    assert asked.status == RunStatus.RUNNING
    assert asked.cancel_requested
    renewed = await h.dispatcher.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))
    assert renewed.cancel_requested == [item.lease.id]
    # The workflow cleans up (a step), then ends with the cancellation it was given.
    cleanup = await h.report(item, h.completed(1, "refund"))
    assert cleanup.cancel_requested
    await h.report(item, h.fail("cancelled"))
    final = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert final.status == RunStatus.CANCELLED
    types = [e.type for e in await h.events(run.id)]
    assert types[-3:] == ["run.cancel_requested", "step.completed", "run.cancelled"]

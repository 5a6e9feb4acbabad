"""Durable waits: sleeps, signals, child runs, cancellation of waiting runs, run timeouts.

A wait suspends the run (its lease ends, no worker holds it) until the engine resolves the wait:
the timer fires, the signal arrives, the child finishes, or the run is cancelled. Then the run is
pending again and its next dispatch carries the resolved entry for the replay.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import FUNCTION, Harness
from trine_core import InvalidArgument, LeaseLost, PayloadTooLarge, RunFinished, RunNotFound
from trine_proto.trine.v1 import (
    CancelRunRequest,
    EntryKind,
    GetJournalRequest,
    GetRunRequest,
    ReportOutcome,
    RunStatus,
    SignalRunRequest,
    StartRunRequest,
    WaitRunRequest,
    WorkItem,
)


async def _signal(h: Harness, run_id: str, name: str, payload: bytes = b'{"ok":true}') -> bool:
    response = await h.backend.signal_run(
        SignalRunRequest(run_id=run_id, name=name, payload=payload)
    )
    return response.delivered


async def _resumed(h: Harness) -> WorkItem:
    """The next dispatch, waiting up to 5 s for it."""
    return await h.take_one(wait_ms=5_000)


async def test_sleep_suspends_frees_the_lease_and_resumes_after_the_timer(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    response = await h.report(item, h.completed(0), h.sleep(1, duration_ms=200))
    assert response.outcome == ReportOutcome.SUSPENDED
    view = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert view.status == RunStatus.SUSPENDED
    assert view.worker_id == ""
    [wait] = view.waiting
    assert wait.kind == EntryKind.SLEEP
    assert wait.until_ms >= item.run.created_at_ms + 200
    with pytest.raises(LeaseLost):
        await h.report(item, h.completed(2))
    assert await h.take() == []  # nothing to dispatch while it sleeps
    h.clock.advance(200)
    again = await _resumed(h)
    assert h.clock.now_ms() >= wait.until_ms
    assert [e.kind for e in again.journal] == [EntryKind.STEP, EntryKind.SLEEP]
    assert not again.journal[1].pending
    await h.report(again, h.finish())
    types = [e.type for e in await h.events(run.id)]
    assert "timer.started" in types
    assert "timer.fired" in types


async def test_sleep_survives_a_restart(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0), h.sleep(1, duration_ms=300))
    await h.reopen()
    assert (await h.backend.get_run(GetRunRequest(run_id=run.id))).status == RunStatus.SUSPENDED
    assert await h.take() == []
    h.clock.advance(300)
    again = await _resumed(h)
    assert again.run.id == run.id
    assert len(again.journal) == 2


async def test_sleep_in_the_past_resolves_at_once(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    response = await h.report(item, h.sleep(0, until_ms=1))
    assert response.outcome == ReportOutcome.CONTINUE
    [entry] = response.resolved
    assert entry.kind == EntryKind.SLEEP
    assert not entry.pending


async def test_signal_after_the_wait_is_delivered(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    response = await h.report(item, h.wait_signal(0, "approve"))
    assert response.outcome == ReportOutcome.SUSPENDED
    view = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert [(w.kind, w.name) for w in view.waiting] == [(EntryKind.SIGNAL, "approve")]
    assert await _signal(h, run.id, "other") is False  # kept, not what it waits for
    assert await _signal(h, run.id, "approve", b'{"by":"ada"}') is True
    again = await _resumed(h)
    assert json.loads(again.journal[0].output) == {"by": "ada"}
    # The kept "other" is taken by a later wait at once.
    later = await h.report(again, h.wait_signal(1, "other"))
    assert later.outcome == ReportOutcome.CONTINUE
    assert json.loads(later.resolved[0].output) == {"ok": True}


async def test_signal_before_the_wait_is_kept_across_a_restart(h: Harness) -> None:
    await h.register()
    run = await h.start()
    assert await _signal(h, run.id, "approve", b"1") is False
    assert await _signal(h, run.id, "approve", b"2") is False
    await h.reopen()
    item = await h.take_one()
    first = await h.report(item, h.wait_signal(0, "approve"))
    assert first.outcome == ReportOutcome.CONTINUE
    assert first.resolved[0].output == b"1"
    await h.reopen()
    item = await h.take_one()
    second = await h.report(item, h.wait_signal(1, "approve"))
    assert second.resolved[0].output == b"2"  # the first one was consumed, durably
    third = await h.report(item, h.wait_signal(2, "approve"))
    assert third.outcome == ReportOutcome.SUSPENDED


async def test_signal_wait_times_out(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.wait_signal(0, "approve", timeout_ms=100))
    h.clock.advance(100)
    again = await _resumed(h)
    entry = again.journal[0]
    assert entry.error.type == "SignalTimeout"
    assert "approve" in entry.error.message
    # A signal that comes later is kept, not given to the expired wait.
    assert await _signal(h, run.id, "approve") is False
    await h.report(again, h.finish())
    types = [e.type for e in await h.events(run.id)]
    assert types.index("signal.waiting") < types.index("signal.timed_out")
    assert types.index("signal.timed_out") < types.index("signal.received")


async def test_signal_bad_input(h: Harness) -> None:
    await h.register()
    with pytest.raises(RunNotFound):
        await _signal(h, "nope", "approve")
    run = await h.start()
    with pytest.raises(InvalidArgument, match="signal name"):
        await _signal(h, run.id, "")
    with pytest.raises(PayloadTooLarge):
        await _signal(h, run.id, "approve", b'"' + b"x" * 5000 + b'"')
    item = await h.take_one()
    await h.report(item, h.finish())
    with pytest.raises(RunFinished):
        await _signal(h, run.id, "approve")


async def test_fan_out_children_and_gather(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    item = await h.take_one()
    children = [h.child(i, data=b'{"n":%d}' % i) for i in range(50)]
    response = await h.report(item, *children)
    assert response.outcome == ReportOutcome.SUSPENDED
    view = await h.backend.get_run(GetRunRequest(run_id=parent.id))
    assert len(view.waiting) == 50
    assert all(w.child_run_id for w in view.waiting)
    for _ in range(50):
        child = await h.take_one()
        assert child.run.parent_run_id == parent.id
        n = json.loads(child.run.input)["n"]
        await h.report(child, h.finish(b"%d" % (n * n)))
    again = await _resumed(h)
    assert again.run.id == parent.id
    assert [json.loads(e.output) for e in again.journal] == [n * n for n in range(50)]


async def test_failing_child_reaches_the_parent_as_an_error(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    await h.report(item, h.child(0), h.child(1, function="never-registered"))
    child = await h.take_one()
    await h.report(child, h.fail("child broke"))
    again = await _resumed(h)
    assert again.journal[0].error.message == "child broke"
    assert again.journal[1].error.type == "UnknownFunction"


async def test_cancel_a_sleeping_run_delivers_the_cancellation(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0), h.sleep(1, duration_ms=60_000))
    asked = await h.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="stop"))
    assert asked.cancel_requested
    assert asked.status == RunStatus.PENDING
    again = await _resumed(h)
    assert again.run.cancel_requested
    assert again.journal[1].error.type == "Cancelled"
    await h.report(again, h.completed(2, "cleanup"), h.fail("cancelled"))
    assert (await h.backend.get_run(GetRunRequest(run_id=run.id))).status == RunStatus.CANCELLED


async def test_cancel_a_signal_wait(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.wait_signal(0, "approve"))
    await h.backend.cancel_run(CancelRunRequest(run_id=run.id))
    again = await _resumed(h)
    assert again.journal[0].error.type == "Cancelled"


async def test_cancel_a_parent_cancels_its_children(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    item = await h.take_one()
    await h.report(item, h.child(0), h.child(1))
    running_child = await h.take_one()  # child 0 runs; child 1 is still pending
    await h.report(running_child, h.completed(0))
    await h.backend.cancel_run(CancelRunRequest(run_id=parent.id))
    view = await h.backend.get_run(GetRunRequest(run_id=parent.id))
    assert view.cancel_requested
    first = await h.backend.get_run(GetRunRequest(run_id=running_child.run.id))
    assert first.cancel_requested  # it has a journal: it may clean up
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=parent.id))).entries
    second = await h.backend.get_run(GetRunRequest(run_id=journal[1].child_run_id))
    assert second.status == RunStatus.CANCELLED  # never started: ended at once


async def test_cancel_a_finished_run_is_refused(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.finish())
    with pytest.raises(RunFinished):
        await h.backend.cancel_run(CancelRunRequest(run_id=run.id))


async def test_run_timeout_fails_the_run_and_fences_its_worker(h: Harness) -> None:
    await h.register()
    response = await h.backend.start_run(
        StartRunRequest(function=FUNCTION, input=b"{}", timeout_ms=150)
    )
    run = response.run
    assert run.deadline_ms == run.created_at_ms + 150
    item = await h.take_one()
    h.clock.advance(150)
    final = await h.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=5_000))
    assert final.status == RunStatus.FAILED
    assert final.error.type == "RunTimeout"
    with pytest.raises(LeaseLost):
        await h.report(item, h.completed(0))


async def test_a_run_being_cancelled_waits_for_nothing(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    await h.backend.cancel_run(CancelRunRequest(run_id=run.id))
    # The worker had not heard yet: its next waits resolve at once with the cancellation.
    response = await h.report(item, h.sleep(1, duration_ms=60_000), h.wait_signal(2, "x"))
    assert response.outcome == ReportOutcome.CONTINUE
    assert response.cancel_requested
    assert [e.error.type for e in response.resolved] == ["Cancelled", "Cancelled"]
    child = await h.report(item, h.child(3))
    assert child.resolved[0].error.type == "Cancelled"
    assert await h.take() == []  # no child run was created


async def test_a_worker_cannot_choose_a_child_run_id(h: Harness) -> None:
    await h.register()
    victim = await h.start()
    done = await h.take_one()
    await h.report(done, h.finish(b'"precious"'))
    await h.start()
    item = await h.take_one()
    command = h.child(0)
    command.start_child.run_id = victim.id  # an id that names an existing run
    await h.report(item, command)
    kept = await h.backend.get_run(GetRunRequest(run_id=victim.id))
    assert kept.status == RunStatus.COMPLETED
    assert kept.result == b'"precious"'
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=item.run.id))).entries
    assert journal[0].child_run_id not in ("", victim.id)


async def test_a_signal_payload_must_be_json(h: Harness) -> None:
    await h.register()
    run = await h.start()
    with pytest.raises(InvalidArgument, match="not JSON"):
        await _signal(h, run.id, "approve", b"not json")
    with pytest.raises(InvalidArgument, match="letters, digits"):
        await _signal(h, run.id, "needs approval")
    await h.reopen()  # nothing was kept that could break a restart


async def test_a_step_completion_cannot_pose_as_a_wait(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    forged = h.completed(0)
    forged.step_completed.entry.pending = True
    forged.step_completed.entry.kind = EntryKind.SIGNAL
    response = await h.report(item, forged)
    assert response.outcome == ReportOutcome.CONTINUE
    [entry] = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert entry.kind == EntryKind.STEP
    assert not entry.pending


async def test_a_cancelled_child_is_not_the_parents_cancellation(h: Harness) -> None:
    await h.register()
    parent = await h.start()
    item = await h.take_one()
    await h.report(item, h.child(0))
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=parent.id))).entries
    child_id = journal[0].child_run_id
    await h.backend.cancel_run(CancelRunRequest(run_id=child_id))  # never started: at once
    again = await _resumed(h)
    assert again.run.id == parent.id
    assert again.journal[0].error.type == "ChildCancelled"

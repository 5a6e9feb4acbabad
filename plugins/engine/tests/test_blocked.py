"""Blocked runs (docs/versioning.md, "Workflow errors block a run"): ``RunBlocked`` holds a run,
not final, never dispatched; a cancellation or its deadline still ends it; a registration by
another build resumes it. Patch markers are journaled, resolved, and publish nothing."""

from __future__ import annotations

import pytest
from tests.versioning_kit import (
    BUILD_A,
    BUILD_B,
    blocked,
    event_data,
    patched,
    register_build,
    run_of,
    take,
    take_one,
)

from tests.conftest import FUNCTION, Harness
from trine_core import InvalidArgument, LeaseLost
from trine_core.instruments import REGISTRY
from trine_proto.trine.v1 import (
    CancelRunRequest,
    EntryKind,
    GetJournalRequest,
    ReportOutcome,
    RunStatus,
    StartRunRequest,
    WaitRunRequest,
)


async def test_a_workflow_error_blocks_the_run(h: Harness) -> None:
    await register_build(h, BUILD_A)
    run = await h.start()
    item = await take_one(h, BUILD_A)
    await h.report(item, h.started(0), h.completed(0))
    answer = await h.report(item, blocked("position 1: the journal has 'a', the code called 'b'"))
    assert answer.outcome == ReportOutcome.FINISHED  # the worker is done with it
    shown = await run_of(h, run.id)
    assert (shown.status, shown.blocked_build_id, shown.error.type) == (
        RunStatus.BLOCKED,
        BUILD_A,
        "NonDeterminismError",
    )
    assert await event_data(h, run.id, "run.blocked") == [
        {
            "type": "NonDeterminismError",
            "message": "position 1: the journal has 'a', the code called 'b'",
            "build_id": BUILD_A,
        }
    ]
    # The same report again (its answer lost) is answered as before; any other is refused.
    assert (await h.report(item, blocked())).outcome == ReportOutcome.FINISHED
    with pytest.raises(LeaseLost):
        await h.report(item, h.started(1))
    assert await take(h, BUILD_A) == []  # never dispatched
    waited = await h.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=20))
    assert waited.status == RunStatus.BLOCKED  # not final: the wait ran out
    assert h.engine.stats().blocked_runs == 1

    await h.reopen()
    assert (await run_of(h, run.id)).status == RunStatus.BLOCKED
    assert h.engine.stats().blocked_runs == 1
    assert await take(h, BUILD_A) == []


async def test_a_blocked_run_is_cancelled_at_once(h: Harness) -> None:
    await register_build(h, BUILD_A)
    run = await h.start()
    item = await take_one(h, BUILD_A)
    await h.report(item, h.started(0), h.completed(0), blocked())
    cancelled = await h.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="give up"))
    assert cancelled.status == RunStatus.CANCELLED
    assert h.engine.stats().blocked_runs == 0


async def test_a_blocked_run_still_times_out(h: Harness) -> None:
    await register_build(h, BUILD_A)
    started = await h.backend.start_run(
        StartRunRequest(function=FUNCTION, input=b"{}", timeout_ms=1_000)
    )
    await h.report(await take_one(h, BUILD_A), blocked())
    h.clock.advance(1_000)
    ended = await h.backend.wait_run(WaitRunRequest(run_id=started.run.id, wait_ms=5_000))
    assert (ended.status, ended.error.type) == (RunStatus.FAILED, "RunTimeout")


async def test_a_run_being_cancelled_ends_cancelled_instead(h: Harness) -> None:
    await register_build(h, BUILD_A)
    run = await h.start()
    item = await take_one(h, BUILD_A)
    await h.report(item, h.started(0), h.completed(0))
    await h.backend.cancel_run(CancelRunRequest(run_id=run.id))
    await h.report(item, blocked())
    assert (await run_of(h, run.id)).status == RunStatus.CANCELLED


async def test_another_build_registering_resumes_blocked_runs(h: Harness) -> None:
    await register_build(h, BUILD_A, FUNCTION, "other")
    on_a = await h.start()
    await h.report(await take_one(h, BUILD_A), h.started(0), h.completed(0), blocked())
    other = await h.start("other")
    await h.report(await take_one(h, BUILD_A, "other"), blocked())

    await register_build(h, BUILD_A)  # the same code again: nothing changes
    assert (await run_of(h, on_a.id)).status == RunStatus.BLOCKED

    await h.reopen()  # the index of blocked runs is rebuilt at open
    await register_build(h, BUILD_B)  # serves FUNCTION only
    resumed = await run_of(h, on_a.id)
    assert (resumed.status, resumed.retries, resumed.error) == (RunStatus.PENDING, 1, None)
    assert resumed.blocked_build_id == ""
    assert await event_data(h, on_a.id, "run.retried") == [
        {"from_index": 1, "reason": f"build {BUILD_B} registered", "automatic": True, "retries": 1}
    ]
    assert (await run_of(h, other.id)).status == RunStatus.BLOCKED
    item = await take_one(h, BUILD_B)
    assert [e.index for e in item.journal] == [0]
    await h.report(item, h.finish())
    assert (await run_of(h, on_a.id)).status == RunStatus.COMPLETED
    assert h.engine.stats().blocked_runs == 1


async def test_a_patch_marker_is_journaled_resolved_and_published_nowhere(h: Harness) -> None:
    await register_build(h, BUILD_A)
    run = await h.start()
    item = await take_one(h, BUILD_A)
    seq = h.inspect(run.id).run.last_event_seq
    answer = await h.report(item, patched(0, "send-receipt"), patched(0, "send-receipt"))
    assert answer.outcome == ReportOutcome.CONTINUE
    assert h.inspect(run.id).run.last_event_seq == seq
    with pytest.raises(InvalidArgument, match="change id"):
        await h.report(item, patched(1, "no spaces"))
    await h.report(item, h.started(1), h.completed(1), h.finish())
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.kind, e.name, e.pending) for e in journal] == [
        (0, EntryKind.PATCH, "send-receipt", False),
        (1, EntryKind.STEP, "step", False),
    ]


async def test_blocked_runs_and_retries_are_metered(h: Harness) -> None:
    function = "metered-blocked"  # the registry is the process's: a name no other test uses
    await register_build(h, BUILD_A, function)
    run = await h.start(function)
    retried_before = value("trine_runs_retried_total", function, "true")
    await h.report(await take_one(h, BUILD_A, function), blocked())
    assert value("trine_runs_blocked", function) == 1
    await register_build(h, BUILD_B, function)
    assert (await run_of(h, run.id)).status == RunStatus.PENDING
    assert value("trine_runs_blocked", function) == 0
    assert value("trine_runs_retried_total", function, "true") == retried_before + 1


def value(name: str, *labels: str) -> float:
    instrument = REGISTRY.get(name)
    assert instrument is not None, name
    found = [s.value for s in instrument.collect().samples if s.labels == labels]
    return found[0] if found else 0.0

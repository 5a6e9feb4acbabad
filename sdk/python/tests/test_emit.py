"""``ctx.emit``: journaled at its position like a step, so an event is sent once per run: a later
attempt that re-walks it (after a step's retry, a wait, a crash) skips it."""

from __future__ import annotations

import asyncio
import json

import pytest

import trine
from trine_proto.trine.v1 import EntryKind, ReportAck, ReportOutcome, ReportResponse


def emits(session, run_id: str) -> list[tuple[int | None, str, object]]:
    return [
        (v.index, v.name, json.loads(v.data)) for k, v in session.commands(run_id) if k == "emit"
    ]


async def test_an_emit_takes_the_next_journal_position(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.emit("first", {"n": 1})
        await ctx.step("one", lambda: 1)
        await ctx.emit("second")

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    commands = session.commands("r1")
    assert [k for k, _ in commands] == [
        "emit",
        "step_started",
        "step_completed",
        "emit",
        "run_completed",
    ]
    assert commands[2][1].entry.index == 1
    assert emits(session, "r1") == [(0, "first", {"n": 1}), (2, "second", None)]


async def test_a_journaled_emit_is_skipped_on_replay(
    coordinator, make_worker, serve, item, entry, wait_entry
) -> None:
    worker = make_worker()
    seen: list[bool] = []

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.emit("before", 1)  # journaled by an earlier attempt: not sent again
        seen.append(ctx.replaying)
        await ctx.step("one", lambda: 1)
        await ctx.emit("after", {"n": 2})

    serve(worker)
    session = await coordinator.registered()
    journal = [wait_entry(0, EntryKind.EMIT, "before", 1), entry(1, "one", 1)]
    session.dispatch(item("r1", "wf", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    assert emits(session, "r1") == [(2, "after", {"n": 2})]
    assert [k for k, _ in session.commands("r1")] == ["emit", "run_completed"]
    assert seen == [True]


async def test_an_emit_before_a_step_retried_twice_is_sent_once(
    coordinator, make_worker, serve, item, wait_entry, default_ack
) -> None:
    """Three attempts of the run, as the engine drives them: the first two end with the step's
    retry scheduled, and each is dispatched with the journal the one before it left."""

    def policy(report):
        if any(c.step_failed is not None for c in report.report.commands):
            retry = ReportResponse(outcome=ReportOutcome.RETRY_SCHEDULED)
            return ReportAck(request_id=report.request_id, response=retry)
        return default_ack(report)

    coordinator.ack_policy = policy
    worker = make_worker()
    executions: list[int] = []

    def flaky() -> str:
        executions.append(1)
        if len(executions) < 3:
            raise ConnectionError("flaky")
        return "ok"

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        await ctx.emit("before", {"at": "start"})
        return str(await ctx.step("flaky", flaky))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: any(k == "step_failed" for k, _ in session.commands("r1")))
    [(index, name, data)] = emits(session, "r1")
    journal = [wait_entry(index, EntryKind.EMIT, name, data)]  # what the engine journaled
    for attempt in (2, 3):
        failed = attempt - 1
        session.dispatch(
            item("r1", "wf", journal=journal, step_attempts={1: failed}, attempt=attempt)
        )
        await coordinator.until(
            lambda n=attempt: (
                sum(1 for k, _ in session.commands("r1") if k == "step_failed") >= n
                or session.finished("r1")
            )
        )
    await coordinator.until(lambda: session.finished("r1"))
    assert len(executions) == 3
    assert emits(session, "r1") == [(0, "before", {"at": "start"})]
    assert json.loads(session.commands("r1")[-1][1].result) == "ok"


async def test_an_emit_where_the_journal_has_another_call_is_a_non_determinism(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.emit("progress", 1)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf", journal=[entry(0, "charge", 1)], attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [(kind, failed)] = session.commands("r1")
    assert kind == "run_blocked"
    assert failed.error.type == "NonDeterminismError"
    assert "event 'progress'" in failed.error.message
    assert "step 'charge'" in failed.error.message


async def test_a_refused_emit_takes_no_position(coordinator, make_worker, serve, item) -> None:
    """Bad data raises in the workflow before the emit takes a journal position, so a workflow
    that catches the error goes on at the same position."""
    worker = make_worker(max_payload_bytes=100)
    errors: list[str] = []

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        for data in ({1, 2}, "x" * 200):
            try:
                await ctx.emit("bad", data)
            except (TypeError, ValueError) as exc:
                errors.append(type(exc).__name__)
        with pytest.raises(ValueError, match="needs a name"):
            await ctx.emit("")
        await ctx.emit("good", 1)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    assert errors == ["TypeError", "ValueError"]
    assert emits(session, "r1") == [(0, "good", 1)]


async def test_an_emit_under_gather_waits_for_the_call_before_it(
    coordinator, make_worker, serve, item
) -> None:
    """Gathered with a slow step that took position 0, the emit (position 1) is sent only once
    the step's report is: the engine journals in position order."""
    worker = make_worker()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "slow"

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await asyncio.gather(ctx.step("slow", slow), ctx.emit("mid", 1))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    # The step announces itself once it has run for a while; the emit is still held back then.
    await coordinator.until(lambda: [k for k, _ in session.commands("r1")] == ["step_started"])
    assert emits(session, "r1") == []
    release.set()
    await coordinator.until(lambda: session.finished("r1"))
    assert [k for k, _ in session.commands("r1")] == [
        "step_started",
        "step_completed",
        "emit",
        "run_completed",
    ]
    assert emits(session, "r1") == [(1, "mid", 1)]


async def test_an_emit_tells_the_workflow_of_a_requested_cancellation(
    coordinator, make_worker, serve, item
) -> None:
    """An emit is a ``ctx`` call like any other: a cancellation the workflow was not told of yet
    is raised there, journaled at its position."""
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.emit("progress", 1)
        except trine.CancelledError:
            await ctx.emit("cleaning up")  # told already: sent
            raise
        return "not cancelled"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf", cancel_requested=True))
    await coordinator.until(lambda: session.finished("r1"))
    commands = session.commands("r1")
    assert [k for k, _ in commands] == ["cancel_observed", "emit", "run_failed"]
    assert (commands[0][1].index, commands[0][1].name) == (0, "progress")
    assert emits(session, "r1") == [(1, "cleaning up", None)]

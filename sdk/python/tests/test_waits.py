"""Durable waits, child runs, cancellation and journaled values, as the workflow sees them.

The fake coordinator plays the engine's part: it answers a wait with SUSPENDED (the attempt ends
with no final report) or resolves it at once; a later dispatch carries the resolved entry.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

import trine
from trine_proto.trine.v1 import (
    EntryKind,
    ErrorInfo,
    JournalEntry,
    ReportAck,
    ReportOutcome,
    ReportResponse,
)
from trine_proto.vocabulary import signal_name_problem


def waits_suspend(default_ack):
    """An ack policy: a report with a wait in it suspends the run."""

    def policy(report):
        if any(
            c.sleep is not None or c.wait_signal is not None or c.start_child is not None
            for c in report.report.commands
        ):
            return ReportAck(
                request_id=report.request_id,
                response=ReportResponse(outcome=ReportOutcome.SUSPENDED),
            )
        return default_ack(report)

    return policy


def wait_entry(index: int, kind: EntryKind, name: str, output=None, error=None, child=""):
    return JournalEntry(
        index=index,
        kind=kind,
        name=name,
        output=b"" if error else json.dumps(output).encode(),
        error=error,
        child_run_id=child,
    )


async def test_sleep_suspends_the_attempt_without_a_final_report(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    worker = make_worker()
    after: list[str] = []

    @worker.function
    async def napper(ctx: trine.Context, _: None) -> str:
        await ctx.sleep(timedelta(minutes=5))
        after.append("woke")
        return "done"

    coordinator.ack_policy = waits_suspend(default_ack)
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "napper"))
    await coordinator.until(lambda: len(session.commands("r1")) == 1)
    [(kind, value)] = session.commands("r1")
    assert kind == "sleep"
    assert (value.index, value.duration_ms) == (0, 300_000)
    await coordinator.until(lambda: worker.in_flight == 0)
    assert after == []
    assert not session.finished("r1")


async def test_a_resolved_sleep_replays_and_the_run_goes_on(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def napper(ctx: trine.Context, _: None) -> str:
        await ctx.step("before", lambda: 1)
        await ctx.sleep_until(datetime(2030, 1, 1, tzinfo=UTC))
        return await ctx.step("after", lambda: "done")

    serve(worker)
    session = await coordinator.registered()
    journal = [entry(0, "before", 1), wait_entry(1, EntryKind.SLEEP, "sleep")]
    session.dispatch(item("r1", "napper", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    kinds = [k for k, _ in session.commands("r1")]
    assert kinds == ["step_started", "step_completed", "run_completed"]
    assert session.commands("r1")[0][1].index == 2


async def test_a_kept_signal_is_returned_without_suspending(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    worker = make_worker()

    @worker.function
    async def approval(ctx: trine.Context, _: None) -> dict:
        payload = await ctx.wait_for_signal("approve", timeout=30)
        return {"approved_by": payload["by"]}

    def resolve_at_once(report):
        wait = report.report.commands[0].wait_signal
        if wait is None:
            return default_ack(report)
        assert wait.timeout_ms == 30_000
        resolved = wait_entry(wait.index, EntryKind.SIGNAL, wait.name, {"by": "ada"})
        return ReportAck(
            request_id=report.request_id,
            response=ReportResponse(outcome=ReportOutcome.CONTINUE, resolved=[resolved]),
        )

    coordinator.ack_policy = resolve_at_once
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "approval"))
    await coordinator.until(lambda: session.finished("r1"))
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == {"approved_by": "ada"}


async def test_a_signal_timeout_raises_in_the_workflow(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function
    async def approval(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.wait_for_signal("approve", timeout=1)
        except trine.SignalTimeout as exc:
            return f"timed out: {exc.name}"
        return "approved"

    serve(worker)
    session = await coordinator.registered()
    timeout = ErrorInfo(type="SignalTimeout", message="no signal 'approve' arrived within 1s")
    journal = [wait_entry(0, EntryKind.SIGNAL, "approve", error=timeout)]
    session.dispatch(item("r1", "approval", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    assert json.loads(session.commands("r1")[-1][1].result) == "timed out: approve"


async def test_fan_out_sends_every_child_in_one_report_and_gathers_results(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    worker = make_worker()

    @worker.function
    async def parent(ctx: trine.Context, n: int) -> list:
        results = await ctx.run_many([("square", i) for i in range(n)], return_exceptions=True)
        return [r.type if isinstance(r, trine.ChildRunError) else r for r in results]

    coordinator.ack_policy = waits_suspend(default_ack)
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "parent", 3))
    await coordinator.until(lambda: len(session.reports) == 1)
    [report] = session.reports
    starts = [c.start_child for c in report.report.commands]
    assert [(s.index, s.function, json.loads(s.input)) for s in starts] == [
        (0, "square", 0),
        (1, "square", 1),
        (2, "square", 2),
    ]
    broke = ErrorInfo(type="ValueError", message="no")
    journal = [
        wait_entry(0, EntryKind.CHILD, "square", 0, child="c0"),
        wait_entry(1, EntryKind.CHILD, "square", error=broke, child="c1"),
        wait_entry(2, EntryKind.CHILD, "square", 4, child="c2"),
    ]
    session.dispatch(item("r1", "parent", 3, journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == [0, "ValueError", 4]  # the error in its place


async def test_a_failed_child_raises_child_run_error(coordinator, make_worker, serve, item) -> None:
    worker = make_worker()

    @worker.function
    async def parent(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.run("charge", {"amount": 5})
        except trine.ChildRunError as exc:
            return f"{exc.child_run_id} {exc.function} {exc.type}: {exc.message}"
        return "paid"

    serve(worker)
    session = await coordinator.registered()
    broke = ErrorInfo(type="CardDeclined", message="declined")
    journal = [wait_entry(0, EntryKind.CHILD, "charge", error=broke, child="c0")]
    session.dispatch(item("r1", "parent", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    result = json.loads(session.commands("r1")[-1][1].result)
    assert result == "c0 charge CardDeclined: declined"


async def test_a_cancel_requested_before_dispatch_is_observed_at_the_next_call(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> str:
        await ctx.step("charge", lambda: "ok")
        try:
            await ctx.step("ship", lambda: "shipped")
        except trine.CancelledError:
            await ctx.step("refund", lambda: "refunded")
            raise
        return "done"

    serve(worker)
    session = await coordinator.registered()
    journal = [entry(0, "charge", "ok")]
    session.dispatch(item("r1", "order", journal=journal, attempt=2, cancel_requested=True))
    await coordinator.until(lambda: session.finished("r1"))
    commands = session.commands("r1")
    assert [k for k, _ in commands] == [
        "cancel_observed",
        "step_started",
        "step_completed",
        "run_failed",
    ]
    assert (commands[0][1].index, commands[0][1].name) == (1, "ship")
    assert commands[2][1].entry.index == 2
    assert commands[3][1].error.type == "Cancelled"


async def test_a_replayed_cancellation_raises_at_the_same_position(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> str:
        await ctx.step("charge", lambda: "ok")
        try:
            await ctx.sleep(60)
        except trine.CancelledError:
            return await ctx.step("refund", lambda: "refunded")
        return "done"

    serve(worker)
    session = await coordinator.registered()
    cancelled = ErrorInfo(type="Cancelled", message="stop")
    journal = [
        entry(0, "charge", "ok"),
        wait_entry(1, EntryKind.SLEEP, "sleep", error=cancelled),
        entry(2, "refund", "refunded"),
    ]
    session.dispatch(item("r1", "order", journal=journal, attempt=3, cancel_requested=True))
    await coordinator.until(lambda: session.finished("r1"))
    [(kind, value)] = session.commands("r1")
    assert kind == "run_completed"
    assert json.loads(value.result) == "refunded"


async def test_a_cancel_notice_interrupts_a_running_async_step(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    @worker.function
    async def stuck(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.step("wait", forever)
        except trine.CancelledError:
            return "cleaned up"
        return "never"

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "stuck")
    session.dispatch(work)
    await asyncio.wait_for(started.wait(), 10)
    session.cancel("r1", work.lease.id)
    await coordinator.until(lambda: session.finished("r1"))
    commands = session.commands("r1")
    failed = next(v for k, v in commands if k == "step_failed")
    assert failed.error.type == "Cancelled"
    assert not failed.error.retryable
    assert json.loads(commands[-1][1].result) == "cleaned up"


async def test_a_step_timeout_fails_the_attempt_with_timeout_error(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    async def slow() -> None:
        await asyncio.Event().wait()

    @worker.function
    async def bounded(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.step("slow", slow, timeout=0.05)
        except trine.StepError as exc:
            return exc.type
        return "never"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "bounded"))
    await coordinator.until(lambda: session.finished("r1"))
    failed = next(v for k, v in session.commands("r1") if k == "step_failed")
    assert failed.error.type == "TimeoutError"
    assert "0.05s" in failed.error.message
    assert json.loads(session.commands("r1")[-1][1].result) == "TimeoutError"


async def test_journaled_values_replay_the_same(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def values(ctx: trine.Context, _: None) -> list:
        now = await ctx.now()
        ident = await ctx.uuid()
        roll = await ctx.random()
        return [now.isoformat(), str(ident), roll]

    serve(worker)
    session = await coordinator.registered()
    journal = [
        entry(0, "ctx.now", 1_700_000_000_000),
        entry(1, "ctx.uuid", "12345678-1234-5678-1234-567812345678"),
        entry(2, "ctx.random", 0.25),
    ]
    session.dispatch(item("r1", "values", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [(_kind, value)] = session.commands("r1")
    assert json.loads(value.result) == [
        "2023-11-14T22:13:20+00:00",
        "12345678-1234-5678-1234-567812345678",
        0.25,
    ]


async def test_a_sleep_where_the_journal_has_a_step_is_non_determinism(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def changed(ctx: trine.Context, _: None) -> None:
        await ctx.sleep(1)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "changed", journal=[entry(0, "charge", 1)], attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [(_kind, value)] = session.commands("r1")
    assert value.error.type == "NonDeterminismError"
    assert "calls sleep" in value.error.message
    assert "recorded step 'charge'" in value.error.message


@pytest.mark.parametrize("duration", [-1, float("nan"), float("inf")])
async def test_a_bad_sleep_fails_the_run_with_a_clear_error(
    coordinator, make_worker, serve, item, duration
) -> None:
    worker = make_worker()

    @worker.function
    async def napper(ctx: trine.Context, _: None) -> None:
        await ctx.sleep(duration)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "napper"))
    await coordinator.until(lambda: session.finished("r1"))
    [(kind, value)] = session.commands("r1")
    assert kind == "run_failed"
    assert value.error.type == "ValueError"
    assert "non-negative number of seconds" in value.error.message


async def test_a_function_timeout_is_registered_with_the_function(
    coordinator, make_worker, serve
) -> None:
    worker = make_worker()

    @worker.function(timeout=timedelta(minutes=2))
    async def bounded(ctx: trine.Context, _: None) -> None:
        return None

    serve(worker)
    session = await coordinator.registered()
    [spec] = session.register.functions
    assert (spec.name, spec.timeout_ms) == ("bounded", 120_000)
    with pytest.raises(ValueError, match="positive seconds"):
        worker.function(timeout=0)


async def test_a_cancel_notice_interrupts_every_concurrent_async_step(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    running: list[str] = []
    both = asyncio.Event()

    def forever(name: str):
        async def body() -> None:
            running.append(name)
            if len(running) == 2:
                both.set()
            await asyncio.Event().wait()

        return body

    @worker.function
    async def pair(ctx: trine.Context, _: None) -> list:
        outcomes = await asyncio.gather(
            ctx.step("a", forever("a")), ctx.step("b", forever("b")), return_exceptions=True
        )
        return [type(o).__name__ for o in outcomes]

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "pair")
    session.dispatch(work)
    await asyncio.wait_for(both.wait(), 10)
    session.cancel("r1", work.lease.id)
    await coordinator.until(lambda: session.finished("r1"))
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == ["CancelledError", "CancelledError"]


async def test_a_cancelled_child_replays_as_child_run_error_even_while_cancelling(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function
    async def parent(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.run("charge")
        except trine.ChildRunError as exc:
            return f"fallback after {exc.type}"
        return "charged"

    serve(worker)
    session = await coordinator.registered()
    gone = ErrorInfo(type="ChildCancelled", message="run c0 was cancelled")
    journal = [wait_entry(0, EntryKind.CHILD, "charge", error=gone, child="c0")]
    session.dispatch(item("r1", "parent", journal=journal, attempt=2, cancel_requested=True))
    await coordinator.until(lambda: session.finished("r1"))
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == "fallback after ChildCancelled"


@pytest.mark.parametrize("name", ["", "needs approval", "x" * 201])
async def test_a_bad_signal_name_fails_the_run_clearly(
    coordinator, make_worker, serve, item, name
) -> None:
    worker = make_worker()

    @worker.function
    async def approval(ctx: trine.Context, _: None) -> None:
        await ctx.wait_for_signal(name)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "approval"))
    await coordinator.until(lambda: session.finished("r1"))
    [(kind, value)] = session.commands("r1")
    assert kind == "run_failed"
    assert value.error.message == signal_name_problem(name)  # the rule every component shares

"""Durable sleeps and signal waits, as the workflow sees them.

The fake coordinator plays the engine's part: it answers a wait with SUSPENDED (the attempt ends
with no final report) or resolves it at once; a later dispatch carries the resolved entry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import trine
from trine_proto.trine.v1 import EntryKind, ErrorInfo, ReportAck, ReportOutcome, ReportResponse
from trine_proto.vocabulary import signal_name_problem


async def test_sleep_suspends_the_attempt_without_a_final_report(
    coordinator, make_worker, serve, item, waits_suspend
) -> None:
    worker = make_worker()
    after: list[str] = []

    @worker.function
    async def napper(ctx: trine.Context, _: None) -> str:
        await ctx.sleep(timedelta(minutes=5))
        after.append("woke")
        return "done"

    coordinator.ack_policy = waits_suspend
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
    coordinator, make_worker, serve, item, entry, wait_entry
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


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        (-1, "non-negative number of seconds"),
        (float("nan"), "non-negative number of seconds"),
        (float("inf"), "non-negative number of seconds"),
        # The engine refuses a span past 100 years (MAX_DURATION_MS): said at the call instead.
        (timedelta(days=365 * 200), "a sleep's duration is 6307200000000 ms"),
        (timedelta(days=365 * 200), "(100 years)"),
    ],
)
async def test_a_bad_sleep_blocks_the_run_with_a_clear_error(
    coordinator, make_worker, serve, item, duration, words
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
    assert kind == "run_blocked"  # a bug in the workflow's code: fixed code resumes the run
    assert value.error.type == "ValueError"
    assert words in value.error.message


def test_a_function_timeout_past_100_years_is_refused_where_it_is_declared(make_worker) -> None:
    worker = make_worker()
    with pytest.raises(ValueError, match=r"a function's timeout is \d+ ms, more than"):

        @worker.function(timeout=timedelta(days=365 * 1000))
        async def forever(ctx: trine.Context, _: None) -> None: ...


async def test_a_kept_signal_is_returned_without_suspending(
    coordinator, make_worker, serve, item, default_ack, wait_entry
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
    coordinator, make_worker, serve, item, wait_entry
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


@pytest.mark.parametrize("name", ["", "needs approval", "x" * 201])
async def test_a_bad_signal_name_blocks_the_run_clearly(
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
    assert kind == "run_blocked"
    assert value.error.message == signal_name_problem(name)  # the rule every component shares

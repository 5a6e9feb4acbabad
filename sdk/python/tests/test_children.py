"""Child runs: one report starts them all, and a failed or cancelled child is a
``ChildRunError``."""

from __future__ import annotations

import json

import trine
from trine_proto.trine.v1 import EntryKind, ErrorInfo


async def test_fan_out_sends_every_child_in_one_report_and_gathers_results(
    coordinator, make_worker, serve, item, wait_entry, waits_suspend
) -> None:
    worker = make_worker()

    @worker.function
    async def parent(ctx: trine.Context, n: int) -> list:
        results = await ctx.run_many([("square", i) for i in range(n)], return_exceptions=True)
        return [r.type if isinstance(r, trine.ChildRunError) else r for r in results]

    coordinator.ack_policy = waits_suspend
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
        wait_entry(0, EntryKind.CHILD, "square", 0, child_run_id="c0"),
        wait_entry(1, EntryKind.CHILD, "square", error=broke, child_run_id="c1"),
        wait_entry(2, EntryKind.CHILD, "square", 4, child_run_id="c2"),
    ]
    session.dispatch(item("r1", "parent", 3, journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == [0, "ValueError", 4]  # the error in its place


async def test_a_failed_child_raises_child_run_error(
    coordinator, make_worker, serve, item, wait_entry
) -> None:
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
    journal = [wait_entry(0, EntryKind.CHILD, "charge", error=broke, child_run_id="c0")]
    session.dispatch(item("r1", "parent", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    result = json.loads(session.commands("r1")[-1][1].result)
    assert result == "c0 charge CardDeclined: declined"


async def test_a_cancelled_child_replays_as_child_run_error_even_while_cancelling(
    coordinator, make_worker, serve, item, wait_entry
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
    journal = [wait_entry(0, EntryKind.CHILD, "charge", error=gone, child_run_id="c0")]
    session.dispatch(item("r1", "parent", journal=journal, attempt=2, cancel_requested=True))
    await coordinator.until(lambda: session.finished("r1"))
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == "fallback after ChildCancelled"

"""Cancellation: the workflow learns of it at one journaled position (the call it makes next, the
wait it is in, the step it runs), and a replay raises it at the same place."""

from __future__ import annotations

import asyncio
import json

import trine
from trine_proto.trine.v1 import EntryKind, ErrorInfo


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
    coordinator, make_worker, serve, item, entry, wait_entry
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

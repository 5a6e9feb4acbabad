"""Reports and their acks: what a step sends when, in which order, and what a refusal does."""

from __future__ import annotations

import asyncio
import json
import logging

import betterproto2

import trine
from trine import _steps
from trine_proto.trine.v1 import ReportAck


async def test_a_quick_step_reports_start_and_end_in_one_report(
    coordinator, make_worker, serve, item, monkeypatch
):
    # "Quick" is under the hold-back delay; a loaded machine can take 20 ms for a thread hop.
    monkeypatch.setattr(_steps, "STEP_STARTED_DELAY_S", 60.0)
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> int:
        return int(await ctx.step("quick", lambda: 1))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    first = next(r.report for r in session.reports if r.report.run_id == "r1")
    assert [betterproto2.which_one_of(c, "command")[0] for c in first.commands] == [
        "step_started",
        "step_completed",
    ]


async def test_a_slow_step_announces_its_start_before_it_ends(
    coordinator, make_worker, serve, item
):
    worker = make_worker()
    release = asyncio.Event()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> int:
        async def slow() -> int:
            await release.wait()
            return 1

        return int(await ctx.step("slow", slow))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: len(session.commands("r1")) == 1)  # the start, on its own
    assert [k for k, _ in session.commands("r1")] == ["step_started"]
    release.set()
    await coordinator.until(lambda: session.finished("r1"))
    assert [k for k, _ in session.commands("r1")] == [
        "step_started",
        "step_completed",
        "run_completed",
    ]


async def test_concurrent_steps_reach_the_journal_in_index_order(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    first_may_finish = asyncio.Event()

    async def first() -> str:
        await first_may_finish.wait()
        return "first"

    async def second() -> str:
        first_may_finish.set()  # the second step's body ends first
        return "second"

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> list:
        return list(await asyncio.gather(ctx.step("first", first), ctx.step("second", second)))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    completed = [v.entry.index for k, v in session.commands("r1") if k == "step_completed"]
    assert completed == [0, 1]
    assert json.loads(session.commands("r1")[-1][1].result) == ["first", "second"]


async def test_lease_lost_ends_the_attempt_quietly(
    coordinator, make_worker, serve, item, default_ack, logs, counting
) -> None:
    def policy(report):
        if report.report.run_id == "lost":
            return ReportAck(
                request_id=report.request_id, error_code="lease_lost", error_message="not current"
            )
        return default_ack(report)

    coordinator.ack_policy = policy
    worker = make_worker()
    counts: dict[str, int] = {}

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.step("one", counting(counts, "one"), 1)
        await ctx.step("two", counting(counts, "two"), 2)

    task = serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("lost", "wf"))
    await logs.wait(lambda r: "lease lost" in r.getMessage())
    worker.shutdown()
    await asyncio.wait_for(task, 10)
    assert [k for k, _ in session.commands("lost")] == ["step_started", "step_completed"]
    assert counts == {"one": 1}
    record = next(r for r in logs.records if "lease lost" in r.getMessage())
    assert record.levelno == logging.INFO
    assert "lost" in record.getMessage()
    assert "[wf lost]" in record.getMessage()

"""Reports and their acks: what a step sends when, in which order, and what a refusal does."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import betterproto2

import trine
from trine import _session, _steps
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    Heartbeat,
    ReportAck,
    ReportAcks,
    RunCompleted,
    StepStarted,
    WorkerMessage,
    WorkItems,
)


def kind(command: Command) -> str:
    return betterproto2.which_one_of(command, "command")[0]


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
    reports = [r.report for r in session.reports if r.report.run_id == "r1"]
    # The step's start, its result and the run's end: one report, one durable commit.
    assert [[kind(c) for c in r.commands] for r in reports] == [
        ["step_started", "step_completed", "run_completed"]
    ]


async def test_three_steps_cost_three_reports_each_result_with_the_next_start(
    coordinator, make_worker, serve, item, monkeypatch
):
    monkeypatch.setattr(_steps, "STEP_STARTED_DELAY_S", 60.0)
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> list:
        return [await ctx.step(name, lambda n=name: n) for name in ("a", "b", "c")]

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    reports = [r.report for r in session.reports if r.report.run_id == "r1"]
    assert [[kind(c) for c in r.commands] for r in reports] == [
        ["step_started", "step_completed", "step_started"],
        ["step_completed", "step_started"],
        ["step_completed", "run_completed"],
    ]
    completed = [v.entry.index for k, v in session.commands("r1") if k == "step_completed"]
    assert completed == [0, 1, 2]
    assert json.loads(session.commands("r1")[-1][1].result) == ["a", "b", "c"]


async def test_a_step_body_waits_until_the_results_before_it_are_acknowledged(
    coordinator, make_worker, serve, item, default_ack
):
    held: list = []

    def policy(report):
        if any(kind(c) == "step_completed" for c in report.report.commands) and not held:
            held.append(report)  # the first result's ack is kept back
            return None
        return default_ack(report)

    coordinator.ack_policy = policy
    worker = make_worker()
    ran: list[str] = []

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.step("one", lambda: ran.append("one"))
        await ctx.step("two", lambda: ran.append("two"))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: bool(held))
    # The report carrying step one's result (and step two's start) is out, not acknowledged:
    # step two's body has not run, and it does not run while the worker's loop turns.
    assert [kind(c) for c in held[0].report.commands][-1] == "step_started"
    for _ in range(20):
        await asyncio.sleep(0)
    assert ran == ["one"]
    session.outbox.put_nowait(CoordinatorMessage(report_ack=default_ack(held[0])))
    await coordinator.until(lambda: session.finished("r1"))
    assert ran == ["one", "two"]


async def test_a_held_result_goes_out_alone_when_the_workflow_waits_for_something_else(
    coordinator, make_worker, serve, item
):
    worker = make_worker()
    quick_reported = asyncio.Event()

    async def slow() -> str:
        await quick_reported.wait()  # ends only once the quick step's result was reported
        return "slow"

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> list:
        return list(await asyncio.gather(ctx.step("quick", lambda: "quick"), ctx.step("s", slow)))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: any(k == "step_completed" for k, _ in session.commands("r1")))
    assert [k for k, _ in session.commands("r1")][-1] == "step_completed"
    assert not session.finished("r1")
    quick_reported.set()
    await coordinator.until(lambda: session.finished("r1"))
    completed = [v.entry.index for k, v in session.commands("r1") if k == "step_completed"]
    assert completed == [0, 1]


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
    # Step one's result went out with step two's start, refused: step two never ran.
    assert [k for k, _ in session.commands("lost")] == [
        "step_started",
        "step_completed",
        "step_started",
    ]
    assert counts == {"one": 1}
    record = next(r for r in logs.records if "lease lost" in r.getMessage())
    assert record.levelno == logging.INFO
    assert "lost" in record.getMessage()
    assert "[wf lost]" in record.getMessage()


class _Stream:
    """What the session's writer needs of a stream to the coordinator: the messages it sent, in
    order."""

    def __init__(self) -> None:
        self.sent: list[WorkerMessage | None] = []

    async def send(self, message: WorkerMessage) -> None:
        self.sent.append(message)

    async def end(self) -> None:
        self.sent.append(None)


def _shapes(sent: list[WorkerMessage | None]) -> list[str]:
    def shape(message: WorkerMessage | None) -> str:
        if message is None:
            return "end"
        which, value = betterproto2.which_one_of(message, "message")
        return f"reports({len(value.reports)})" if which == "reports" else which

    return [shape(m) for m in sent]


async def _write(batches: bool, queue: Callable[[_session.Session], None]) -> list[str]:
    stream = _Stream()
    session = _session.Session(stream)
    session.batches = batches
    queue(session)  # all queued before the writer runs: one turn's worth
    session.end()
    await session.write_loop()
    return _shapes(stream.sent)


async def test_reports_queued_in_one_turn_go_as_one_message_in_order() -> None:
    def queue(session: _session.Session) -> None:
        for n in range(3):
            session.report(f"r{n}", "l", Command(step_started=StepStarted(index=0, name="s")))
        session.send(WorkerMessage(heartbeat=Heartbeat()))
        for n in range(2):
            session.report(f"r{n}", "l", Command(run_completed=RunCompleted(result=b"1")))

    assert await _write(True, queue) == ["reports(3)", "heartbeat", "reports(2)", "end"]
    # A coordinator that does not read WorkerReports (its Registered says nothing): one each.
    assert await _write(False, queue) == ["report"] * 3 + ["heartbeat"] + ["report"] * 2 + ["end"]


async def test_a_batch_stays_under_its_size_bound(monkeypatch) -> None:
    monkeypatch.setattr(_session, "MAX_BATCH_BYTES", 3000)
    big = RunCompleted(result=b"x" * 2000)

    def queue(session: _session.Session) -> None:
        session.report("r0", "l", Command(step_started=StepStarted(index=0, name="s")))
        session.report("r1", "l", Command(run_completed=big))  # 256 + 256 + 2000: fits
        session.report("r2", "l", Command(run_completed=big))  # over: starts the next one
        session.report("r3", "l", Command(step_started=StepStarted(index=0, name="s")))

    assert await _write(True, queue) == ["reports(2)", "reports(2)", "end"]


async def test_dispatches_and_acks_that_come_batched_are_read_one_by_one(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    held: list = []

    def policy(report):
        held.append(report)  # acked below, all in one message
        return None

    coordinator.ack_policy = policy
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> int:
        await ctx.emit("e")  # waits for its ack
        return 1

    serve(worker)
    session = await coordinator.registered()
    assert session.register.batches  # this SDK reads ReportAcks and WorkItems
    runs = ["r1", "r2", "r3"]
    items = WorkItems([item(r, "wf") for r in runs])
    session.outbox.put_nowait(CoordinatorMessage(dispatches=items))
    await coordinator.until(lambda: len(held) == 3)  # every run got its dispatch: three emits
    assert sorted(r.report.run_id for r in held) == runs
    assert not any(session.finished(r) for r in runs)
    acks = [default_ack(r) for r in held]
    coordinator.ack_policy = default_ack
    session.outbox.put_nowait(CoordinatorMessage(report_acks=ReportAcks(acks)))
    # Each emit's ack reached its run, which went on to its end.
    await coordinator.until(lambda: all(session.finished(r) for r in runs))


async def test_a_cancellation_the_ack_of_held_results_announces_stops_the_next_body(
    coordinator, make_worker, serve, item, default_ack, counting
) -> None:
    def policy(report):
        ack = default_ack(report)
        if any(kind(c) == "step_completed" for c in report.report.commands):
            assert ack.response is not None
            ack.response.cancel_requested = True  # the run is being cancelled meanwhile
        return ack

    coordinator.ack_policy = policy
    worker = make_worker()
    counts: dict[str, int] = {}

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        await ctx.step("one", counting(counts, "one"), 1)
        try:
            await ctx.step("two", counting(counts, "two"), 2)
        except trine.CancelledError:
            return "cancelled"
        return "not told"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    assert counts == {"one": 1}  # step two's body never ran
    kinds = [k for k, _ in session.commands("r1")]
    assert kinds[-2:] == ["cancel_observed", "run_completed"]
    assert session.commands("r1")[-2][1].index == 1
    assert json.loads(session.commands("r1")[-1][1].result) == "cancelled"

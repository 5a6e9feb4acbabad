"""The worker stream: register, dispatch, reports in order, reconnects, drain."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest

import trine
from trine_proto.trine.v1 import ReportAck
from trine_proto.trine.v1 import RetryPolicy as RetryPolicyProto

STEPS = ("validate", "charge", "ship")


def validate(order: dict) -> dict:
    return {"step": "validate", "order_id": order["order_id"], "ok": True}


async def charge(order: dict) -> dict:
    await asyncio.sleep(0)  # a real await: async steps are awaited
    return {"step": "charge", "order_id": order["order_id"], "charged": order["amount"]}


def ship(order: dict) -> dict:
    return {"step": "ship", "order_id": order["order_id"], "tracking": "trk-1"}


def order_worker(make_worker, **kwargs) -> trine.Worker:
    worker = make_worker(**kwargs)

    @worker.function(retry=trine.RetryPolicy(max_attempts=5))
    async def order(ctx: trine.Context, order: dict) -> dict:
        s1 = await ctx.step("validate", validate, order)
        s2 = await ctx.step("charge", charge, order, retry=trine.RetryPolicy(max_attempts=2))
        await ctx.emit("progress", {"charged": True})
        s3 = await ctx.step("ship", ship, order)
        return {"order_id": order["order_id"], "steps": [s1, s2, s3]}

    return worker


ORDER = {"order_id": "o-1", "amount": 19.99}


async def test_register_then_a_three_step_run_reports_in_order(
    coordinator, make_worker, serve, item
) -> None:
    worker = order_worker(make_worker, max_concurrency=7)
    serve(worker)
    session = await coordinator.registered()

    register = session.register
    assert register.worker_id == "w-test"
    assert register.max_concurrency == 7
    assert register.sdk_version.startswith("trine-python/")
    assert [f.name for f in register.functions] == ["order"]
    assert register.functions[0].retry == RetryPolicyProto(
        max_attempts=5, initial_interval_ms=100, max_interval_ms=10_000, backoff_coefficient=2.0
    )

    session.dispatch(item("r1", "order", ORDER))
    await coordinator.until(lambda: session.finished("r1"))

    commands = session.commands("r1")
    kinds = [k for k, _ in commands]
    assert kinds == [
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "emit",
        "step_started",
        "step_completed",
        "run_completed",
    ]
    started = [v for k, v in commands if k == "step_started"]
    assert [(s.index, s.name, s.attempt) for s in started] == [
        (0, "validate", 1),
        (1, "charge", 1),
        (3, "ship", 1),  # the emit took position 2
    ]
    entries = [v.entry for k, v in commands if k == "step_completed"]
    assert [(e.index, e.name, e.attempt) for e in entries] == [
        (0, "validate", 1),
        (1, "charge", 1),
        (3, "ship", 1),
    ]
    for e in entries:
        assert len(e.input_digest) == 16
        assert 0 < e.started_at_ms <= e.ended_at_ms
    assert json.loads(entries[1].output)["charged"] == 19.99
    emit = next(v for k, v in commands if k == "emit")
    assert (emit.index, emit.name, json.loads(emit.data)) == (2, "progress", {"charged": True})
    result = json.loads(commands[-1][1].result)
    assert [s["step"] for s in result["steps"]] == list(STEPS)

    reports = [r for r in session.reports if r.report.run_id == "r1"]
    assert {r.report.lease_id for r in reports} == {"lease-r1-1"}
    assert len({r.request_id for r in reports}) == len(reports)  # one report per command


async def test_heartbeats_follow_the_registered_interval(coordinator, make_worker, serve) -> None:
    coordinator.heartbeat_ms = 10
    serve(order_worker(make_worker))
    session = await coordinator.registered()
    await coordinator.until(lambda: session.heartbeats >= 3)


async def test_runs_execute_concurrently(coordinator, make_worker, serve, item) -> None:
    worker = make_worker()
    inside = 0
    both_inside = asyncio.Event()

    async def meet() -> str:
        nonlocal inside
        inside += 1
        if inside == 2:
            both_inside.set()
        await both_inside.wait()  # only returns if both runs are in their step at once
        return "met"

    @worker.function
    async def rendezvous(ctx: trine.Context, _: None) -> str:
        return await ctx.step("meet", meet)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("a", "rendezvous"))
    session.dispatch(item("b", "rendezvous"))
    await coordinator.until(lambda: session.finished("a") and session.finished("b"))


async def test_reconnects_after_the_coordinator_restarts(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = order_worker(make_worker)
    blocked = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        blocked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @worker.function
    async def stuck(ctx: trine.Context, _: None) -> None:
        await ctx.step("forever", forever)

    serve(worker)
    first = await coordinator.registered()
    first.dispatch(item("r-stuck", "stuck"))
    await asyncio.wait_for(blocked.wait(), 10)

    await coordinator.stop()
    await asyncio.wait_for(cancelled.wait(), 10)  # in-flight runs are cancelled on disconnect
    await coordinator.start()  # same port

    second = await coordinator.registered(2)
    assert second.register.worker_id == "w-test"
    second.dispatch(item("r2", "order", ORDER))
    await coordinator.until(lambda: second.finished("r2"))
    assert second.commands("r-stuck") == []
    assert sum("lost the coordinator" in m for m in logs.messages(logging.WARNING)) == 1


async def test_waits_for_a_coordinator_that_is_not_there_yet_logging_once(
    coordinator, make_worker, serve, item, logs
) -> None:
    await coordinator.stop()
    worker = order_worker(make_worker)
    serve(worker)
    # Several failed attempts (the backoff starts at 0.1 s), then the coordinator appears.
    await logs.wait(lambda r: "still unreachable" in r.getMessage(), count=2)
    await coordinator.start()
    session = await coordinator.registered()
    session.dispatch(item("r1", "order", ORDER))
    await coordinator.until(lambda: session.finished("r1"))
    warnings = logs.messages(logging.WARNING)
    assert sum("cannot reach the coordinator" in m for m in warnings) == 1, warnings
    assert any("registered" in m and "without a coordinator" in m for m in logs.messages())


async def test_a_stream_closed_by_the_coordinator_is_reopened(
    coordinator, make_worker, serve
) -> None:
    serve(order_worker(make_worker))
    first = await coordinator.registered()
    first.close()  # e.g. fenced, or the coordinator restarting gracefully
    await coordinator.registered(2)


async def test_drain_finishes_in_flight_runs_then_closes(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> str:
        entered.set()
        await release.wait()
        return "done"

    @worker.function
    async def job(ctx: trine.Context, _: None) -> str:
        return await ctx.step("slow", slow)

    task = serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "job"))
    await asyncio.wait_for(entered.wait(), 10)

    worker.shutdown()
    await coordinator.until(lambda: session.drained)
    assert not task.done()
    assert not session.finished("r1")
    session.dispatch(item("r2", "job"))  # sent before the coordinator saw Drain: not started
    release.set()
    await asyncio.wait_for(task, 10)  # serve() returns once the run is done and the stream closed
    assert session.finished("r1")
    assert session.commands("r2") == []
    await asyncio.wait_for(session.ended.wait(), 10)
    assert len(coordinator.sessions) == 1  # no reconnect after a drain


async def test_drain_timeout_cancels_runs_that_do_not_finish(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker(drain_timeout=0.05)
    entered = asyncio.Event()

    async def forever() -> None:
        entered.set()
        await asyncio.Event().wait()

    @worker.function
    async def job(ctx: trine.Context, _: None) -> None:
        await ctx.step("forever", forever)

    task = serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "job"))
    await asyncio.wait_for(entered.wait(), 10)
    worker.shutdown()
    await asyncio.wait_for(task, 10)
    assert not session.finished("r1")  # its lease goes back with the stream; it will replay
    assert worker.in_flight == 0


def test_function_registration_rules() -> None:
    worker = trine.Worker(address="127.0.0.1:1")

    async def a(ctx: trine.Context, x: int) -> int:
        return x

    assert worker.function(a) is a
    assert worker.function(name="b")(a) is a
    assert set(worker.functions) == {"a", "b"}
    with pytest.raises(ValueError, match="already registered"):
        worker.function(a)

    def sync(ctx: trine.Context, x: int) -> int:
        return x

    with pytest.raises(TypeError, match="async"):
        worker.function(sync)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="host:port"):
        trine.Worker(address="nowhere")
    # What the coordinator refuses (trine_proto.vocabulary.name_problem), said where it is set.
    with pytest.raises(ValueError, match="a function's name is 201 characters; at most 200"):
        worker.function(name="f" * 201)(a)
    with pytest.raises(ValueError, match="has a character that is not printable"):
        worker.function(name="a\nb")(a)
    with pytest.raises(ValueError, match="a worker_id is 201 characters"):
        trine.Worker(address="127.0.0.1:1", worker_id="w" * 201)


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


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRINE_WORKER_ADDR", "10.1.2.3:9999")
    worker = trine.Worker()
    assert worker.address == "10.1.2.3:9999"
    assert worker.max_concurrency == 100
    assert f"-{__import__('os').getpid()}-" in worker.worker_id


async def test_drain_does_not_hang_on_a_coordinator_that_never_closes(
    coordinator, make_worker, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trine._connection.CLOSE_TIMEOUT", 0.05)
    coordinator.close_when_worker_ends = False
    worker = order_worker(make_worker)
    task = serve(worker)
    session = await coordinator.registered()
    worker.shutdown()
    await asyncio.wait_for(task, 10)
    assert session.drained


@pytest.mark.parametrize("code", ["unavailable", "storage_error"])
async def test_a_transient_refusal_starts_the_stream_over(
    coordinator, make_worker, serve, item, default_ack, code: str
) -> None:
    """Neither code says anything about the run (TRANSIENT_CODES): it is dispatched again."""
    refused = []

    def policy(report):
        if not refused:
            refused.append(report.report.run_id)
            return trine_ack_error(report, code)
        return default_ack(report)

    coordinator.ack_policy = policy
    serve(order_worker(make_worker))
    first = await coordinator.registered()
    first.dispatch(item("r1", "order", ORDER))
    second = await coordinator.registered(2)  # the worker dropped the stream and came back
    second.dispatch(item("r1", "order", ORDER, attempt=2))
    await coordinator.until(lambda: second.finished("r1"))
    assert not first.finished("r1")


def trine_ack_error(report, code: str) -> ReportAck:
    return ReportAck(request_id=report.request_id, error_code=code, error_message="refused")

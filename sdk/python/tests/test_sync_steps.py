"""Sync steps run in the worker's step threads, never on the event loop; what a timeout and a
cancellation do to a step that cannot be interrupted; the loop-lag warning for async code that
blocks.

A sync step here waits on a ``threading.Event`` the test releases, so "the loop keeps going while
it runs" is observed (heartbeats, the step's own thread), not timed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import trine


def gate() -> tuple[threading.Event, asyncio.Event, Callable[[], None]]:
    """``(release, entered, mark_entered)``: a sync step calls ``mark_entered()`` from its
    thread (it wakes ``entered`` on the loop) and blocks on ``release``."""
    loop = asyncio.get_running_loop()
    release, entered = threading.Event(), asyncio.Event()
    return release, entered, lambda: loop.call_soon_threadsafe(entered.set)


async def test_a_sync_step_runs_in_a_step_thread_while_the_loop_goes_on(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    release, entered, mark_entered = gate()
    threads: list[str] = []

    def blocking(order_id: str) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        mark_entered()
        assert release.wait(10)
        return {"order_id": order_id}

    @worker.function
    async def order(ctx: trine.Context, data: dict) -> Any:
        return await ctx.step("blocking", blocking, data["order_id"])

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "order", {"order_id": "o-1"}))
    await asyncio.wait_for(entered.wait(), 10)
    beats = session.heartbeats
    # The fake asks for a heartbeat every 50 ms: they keep coming while the step blocks.
    await coordinator.until(lambda: session.heartbeats >= beats + 3)
    release.set()
    await coordinator.until(lambda: session.finished("r1"))
    assert threads[0].startswith("trine-step")
    assert threads[0] != threading.current_thread().name
    kind, value = session.commands("r1")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == {"order_id": "o-1"}


async def test_step_threads_bounds_the_sync_steps_running_at_once(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker(step_threads=2)
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def body(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    @worker.function
    async def fan(ctx: trine.Context, _: None) -> list[int]:
        return list(await asyncio.gather(*(ctx.step(f"s{i}", body, i) for i in range(5))))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "fan"))
    await coordinator.until(lambda: session.finished("r1"))
    assert json.loads(session.commands("r1")[-1][1].result) == [0, 1, 2, 3, 4]
    assert running[1] == 2


async def test_a_sync_step_past_its_timeout_fails_once_it_returns(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    finished: list[str] = []

    def slow() -> str:
        time.sleep(0.3)
        finished.append("slow")
        return "late"

    @worker.function
    async def order(ctx: trine.Context, _: None) -> str:
        try:
            return str(await ctx.step("slow", slow, timeout=0.05))
        except trine.StepError as error:
            return f"{error.type}: {error}"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "order"))
    await coordinator.until(lambda: session.finished("r1"))
    assert finished == ["slow"]  # not interrupted: it ran to its end
    commands = session.commands("r1")
    failed = next(v for k, v in commands if k == "step_failed")
    assert failed.error.type == "TimeoutError"
    assert "past its timeout of 0.05s" in failed.error.message
    assert "cannot be interrupted" in failed.error.message
    assert not any(k == "step_completed" for k, _ in commands)  # the result is discarded


async def test_a_cancel_notice_during_a_sync_step_is_heard_at_the_next_call(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = make_worker()
    release, entered, mark_entered = gate()
    calls: list[str] = []

    def charge() -> str:
        mark_entered()
        assert release.wait(10)
        return "charged"

    @worker.function
    async def order(ctx: trine.Context, _: None) -> str:
        receipt = await ctx.step("charge", charge)
        try:
            await ctx.step("ship", lambda: calls.append("ship"))
        except trine.CancelledError:
            return str(await ctx.step("refund", lambda: f"refunded {receipt}"))
        return "shipped"

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "order")
    session.dispatch(work)
    await asyncio.wait_for(entered.wait(), 10)
    session.cancel("r1", work.lease.id)
    await logs.wait(lambda r: "cannot be interrupted" in r.getMessage())
    release.set()
    await coordinator.until(lambda: session.finished("r1"))
    commands = session.commands("r1")
    completed = [json.loads(v.entry.output) for k, v in commands if k == "step_completed"]
    assert completed == ["charged", "refunded charged"]  # the step's result is journaled
    assert [v.name for k, v in commands if k == "cancel_observed"] == ["ship"]
    assert calls == []
    assert json.loads(commands[-1][1].result) == "refunded charged"


async def test_an_async_step_blocking_the_loop_is_named_in_a_warning(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = make_worker(loop_lag_warning=0.1)

    async def block() -> str:
        time.sleep(0.6)  # noqa: ASYNC251 - the mistake: blocking code in an async step
        return "done"

    @worker.function
    async def laggy(ctx: trine.Context, _: None) -> str:
        return str(await ctx.step("block", block))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "laggy"))
    await coordinator.until(lambda: session.finished("r1"))
    # Re-checked on every heartbeat (each 50 ms): the "runs again" line comes on the loop's
    # first beat after the block, which may follow the run's end.
    await coordinator.until(
        lambda: any("runs again after being blocked" in m for m in logs.messages())
    )
    [blocked] = [m for m in logs.messages(logging.WARNING) if "has been blocked" in m]
    assert "step 'block' of workflow 'laggy' (run r1)" in blocked


async def test_a_workflow_blocking_the_loop_between_steps_is_named_too(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = make_worker(loop_lag_warning=0.1)

    @worker.function
    async def laggy(ctx: trine.Context, _: None) -> str:
        time.sleep(0.6)  # noqa: ASYNC251 - blocking between steps
        return "done"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "laggy"))
    await coordinator.until(lambda: session.finished("r1"))
    [blocked] = [m for m in logs.messages(logging.WARNING) if "has been blocked" in m]
    assert "workflow 'laggy' (run r1), outside any step" in blocked


async def test_a_blocking_sync_step_raises_no_lag_warning(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = make_worker(loop_lag_warning=0.1)

    @worker.function
    async def laggy(ctx: trine.Context, _: None) -> str:
        await ctx.step("sleepy", time.sleep, 0.5)  # sync: in a thread, the loop is free
        return "done"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "laggy"))
    await coordinator.until(lambda: session.finished("r1"))
    assert not [m for m in logs.messages(logging.WARNING) if "blocked" in m]


def test_worker_settings_are_checked(make_worker) -> None:
    for bad in ({"step_threads": 0}, {"loop_lag_warning": 0}, {"loop_lag_warning": -1.0}):
        try:
            make_worker(**bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


async def test_a_loop_busy_with_many_runs_gets_a_busy_warning_not_a_culprit(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = make_worker(loop_lag_warning=0.2)

    async def chunky() -> None:
        for _ in range(3):  # 20 ms of CPU, then a yield: no single call blocks for long
            time.sleep(0.02)  # noqa: ASYNC251 - stands in for CPU-heavy async code
            await asyncio.sleep(0)

    @worker.function
    async def busy(ctx: trine.Context, _: None) -> str:
        await asyncio.gather(*(ctx.step(f"c{i}", chunky) for i in range(40)))
        return "done"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "busy"))
    await coordinator.until(lambda: session.finished("r1"))
    await coordinator.until(
        lambda: any("runs again after being busy" in m for m in logs.messages())
    )
    warnings = logs.messages(logging.WARNING)
    assert any("the event loop is busy" in m for m in warnings)
    assert not any("has been blocked" in m for m in warnings)

"""Every run-level event carries the run's function as its ``name``, as ``run.started`` does:
the end of a run (completed, failed, cancelled, timed out) and a cancellation request."""

from __future__ import annotations

from tests.conftest import FUNCTION, Harness
from trine_proto.trine.v1 import CancelRunRequest, StartRunRequest, WaitRunRequest

RUN_LEVEL = {"run.started", "run.completed", "run.failed", "run.cancelled", "run.cancel_requested"}


async def names(h: Harness, run_id: str) -> list[tuple[str, str]]:
    return [(e.type, e.name) for e in await h.events(run_id) if e.type in RUN_LEVEL]


async def test_a_completed_and_a_failed_run(h: Harness) -> None:
    await h.register()
    done = await h.start()
    await h.report(await h.take_one(), h.finish())
    failed = await h.start()
    await h.report(await h.take_one(), h.fail())
    assert await names(h, done.id) == [("run.started", FUNCTION), ("run.completed", FUNCTION)]
    assert await names(h, failed.id) == [("run.started", FUNCTION), ("run.failed", FUNCTION)]


async def test_a_cancelled_run(h: Harness) -> None:
    await h.register()
    pending = await h.start()
    await h.backend.cancel_run(CancelRunRequest(run_id=pending.id, reason="not needed"))
    running = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    await h.backend.cancel_run(CancelRunRequest(run_id=running.id, reason="stop"))
    await h.report(item, h.fail("cancelled"))
    assert await names(h, pending.id) == [("run.started", FUNCTION), ("run.cancelled", FUNCTION)]
    assert await names(h, running.id) == [
        ("run.started", FUNCTION),
        ("run.cancel_requested", FUNCTION),
        ("run.cancelled", FUNCTION),
    ]


async def test_a_timed_out_run(h: Harness) -> None:
    await h.register()
    response = await h.backend.start_run(
        StartRunRequest(function=FUNCTION, input=b"{}", timeout_ms=150)
    )
    await h.take_one()
    h.clock.advance(150)
    await h.backend.wait_run(WaitRunRequest(run_id=response.run.id, wait_ms=5_000))
    assert await names(h, response.run.id) == [
        ("run.started", FUNCTION),
        ("run.failed", FUNCTION),
    ]

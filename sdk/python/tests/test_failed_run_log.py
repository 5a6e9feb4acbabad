"""The worker logs one WARNING line for each attempt that reports its run failed, naming the run,
the function, the error's type and message; a retried step and a completed run log no such line."""

from __future__ import annotations

import asyncio
import logging

import trine
from trine_proto.trine.v1 import ReportAck, ReportOutcome, ReportResponse


def failed_lines(logs) -> list[logging.LogRecord]:
    return [
        r for r in logs.records if r.levelno >= logging.WARNING and "run failed" in r.getMessage()
    ]


async def test_a_failed_run_is_logged_once(coordinator, make_worker, serve, item, logs) -> None:
    worker = make_worker()

    @worker.function(on_workflow_error="fail")
    async def raises(ctx: trine.Context, _: None) -> None:
        raise RuntimeError("boom")

    @worker.function
    async def fine(ctx: trine.Context, _: None) -> str:
        return "ok"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "raises"))
    session.dispatch(item("r2", "fine"))
    await coordinator.until(lambda: session.finished("r1") and session.finished("r2"))

    [line] = failed_lines(logs)
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "[raises r1] run failed: RuntimeError: boom"
    assert (line.error_type, line.error_message) == ("RuntimeError", "boom")  # type: ignore[attr-defined]


async def test_a_retried_step_is_not_a_failed_run(
    coordinator, make_worker, serve, item, default_ack, logs
) -> None:
    def policy(report):
        if any(c.step_failed is not None for c in report.report.commands):
            return ReportAck(
                request_id=report.request_id,
                response=ReportResponse(outcome=ReportOutcome.RETRY_SCHEDULED),
            )
        return default_ack(report)

    coordinator.ack_policy = policy
    worker = make_worker()

    def flaky() -> None:
        raise ValueError("try again")

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.step("flaky", flaky, retry=trine.RetryPolicy(max_attempts=4))

    task = serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: any(k == "step_failed" for k, _ in session.commands("r1")))
    worker.shutdown()
    await asyncio.wait_for(task, 10)
    assert failed_lines(logs) == []

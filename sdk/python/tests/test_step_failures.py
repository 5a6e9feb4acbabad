"""Failing steps and runs: the engine's outcome decides between a retry (the attempt ends quietly)
and a ``StepError`` the workflow sees; a run's own errors fail it."""

from __future__ import annotations

import asyncio
import json

import trine
from trine_proto.trine.v1 import ReportAck, ReportOutcome, ReportResponse


def outcome_for(step_failed: ReportOutcome, default_ack):
    """An ack policy: ``step_failed`` reports get this outcome, the rest the default."""

    def policy(report):
        if any(c.step_failed is not None for c in report.report.commands):
            return ReportAck(
                request_id=report.request_id, response=ReportResponse(outcome=step_failed)
            )
        return default_ack(report)

    return policy


async def test_retry_scheduled_ends_the_attempt_quietly(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    coordinator.ack_policy = outcome_for(ReportOutcome.RETRY_SCHEDULED, default_ack)
    worker = make_worker()
    after: list[str] = []

    def flaky() -> None:
        raise ValueError("try again")

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        try:
            await ctx.step("flaky", flaky, retry=trine.RetryPolicy(max_attempts=4))
        except Exception:  # the end of an attempt is not an Exception: this does not run
            after.append("caught")
        after.append("continued")

    task = serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf", step_attempts={0: 1}, attempt=2))
    await coordinator.until(lambda: any(k == "step_failed" for k, _ in session.commands("r1")))
    worker.shutdown()  # drain: waits for the run's task, so anything it still sent is seen
    await asyncio.wait_for(task, 10)

    commands = session.commands("r1")
    assert [k for k, _ in commands] == ["step_started", "step_failed"]
    failed = commands[1][1]
    assert (failed.index, failed.name, failed.attempt) == (0, "flaky", 2)
    assert (failed.error.type, failed.error.message) == ("ValueError", "try again")
    assert failed.error.retryable
    assert "raise ValueError" in failed.error.traceback
    assert failed.retry.max_attempts == 4
    assert len(failed.input_digest) == 16
    assert failed.started_at_ms > 0
    assert after == []


async def test_non_retryable_errors_and_bad_outputs_are_reported_as_such(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    coordinator.ack_policy = outcome_for(ReportOutcome.STEP_FAILED, default_ack)
    worker = make_worker(max_payload_bytes=100)

    def refuse() -> None:
        raise trine.NonRetryableError("bad card")

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> list:
        errors = []
        for name, fn in (
            ("refuse", refuse),
            ("not-json", lambda: {1, 2}),
            ("too-big", lambda: "x" * 200),
        ):
            try:
                await ctx.step(name, fn)
            except trine.StepError as exc:
                errors.append(exc.type)
        return errors

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    failed = [v for k, v in session.commands("r1") if k == "step_failed"]
    assert [(f.index, f.error.type, f.error.retryable) for f in failed] == [
        (0, "NonRetryableError", False),
        (1, "TypeError", False),
        (2, "PayloadTooLarge", False),
    ]
    assert "not JSON-serializable" in failed[1].error.message
    assert "200" in failed[2].error.message or "202" in failed[2].error.message
    result = session.commands("r1")[-1][1].result
    assert json.loads(result) == ["NonRetryableError", "TypeError", "PayloadTooLarge"]


async def test_step_failed_raises_step_error_in_the_workflow(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    coordinator.ack_policy = outcome_for(ReportOutcome.STEP_FAILED, default_ack)
    worker = make_worker()

    def broken(x: int) -> None:
        raise KeyError(x)

    @worker.function
    async def catches(ctx: trine.Context, _: None) -> dict:
        try:
            await ctx.step("broken", broken, 7)
        except trine.StepError as exc:
            cause = type(exc.__cause__).__name__
            return {"type": exc.type, "message": exc.message, "step": exc.step, "cause": cause}
        return {}

    @worker.function
    async def lets_it_fail(ctx: trine.Context, _: None) -> None:
        await ctx.step("broken", broken, 7)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("caught", "catches"))
    session.dispatch(item("uncaught", "lets_it_fail"))
    await coordinator.until(lambda: session.finished("caught") and session.finished("uncaught"))

    kind, value = session.commands("caught")[-1]
    assert kind == "run_completed"
    assert json.loads(value.result) == {
        "type": "KeyError",
        "message": "7",
        "step": "broken",
        "cause": "KeyError",
    }
    kind, value = session.commands("uncaught")[-1]
    assert kind == "run_failed"
    assert value.error.type == "StepError"
    assert "KeyError" in value.error.message


async def test_an_output_the_engine_finds_too_large_fails_the_run(
    coordinator, make_worker, serve, item, default_ack
) -> None:
    # The worker's limit is above the engine's (a misconfiguration): the step's result is held
    # and the workflow went on with it, so the refusal comes with the run's end, and the run
    # fails with the engine's reason (docs/internals.md, "The worker stream").
    def policy(report):
        commands = report.report.commands
        if any(c.step_completed is not None for c in commands):
            return ReportAck(
                request_id=report.request_id,
                error_code="payload_too_large",
                error_message="the output of step 0 is 12 bytes; the limit is 10",
            )
        return default_ack(report)

    coordinator.ack_policy = policy
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        await ctx.step("big", lambda: "0123456789")
        return "done"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: "run_failed" in [k for k, _ in session.commands("r1")])
    kinds = [k for k, _ in session.commands("r1")]
    # The refused report changed nothing; the run's failure goes alone.
    assert kinds == ["step_started", "step_completed", "run_completed", "run_failed"]
    failed = session.commands("r1")[-1][1]
    assert (failed.error.type, failed.error.message) == (
        "PayloadTooLarge",
        "the output of step 0 is 12 bytes; the limit is 10",
    )


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


async def test_workflow_errors_block_the_run_and_bad_results_fail_it(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function
    async def raises(ctx: trine.Context, _: None) -> None:
        raise RuntimeError("boom")

    @worker.function
    async def not_json(ctx: trine.Context, _: None) -> object:
        return object()

    @worker.function
    async def info(ctx: trine.Context, payload: dict) -> dict:
        return {"run_id": ctx.run_id, "function": ctx.function, "attempt": ctx.attempt, **payload}

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "raises"))
    session.dispatch(item("r2", "not_json"))
    session.dispatch(item("r3", "info", {"x": 1}, attempt=3))
    await coordinator.until(lambda: all(session.finished(r) for r in ("r1", "r2", "r3")))

    [(kind, value)] = session.commands("r1")
    assert kind == "run_blocked"
    assert (value.error.type, value.error.message) == ("RuntimeError", "boom")
    assert "RuntimeError: boom" in value.error.traceback
    [(kind, value)] = session.commands("r2")
    assert kind == "run_failed"
    assert value.error.type == "TypeError"
    [(kind, value)] = session.commands("r3")
    assert json.loads(value.result) == {"run_id": "r3", "function": "info", "attempt": 3, "x": 1}

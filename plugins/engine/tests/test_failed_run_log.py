"""A failed run is logged once, at WARNING, when its failure is durable: with its id, function,
error type and message; a step's retry, a completed or a cancelled run log no such line."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from tests.conftest import FUNCTION, Harness
from trine_proto.trine.v1 import (
    CancelRunRequest,
    ReportOutcome,
    RetryPolicy,
    StartRunRequest,
    WaitRunRequest,
)


def failures(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "run failed"]


async def test_a_failed_run_is_logged_once_not_its_retries(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=20))
    with capture_logs() as logs:
        run = await h.start()
        item = await h.take_one()
        retry = await h.report(item, h.started(0, "flaky"), h.failed(0, "flaky", attempt=1))
        assert retry.outcome == ReportOutcome.RETRY_SCHEDULED
        assert failures(logs) == []
        h.clock.advance(20)
        second = await h.take_one(wait_ms=5_000)
        await h.report(second, h.fail("it broke"))
        await h.report(second, h.fail("it broke"))  # a repeated final report changes nothing
        done = await h.start()
        await h.report(await h.take_one(), h.finish())
        cancelled = await h.start()
        await h.backend.cancel_run(CancelRunRequest(run_id=cancelled.id))
    assert done.id != run.id
    assert failures(logs) == [
        {
            "component": "engine",
            "event": "run failed",
            "log_level": "warning",
            "run_id": run.id,
            "function": FUNCTION,
            "error_type": "RuntimeError",
            "error_message": "it broke",
        }
    ]


async def test_a_timed_out_run_is_logged(h: Harness) -> None:
    await h.register()
    with capture_logs() as logs:
        response = await h.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"{}", timeout_ms=150)
        )
        await h.take_one()
        h.clock.advance(150)
        await h.backend.wait_run(WaitRunRequest(run_id=response.run.id, wait_ms=5_000))
    [line] = failures(logs)
    assert line["log_level"] == "warning"
    assert (line["run_id"], line["function"], line["error_type"]) == (
        response.run.id,
        FUNCTION,
        "RunTimeout",
    )
    assert line["error_message"]

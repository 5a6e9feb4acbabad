"""``POST /v1/runs/{id}/cancel``: at once (200), requested while the workflow cleans up (202),
``?wait``, and a conflict once final."""

from __future__ import annotations

import asyncio

from conftest import Gateway, start
from drive import requests, step_completed

from trine_proto.trine.v1 import GetRunRequest


async def test_cancel_then_cancel_again_is_a_conflict(gateway: Gateway) -> None:
    run_id = await start(gateway)
    cancelled = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_finished"


async def test_cancel_with_a_reason(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "by hand"})
    assert response.status_code == 200, response.text
    assert response.json()["error"]["message"] == "by hand"


async def running_with_a_step(gateway: Gateway) -> str:
    """A run that took a step on a worker: cancelling it lets the workflow clean up."""
    run_id = await start(gateway)
    await gateway.drive.report(run_id, step_completed(0, "charge", 1))  # and it holds the lease
    return run_id


async def test_cancel_of_a_running_run_is_requested_with_202(gateway: Gateway) -> None:
    run_id = await running_with_a_step(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "by hand"})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "running"
    assert run["cancel_requested"] is True
    assert run["cancel_deadline"] == "2023-11-14T22:13:50.123Z"  # T0 + 30 s grace
    # asked again while it cleans up: the same answer
    again = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 202, again.text
    await gateway.drive.cancelled(run_id)
    done = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert done["status"] == "cancelled"
    late = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "run_finished"


async def test_cancel_with_wait_answers_200_once_cancelled(gateway: Gateway) -> None:
    run_id = await running_with_a_step(gateway)
    cancel = asyncio.create_task(
        gateway.http.post(f"/v1/runs/{run_id}/cancel", params={"wait": 30})
    )
    await gateway.memory.called("wait_run")
    assert (await gateway.memory.backend.get_run(GetRunRequest(run_id=run_id))).cancel_requested
    await gateway.drive.cancelled(run_id)
    response = await cancel
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


async def test_cancel_with_a_wait_that_runs_out_answers_202(gateway: Gateway) -> None:
    run_id = await running_with_a_step(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", params={"wait": 0.05})
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True


async def test_cancel_with_wait_of_a_run_cancelled_at_once_answers_200(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", params={"wait": 5})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert requests(gateway.memory, "wait_run") == []  # final already: no long poll

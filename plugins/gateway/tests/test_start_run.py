"""``POST /v1/runs``: the run it answers, idempotency keys, ``?wait``, ``timeout_s``."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import Gateway
from drive import echoing, requests

from trine_gateway import routes
from trine_proto.trine.v1 import StartRunRequest, StartRunResponse

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ORDER = {"order_id": "o-1", "items": [{"sku": "A1", "qty": 2}], "amount": 19.99}


def started(gateway: Gateway) -> list[StartRunRequest]:
    """Every start the gateway asked the engine for."""
    return requests(gateway.memory, "start_run")


async def test_start_run_answers_201_with_the_run(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order", "input": ORDER})
    assert response.status_code == 201, response.text
    run = response.json()
    assert set(run) == {
        "id",
        "function",
        "status",
        "input",
        "result",
        "error",
        "attempt",
        "idempotency_key",
        "worker_id",
        "created_at",
        "updated_at",
        "cancel_requested",
        "cancel_deadline",
        "parent_run_id",
        "deadline",
        "waiting",
        "build_id",
        "blocked_build_id",
        "retries",
        "waiting_for_build",
        "kept_signals",
    }
    assert run["function"] == "order"
    assert run["status"] == "pending"
    assert run["input"] == ORDER
    assert run["result"] is None
    assert run["error"] is None
    assert run["attempt"] == 0
    assert run["idempotency_key"] is None
    assert run["worker_id"] is None
    assert run["created_at"] == "2023-11-14T22:13:20.123Z"
    assert ISO_MS.match(run["updated_at"])
    assert run["cancel_requested"] is False
    assert run["cancel_deadline"] is None
    assert run["parent_run_id"] is None
    assert run["deadline"] is None
    assert run["waiting"] == []
    assert (run["build_id"], run["blocked_build_id"], run["waiting_for_build"]) == (None,) * 3
    assert run["retries"] == 0
    assert run["kept_signals"] == []
    (sent,) = started(gateway)
    assert sent.input == b'{"order_id":"o-1","items":[{"sku":"A1","qty":2}],"amount":19.99}'
    assert sent.idempotency_key == ""
    assert sent.timeout_ms == 0


async def test_missing_input_is_null(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order"})
    assert response.status_code == 201, response.text
    assert response.json()["input"] is None
    assert started(gateway)[0].input == b"null"


async def test_idempotency_key_answers_the_same_run_with_200(gateway: Gateway) -> None:
    body = {"function": "order", "input": ORDER}
    headers = {"Idempotency-Key": "k-1"}
    first = await gateway.http.post("/v1/runs", json=body, headers=headers)
    second = await gateway.http.post("/v1/runs", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["idempotency_key"] == "k-1"
    other = await gateway.http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_wait_returns_the_final_run(gateway: Gateway) -> None:
    async with echoing(gateway.memory):
        response = await gateway.http.post(
            "/v1/runs", params={"wait": 5}, json={"function": "echo", "input": {"x": 1}}
        )
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "completed"
    assert run["result"] == {"x": 1}


async def test_wait_that_runs_out_answers_202(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/v1/runs", params={"wait": 0.05}, json={"function": "order", "input": ORDER}
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"


async def test_wait_with_a_reused_key_of_a_final_run_answers_200(gateway: Gateway) -> None:
    body = {"function": "echo", "input": 1}
    headers = {"Idempotency-Key": "k"}
    first = await gateway.http.post("/v1/runs", json=body, headers=headers)
    await gateway.drive.complete(first.json()["id"], 1)  # the echo
    again = await gateway.http.post("/v1/runs", params={"wait": 1}, json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "completed"


async def test_timeout_s_sets_the_runs_deadline(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/v1/runs", json={"function": "order", "input": ORDER, "timeout_s": 1.5}
    )
    assert response.status_code == 201, response.text
    assert started(gateway)[-1].timeout_ms == 1500
    assert response.json()["deadline"] == "2023-11-14T22:13:21.623Z"  # T0 + 1.5 s


@pytest.mark.parametrize(
    ("timeout_s", "timeout_ms"),
    [(1.1, 1100), (0.0001, 1), (0.0011, 2), (2, 2000), (86_400, 86_400_000), (0.0015, 2)],
)
async def test_timeout_s_rounds_up_to_milliseconds(
    gateway: Gateway, timeout_s: float, timeout_ms: int
) -> None:
    body = {"function": "order", "timeout_s": timeout_s}
    response = await gateway.http.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    assert started(gateway)[-1].timeout_ms == timeout_ms


async def test_null_timeout_s_is_no_deadline(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order", "timeout_s": None})
    assert response.status_code == 201, response.text
    assert started(gateway)[-1].timeout_ms == 0
    assert response.json()["deadline"] is None


async def test_a_traceparent_header_is_the_runs_trace_context(gateway: Gateway) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await gateway.http.post(
        "/v1/runs",
        json={"function": "order", "input": ORDER},
        headers={"traceparent": parent, "tracestate": "vendor=1"},
    )
    assert response.status_code == 201, response.text
    [request] = started(gateway)[-1:]
    # No tracer provider in this process: the caller's context goes to the engine as it came.
    assert request.trace_context == {"traceparent": parent, "tracestate": "vendor=1"}
    plain = await gateway.http.post("/v1/runs", json={"function": "order", "input": ORDER})
    assert plain.status_code == 201
    assert started(gateway)[-1].trace_context == {}


async def test_wait_is_one_call_when_the_backend_waits_in_the_start(gateway: Gateway) -> None:
    async with echoing(gateway.memory):
        response = await gateway.http.post(
            "/v1/runs", params={"wait": 5}, json={"function": "echo", "input": {"x": 1}}
        )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"
    assert [request.wait_ms for request in started(gateway)] == [2000]  # START_WAIT_S
    assert requests(gateway.memory, "wait_run") == []


async def test_a_wait_longer_than_the_starts_goes_on_with_wait_run(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "START_WAIT_S", 0.05)
    response = await gateway.http.post(
        "/v1/runs", params={"wait": 0.15}, json={"function": "order", "input": ORDER}
    )
    assert response.status_code == 202, response.text
    assert [request.wait_ms for request in started(gateway)] == [50]
    assert [request.wait_ms for request in requests(gateway.memory, "wait_run")] == [100]


async def test_a_backend_that_does_not_wait_in_the_start_is_waited_for_after(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend from before ``StartRunRequest.wait_ms`` (an older engine) ignores it and
    answers ``waited`` false: the gateway then waits with ``wait_run``, as it did."""
    backend = gateway.memory.backend
    start = backend.start_run

    async def older(message: StartRunRequest) -> StartRunResponse:
        return await start(dataclasses.replace(message, wait_ms=0))

    monkeypatch.setattr(backend, "start_run", older)
    async with echoing(gateway.memory):
        response = await gateway.http.post(
            "/v1/runs", params={"wait": 5}, json={"function": "echo", "input": {"x": 1}}
        )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"
    assert [request.wait_ms for request in requests(gateway.memory, "wait_run")] == [5000]

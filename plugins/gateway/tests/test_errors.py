"""Every failure is ``{"error": {"code", "message", "details"?}}`` with the right status."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import MAX_PAYLOAD, Gateway
from drive import requests

from trine_core import (
    ConfigError,
    InvalidArgument,
    KeptSignalsFull,
    LeaseLost,
    PayloadTooLarge,
    RunFinished,
    RunNotFound,
    StorageError,
    TrineError,
    Unavailable,
    UnknownFunction,
)
from trine_gateway.app import BODY_SLACK_BYTES
from trine_gateway.errors import http_status

JSON = {"content-type": "application/json"}
RUN = "/v1/runs/01NOSUCHRUN0000000000000000"


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]  # type: ignore[no-any-return]


async def test_malformed_json(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", content=b'{"function": "order", ', headers=JSON)
    error(response, 400, "malformed_json")
    cancel = await gateway.http.post(f"{RUN}/cancel", content=b"{nope", headers=JSON)
    error(cancel, 400, "malformed_json")
    assert requests(gateway.memory, "start_run") == []


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"function": 5, "input": {}}, "function"),
        ({"input": {}}, "function"),
        ({"function": "", "input": {}}, "function"),
        ([1, 2], None),
        ("order", None),
    ],
)
async def test_wrong_or_missing_fields(gateway: Gateway, body: Any, key: str | None) -> None:
    response = await gateway.http.post("/v1/runs", json=body)
    problem = error(response, 400, "invalid_request")
    errors = problem["details"]["errors"]
    assert errors
    if key is not None:
        assert key in problem["message"]
        assert key in str(errors)
    assert requests(gateway.memory, "start_run") == []


@pytest.mark.parametrize("timeout_s", [0, -1, -0.5, 0.0, "soon", "-3", True, [5], {"s": 5}, 1e300])
async def test_bad_timeout_s(gateway: Gateway, timeout_s: Any) -> None:
    response = await gateway.http.post(
        "/v1/runs", json={"function": "order", "input": 1, "timeout_s": timeout_s}
    )
    problem = error(response, 400, "invalid_request")
    assert "timeout_s" in problem["message"]
    assert requests(gateway.memory, "start_run") == []


async def test_empty_body_is_invalid(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs")
    error(response, 400, "invalid_request")


@pytest.mark.parametrize("wait", ["0", "-1", "301", "soon"])
async def test_bad_wait_values(gateway: Gateway, wait: str) -> None:
    response = await gateway.http.post(
        "/v1/runs", params={"wait": wait}, json={"function": "order"}
    )
    problem = error(response, 400, "invalid_request")
    assert "wait" in problem["message"]
    assert requests(gateway.memory, "start_run") == []
    read = await gateway.http.get(f"{RUN}", params={"wait": wait})
    error(read, 400, "invalid_request")
    cancel = await gateway.http.post(f"{RUN}/cancel", params={"wait": wait})
    error(cancel, 400, "invalid_request")


async def test_unknown_function_lists_the_known_ones(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "nope", "input": {}})
    problem = error(response, 404, "unknown_function")
    assert problem["details"] == {"function": "nope", "known": ["echo", "order"]}


async def test_input_over_the_payload_limit_is_the_engines_call(gateway: Gateway) -> None:
    """Under the outer body limit, the backend judges the input bytes themselves."""
    response = await gateway.http.post(
        "/v1/runs", json={"function": "order", "input": "x" * (MAX_PAYLOAD + 1)}
    )
    error(response, 413, "payload_too_large")
    assert len(requests(gateway.memory, "start_run")) == 1


async def test_body_over_the_request_limit_is_refused_before_the_backend(gateway: Gateway) -> None:
    big = "x" * (MAX_PAYLOAD + BODY_SLACK_BYTES + 1)
    response = await gateway.http.post("/v1/runs", json={"function": "order", "input": big})
    problem = error(response, 413, "payload_too_large")
    assert problem["details"] == {"limit": MAX_PAYLOAD + BODY_SLACK_BYTES}
    assert requests(gateway.memory, "start_run") == []


async def test_body_over_the_limit_without_content_length(gateway: Gateway) -> None:
    big = b'{"function": "order", "input": "' + b"x" * (MAX_PAYLOAD + BODY_SLACK_BYTES) + b'"}'

    async def chunks() -> Any:
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    response = await gateway.http.post("/v1/runs", content=chunks(), headers=JSON)
    error(response, 413, "payload_too_large")
    assert requests(gateway.memory, "start_run") == []


async def test_unknown_run(gateway: Gateway) -> None:
    error(await gateway.http.get(RUN), 404, "run_not_found")
    error(await gateway.http.get(RUN, params={"wait": 1}), 404, "run_not_found")
    error(await gateway.http.get(f"{RUN}/journal"), 404, "run_not_found")
    error(await gateway.http.post(f"{RUN}/cancel"), 404, "run_not_found")
    error(await gateway.http.post(f"{RUN}/cancel", params={"wait": 1}), 404, "run_not_found")
    error(await gateway.http.post(f"{RUN}/signals/go"), 404, "run_not_found")
    error(await gateway.http.get(f"{RUN}/events"), 404, "run_not_found")


async def test_unknown_route(gateway: Gateway) -> None:
    problem = error(await gateway.http.get("/v2/nothing"), 404, "not_found")
    assert "/v2/nothing" in problem["message"]
    error(await gateway.http.get(f"{RUN}/unknown"), 404, "not_found")


async def test_wrong_method(gateway: Gateway) -> None:
    response = await gateway.http.delete("/v1/runs")
    error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    error(await gateway.http.put(f"{RUN}/cancel"), 405, "method_not_allowed")


async def test_unexpected_exception_is_a_bare_500(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.memory.fail_with = RuntimeError("secret internals")
    response = await gateway.http.get("/v1/functions")
    problem = error(response, 500, "internal")
    assert problem == {"code": "internal", "message": "internal error"}
    assert "secret" not in response.text
    logged = capsys.readouterr()
    assert "secret internals" in logged.out + logged.err  # logged, with the traceback


async def test_backend_errors_keep_their_code_and_status(gateway: Gateway) -> None:
    gateway.memory.fail_with = Unavailable("engine unreachable", peer="engine")
    problem = error(await gateway.http.get("/v1/runs"), 503, "unavailable")
    assert problem["message"] == "engine unreachable"
    assert problem["details"] == {"peer": "engine"}


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        (InvalidArgument, 400),
        (UnknownFunction, 404),
        (PayloadTooLarge, 413),
        (RunNotFound, 404),
        (RunFinished, 409),
        (KeptSignalsFull, 409),
        (LeaseLost, 409),
        (Unavailable, 503),
        (ConfigError, 500),
        (StorageError, 503),
        (TrineError, 500),
    ],
)
def test_the_gateway_maps_every_error_code_to_its_http_status(
    error_type: type[TrineError], status: int
) -> None:
    assert http_status(error_type("x")) == status


async def test_damaged_storage_is_a_503_with_a_generic_message(gateway: Gateway) -> None:
    gateway.memory.fail_with = StorageError("the database is damaged: reads failed")
    problem = error(await gateway.http.get("/v1/runs"), 503, "storage_error")
    assert problem["message"] == "the database is damaged: reads failed"

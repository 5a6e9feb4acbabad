"""Request hygiene (issue 14): bad input is a 400 with its code, never a 500 nor a silent 200,
and the OpenAPI document states each rule the server enforces."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import structlog
from conftest import MAX_PAYLOAD, Gateway, start
from drive import FUNCTIONS, requests
from structlog.testing import LogCapture
from test_errors import JSON, error

from trine_core import MAX_PAYLOAD_BYTES, ConfigError, Settings
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.body import DEFAULT_DEPTH, too_deep
from trine_gateway.routes import MAX_IDEMPOTENCY_KEY
from trine_gateway.settings import HTTP_ADDR, MAX_JSON_DEPTH


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [DEFAULT_DEPTH + 1, 1000, 20_000])
async def test_deep_input_is_malformed_json(gateway: Gateway, depth: int) -> None:
    body = b'{"function": "order", "input": ' + nested(depth) + b"}"
    problem = error(
        await gateway.http.post("/v1/runs", content=body, headers=JSON), 400, "malformed_json"
    )
    assert f"{DEFAULT_DEPTH} arrays and objects (gateway.max_json_depth)" in problem["message"]
    assert requests(gateway.memory, "start_run") == []


async def test_input_at_the_depth_limit_is_accepted(gateway: Gateway) -> None:
    # the body's own object is one level: the input may use the rest
    body = b'{"function": "order", "input": ' + nested(DEFAULT_DEPTH - 1) + b"}"
    response = await gateway.http.post("/v1/runs", content=body, headers=JSON)
    assert response.status_code == 201, response.text


async def test_a_lower_max_json_depth_refuses_a_shallower_body() -> None:
    """``[gateway] max_json_depth`` = 8: a body 9 deep (input and signal payload alike) is 400
    malformed_json naming the setting; 8 deep is taken; the default would take both."""
    settings = Settings(
        {HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: MAX_PAYLOAD, MAX_JSON_DEPTH: 8}
    )
    memory = MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS)
    lifecycle = Lifecycle()
    server = GatewayServer(
        create_app(memory.backend, settings, lambda: True), "127.0.0.1:0", lifecycle
    )
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            body = b'{"function": "order", "input": ' + nested(8) + b"}"  # 9 deep
            problem = error(
                await http.post("/v1/runs", content=body, headers=JSON), 400, "malformed_json"
            )
            assert (
                "nested deeper than 8 arrays and objects (gateway.max_json_depth)"
                in problem["message"]
            )
            assert requests(memory, "start_run") == []
            body = b'{"function": "order", "input": ' + nested(7) + b"}"  # 8 deep
            started = await http.post("/v1/runs", content=body, headers=JSON)
            assert started.status_code == 201, started.text
            run_id = started.json()["id"]
            signal = f"/v1/runs/{run_id}/signals/go"
            error(await http.post(signal, content=nested(9), headers=JSON), 400, "malformed_json")
            assert (await http.post(signal, content=nested(8), headers=JSON)).status_code == 202
    finally:
        await server.stop()
    assert not too_deep(nested(9))  # the default takes it


def test_max_json_depth_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.max_json_depth: must be positive, got 0"):
        create_app(MemoryEngine().backend, Settings({MAX_JSON_DEPTH: 0}), lambda: True)


async def test_deep_signal_payload_is_malformed_json(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(
        f"/v1/runs/{run_id}/signals/go", content=nested(1000), headers=JSON
    )
    error(response, 400, "malformed_json")
    assert requests(gateway.memory, "signal_run") == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"function": "order", "input": "\xff\xfe"}',
        b'{"function": "order", "input": "\xed\xa0\x80"}',  # an encoded surrogate
        b'{"function": "ord\xc3"}',
    ],
)
async def test_invalid_utf8_is_malformed_json(gateway: Gateway, body: bytes) -> None:
    problem = error(
        await gateway.http.post("/v1/runs", content=body, headers=JSON), 400, "malformed_json"
    )
    assert "UTF-8" in problem["message"]
    run_id = await start(gateway)
    signal = await gateway.http.post(f"/v1/runs/{run_id}/signals/go", content=body, headers=JSON)
    error(signal, 400, "malformed_json")


def test_brackets_inside_strings_do_not_count() -> None:
    assert not too_deep(b'{"a": "' + b"[" * 1000 + b'"}')
    assert not too_deep(b'["\\"' + b"{" * 1000 + b'"]')  # an escaped quote keeps the string open
    assert not too_deep(b"[" + b"[]," * 1000 + b"[]]")  # wide, not deep
    assert too_deep(b'["\\\\", ' + nested(DEFAULT_DEPTH) + b"]")  # an escaped backslash ends
    assert too_deep(nested(DEFAULT_DEPTH + 1))
    for limit in (1, 2, 8, 20):  # small enough for the leaf passes to take every level
        assert too_deep(b'{"a": ' + nested(limit) + b"}", limit)
        assert too_deep(nested(limit + 1), limit)
        assert not too_deep(nested(limit), limit)
        wide = b"[" + b"[]," * 100 + nested(limit - 1) + b"]"  # limit deep, 2 for limit 1
        assert too_deep(wide, limit) is (limit == 1)
    assert not too_deep(nested(DEFAULT_DEPTH))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"function": "order", "timeout_s": "5"}, "timeout_s"),
        ({"function": "order", "timeout_s": "5.5"}, "timeout_s"),
        ({"function": 7}, "function"),
    ],
)
async def test_a_string_is_not_a_number(gateway: Gateway, body: Any, field: str) -> None:
    problem = error(await gateway.http.post("/v1/runs", json=body), 400, "invalid_request")
    assert field in problem["message"]
    assert problem["details"]["errors"][0]["key"] == field
    assert requests(gateway.memory, "start_run") == []


async def test_a_number_is_still_a_number(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order", "timeout_s": 5})
    assert response.status_code == 201, response.text
    assert requests(gateway.memory, "start_run")[0].timeout_ms == 5000


async def test_strict_bodies_of_the_other_routes(gateway: Gateway) -> None:
    run_id = await start(gateway)
    moved = await gateway.http.post(f"/v1/runs/{run_id}/move", json={"build_id": 5})
    assert "build_id" in error(moved, 400, "invalid_request")["message"]
    cancelled = await gateway.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": 5})
    assert "reason" in error(cancelled, 400, "invalid_request")["message"]
    retried = await gateway.http.post(f"/v1/runs/{run_id}/retry", json=[1])
    error(retried, 400, "invalid_request")
    # no body, or null, is still no reason
    assert (await gateway.http.post(f"/v1/runs/{run_id}/cancel")).status_code in (200, 202)


@pytest.mark.parametrize(
    "token", ["bogus", "01" * 13 + "0", "01ABCDEFGHJKMNPQRSTVWXYZ0I", "x" * 5000]
)
async def test_a_bogus_page_token_is_refused(gateway: Gateway, token: str) -> None:
    await start(gateway)
    response = await gateway.http.get("/v1/runs", params={"page_token": token})
    problem = error(response, 400, "invalid_argument")
    assert "page_token" in problem["message"]
    assert len(response.content) < 1000  # the token is not echoed whole


async def test_a_real_page_token_pages(gateway: Gateway) -> None:
    ids = [await start(gateway) for _ in range(3)]
    page = (await gateway.http.get("/v1/runs", params={"limit": 2})).json()
    assert [run["id"] for run in page["runs"]] == ids[:2]
    token = page["next_page_token"]
    rest = (await gateway.http.get("/v1/runs", params={"page_token": token})).json()
    assert [run["id"] for run in rest["runs"]] == ids[2:]


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("k" * (MAX_IDEMPOTENCY_KEY + 1), f"{MAX_IDEMPOTENCY_KEY + 1} characters"),
        ("caf\xe9", "outside printable ASCII"),  # latin-1 on the wire
        ("tab\there", "outside printable ASCII"),
    ],
)
async def test_idempotency_key_rules(gateway: Gateway, key: str, rule: str) -> None:
    headers = {"Idempotency-Key": key.encode("latin-1")}
    response = await gateway.http.post("/v1/runs", json={"function": "order"}, headers=headers)
    problem = error(response, 400, "invalid_argument")
    assert "Idempotency-Key" in problem["message"]
    assert f"1 to {MAX_IDEMPOTENCY_KEY} printable ASCII" in problem["message"]
    assert rule in problem["message"]
    assert requests(gateway.memory, "start_run") == []


async def test_a_utf8_idempotency_key_is_refused(gateway: Gateway) -> None:
    headers = {"Idempotency-Key": "clé".encode()}
    response = await gateway.http.post("/v1/runs", json={"function": "order"}, headers=headers)
    error(response, 400, "invalid_argument")


async def test_the_longest_idempotency_key_is_accepted(gateway: Gateway) -> None:
    key = "~ " + "k" * (MAX_IDEMPOTENCY_KEY - 2)
    first = await gateway.http.post(
        "/v1/runs", json={"function": "order"}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    assert first.json()["idempotency_key"] == key


async def test_options_on_runs_lists_get_and_post(gateway: Gateway) -> None:
    response = await gateway.http.options("/v1/runs")
    assert response.status_code == 204
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST", "OPTIONS"}


async def test_the_openapi_states_what_the_server_enforces(gateway: Gateway) -> None:
    schema = (await gateway.http.get("/schema/openapi.json")).json()

    def parameter(path: str, method: str, name: str) -> dict[str, Any]:
        found = [p for p in schema["paths"][path][method]["parameters"] if p["name"] == name]
        return found[0]["schema"]  # type: ignore[no-any-return]

    for path, method in [("/v1/runs", "post"), ("/v1/runs/{run_id}", "get")]:
        assert parameter(path, method, "wait")["exclusiveMinimum"] == 0
    key = parameter("/v1/runs", "post", "Idempotency-Key")
    assert (key["minLength"], key["maxLength"]) == (1, MAX_IDEMPOTENCY_KEY)
    assert key["pattern"]
    assert parameter("/v1/runs/{run_id}/events", "get", "Last-Event-ID")["minimum"] == 0
    assert parameter("/v1/runs/{run_id}/events", "get", "after")["minimum"] == 0
    assert parameter("/v1/runs/{run_id}/signals/{name}", "post", "name")["pattern"]
    assert parameter("/v1/runs", "get", "page_token")["pattern"]
    timeout = schema["components"]["schemas"]["StartRunBody"]["properties"]["timeout_s"]
    assert timeout["exclusiveMinimum"] == 0
    events = schema["paths"]["/v1/runs/{run_id}/events"]["get"]
    assert {"400", "404", "410"} <= set(events["responses"])  # 410: retention deleted the run
    assert "run_expired" in events["description"]
    signal = schema["paths"]["/v1/runs/{run_id}/signals/{name}"]["post"]
    assert "409" in signal["responses"]
    assert "kept_signals_full" in signal["description"]
    run = schema["components"]["schemas"]["RunOut"]["properties"]
    assert run["kept_signals"]["type"] == "array"


async def test_one_key_with_another_request_is_an_idempotency_conflict(gateway: Gateway) -> None:
    key = {"Idempotency-Key": "order-42"}
    body = {"function": "order", "input": {"n": 1}, "timeout_s": 60}
    first = await gateway.http.post("/v1/runs", json=body, headers=key)
    assert first.status_code == 201, first.text
    same = await gateway.http.post("/v1/runs", json=body, headers=key)
    assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])
    for change, what in [
        ({"input": {"n": 2}}, "another input"),
        ({"timeout_s": 61}, "another timeout"),
        ({"function": "echo"}, "function 'order', not 'echo'"),
    ]:
        response = await gateway.http.post("/v1/runs", json={**body, **change}, headers=key)
        problem = error(response, 422, "idempotency_conflict")
        assert what in problem["message"]
        assert problem["details"] == {"key": "order-42", "run_id": first.json()["id"]}


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n",
        b"GET /v1/runs HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
        b"\x00\x01\x02 nonsense\r\n\r\n",
    ],
)
async def test_a_request_that_is_not_http_gets_a_json_400(gateway: Gateway, head: bytes) -> None:
    """uvicorn answers these before the app: in the API's error shape too."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), answer
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower()
    problem = json.loads(body)["error"]
    assert problem["code"] == "malformed_request"
    assert problem["message"]


class Announcing(LogCapture):
    """The gateway's log records, and an event set by the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.logged = asyncio.Event()

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        self.logged.set()
        return super().__call__(logger, method_name, event_dict)


async def test_a_client_gone_mid_body_is_no_server_error(gateway: Gateway) -> None:
    """The client announced 100 bytes, sent 2 and closed: litestar raises a 500-status
    exception, which was logged as an error ("request failed") and counted as a 500."""
    capture = Announcing()
    previous = structlog.get_config()["processors"]
    structlog.configure(processors=[capture])
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
        writer.write(
            b"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(capture.logged.wait(), 10)
    finally:
        structlog.configure(processors=previous)
    [record] = capture.entries
    assert (record["log_level"], record["event"]) == (
        "info",
        "client closed its connection mid-request",
    )
    assert record["request"] == "POST /v1/runs"

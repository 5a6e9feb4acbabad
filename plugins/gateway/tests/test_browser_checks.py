"""Browser-safe defaults (issue 13): the ``Host``, ``Content-Type`` and ``Origin`` checks, CORS
only for the configured origins, and the refusal to serve the network without tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from conftest import MAX_PAYLOAD, Gateway, Readiness, start
from drive import FUNCTIONS

from trine_core import MAX_PAYLOAD_BYTES, ConfigError, Settings
from trine_core.testing.memory import MemoryEngine
from trine_core.tls import is_loopback
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.browser import (
    BrowserPolicy,
    check_listen_address,
    is_json,
)
from trine_gateway.settings import ALLOWED_HOSTS, CORS_ORIGINS, HTTP_ADDR
from trine_proto.trine.v1 import ListRunsRequest

PAGE = "https://app.example.com"


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def count_runs(memory: MemoryEngine) -> int:
    return len((await memory.backend.list_runs(ListRunsRequest(limit=100))).runs)


@asynccontextmanager
async def served(**values: Any) -> AsyncIterator[tuple[httpx.AsyncClient, MemoryEngine]]:
    """A gateway over a fresh in-memory engine with these settings (by name: ``cors_origins``)."""
    by_name = {setting.name: setting for setting in (ALLOWED_HOSTS, CORS_ORIGINS, HTTP_ADDR)}
    settings = Settings(
        {
            HTTP_ADDR: "127.0.0.1:0",
            MAX_PAYLOAD_BYTES: MAX_PAYLOAD,
            **{by_name[name]: value for name, value in values.items()},
        }
    )
    memory = MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS)
    lifecycle = Lifecycle()
    app = create_app(memory.backend, settings, Readiness(), lifecycle=lifecycle)
    server = GatewayServer(app, "127.0.0.1:0", lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield http, memory
    finally:
        await server.stop()


# -- Content-Type --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_body_that_is_not_json_is_refused_and_starts_nothing(
    gateway: Gateway, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await gateway.http.post(
        "/v1/runs", content=b'{"function": "order"}', headers=headers
    )
    assert response.status_code == 415, response.text
    assert error_code(response) == "unsupported_media_type"
    assert "application/json" in response.json()["error"]["message"]
    assert await count_runs(gateway.memory) == 0


@pytest.mark.parametrize("encoding", ["gzip", "br", "Deflate"])
async def test_a_compressed_body_is_refused_naming_its_encoding(
    gateway: Gateway, encoding: str
) -> None:
    """Nothing decompresses it: read as JSON, it was refused as malformed at byte 0."""
    headers = {"content-type": "application/json", "content-encoding": encoding}
    response = await gateway.http.post("/v1/runs", content=b"\x1f\x8b\x08\x00", headers=headers)
    assert response.status_code == 415, response.text
    assert error_code(response) == "unsupported_media_type"
    assert f"Content-Encoding: {encoding.lower()}" in response.json()["error"]["message"]
    assert await count_runs(gateway.memory) == 0


async def test_an_identity_encoding_is_no_encoding(gateway: Gateway) -> None:
    headers = {"content-type": "application/json", "content-encoding": "identity"}
    response = await gateway.http.post(
        "/v1/runs", content=b'{"function": "order"}', headers=headers
    )
    assert response.status_code == 201, response.text


async def test_a_post_without_a_body_says_the_body_is_missing(gateway: Gateway) -> None:
    """litestar's words were "body: 'data'" (a KeyError's)."""
    response = await gateway.http.post("/v1/runs", headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "body: missing (send a JSON object" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_with_or_without_charset_is_accepted(
    gateway: Gateway, content_type: str
) -> None:
    response = await gateway.http.post(
        "/v1/runs", content=b'{"function": "order"}', headers={"content-type": content_type}
    )
    assert response.status_code == 201, response.text


async def test_a_signal_or_cancel_with_a_text_body_is_refused(gateway: Gateway) -> None:
    run_id = await start(gateway)
    text = {"content-type": "text/plain"}
    signal = await gateway.http.post(f"/v1/runs/{run_id}/signals/go", content=b"1", headers=text)
    cancel = await gateway.http.post(f"/v1/runs/{run_id}/cancel", content=b"{}", headers=text)
    assert [signal.status_code, cancel.status_code] == [415, 415]
    assert (await gateway.http.get(f"/v1/runs/{run_id}")).json()["status"] == "pending"


async def test_an_empty_body_needs_no_content_type(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text


def test_is_json() -> None:
    assert is_json("application/json")
    assert is_json(" application/json ; charset=UTF-8")
    assert not is_json("text/plain")
    assert not is_json("application/jsonx")
    assert not is_json("")


# -- Host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:7480", "127.0.0.1:1", "[::1]:80"])
async def test_loopback_hosts_are_answered(gateway: Gateway, host: str) -> None:
    response = await gateway.http.get("/v1/runs", headers={"host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7480", "localhost.evil.example"])
async def test_a_foreign_host_is_refused(gateway: Gateway, host: str) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, but the browser sends it."""
    for path in ("/v1/runs", "/ui/runs", "/schema/openapi.json"):
        response = await gateway.http.get(path, headers={"host": host})
        assert response.status_code == 400, (path, response.text)
        assert error_code(response) == "invalid_host"
        assert "allowed_hosts" in response.json()["error"]["message"]
    started = await gateway.http.post(
        "/v1/runs", json={"function": "order"}, headers={"host": host}
    )
    assert started.status_code == 400
    assert await count_runs(gateway.memory) == 0


async def test_healthz_answers_any_host(gateway: Gateway) -> None:
    response = await gateway.http.get("/healthz", headers={"host": "10.1.2.3:7480"})
    assert response.status_code == 200


async def test_allowed_hosts_add_names() -> None:
    hosts = ("trine.internal", "api.example.com:8443", "*.svc.local")
    async with served(allowed_hosts=hosts) as (http, _):
        for host, status in [
            ("trine.internal", 200),
            ("trine.internal:7480", 200),
            ("api.example.com:8443", 200),
            ("api.example.com:80", 400),
            ("gw.ns.svc.local:7480", 200),
            ("svc.local.evil", 400),
        ]:
            response = await http.get("/v1/runs", headers={"host": host})
            assert response.status_code == status, host


async def test_a_star_allows_any_host() -> None:
    async with served(allowed_hosts=("*",)) as (http, _):
        response = await http.get("/v1/runs", headers={"host": "whatever.example"})
        assert response.status_code == 200


def test_the_listen_address_is_a_name_unless_a_wildcard() -> None:
    named = BrowserPolicy.of("10.0.0.5:7480")
    assert named.host_allowed("10.0.0.5:7480")
    assert named.host_allowed("localhost")
    assert not named.host_allowed("10.0.0.6:7480")
    v6 = BrowserPolicy.of("[fd00::2]:7480")
    assert v6.host_allowed("[fd00::2]:7480")
    wildcard = BrowserPolicy.of("0.0.0.0:7480")
    assert not wildcard.host_allowed("0.0.0.0:7480")
    assert not wildcard.host_allowed("")
    assert BrowserPolicy.of("127.0.0.1:1", allowed_hosts=["fd00::2"]).host_allowed("[fd00::2]:1")


# -- Origin --------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
async def test_a_state_changing_request_from_a_foreign_page_is_refused(
    gateway: Gateway, origin: str
) -> None:
    run_id = await start(gateway)
    headers = {"origin": origin}
    started = await gateway.http.post("/v1/runs", json={"function": "order"}, headers=headers)
    cancel = await gateway.http.post(f"/v1/runs/{run_id}/cancel", headers=headers)
    assert [started.status_code, cancel.status_code] == [403, 403], started.text
    assert error_code(started) == "forbidden_origin"
    assert "cors_origins" in started.json()["error"]["message"]
    assert await count_runs(gateway.memory) == 1
    assert (await gateway.http.get(f"/v1/runs/{run_id}")).json()["status"] == "pending"
    # reading is not state-changing: the browser's same-origin policy keeps the answer from it
    assert (await gateway.http.get("/v1/runs", headers=headers)).status_code == 200


async def test_a_same_origin_post_works(gateway: Gateway) -> None:
    origin = gateway.server.url  # http://127.0.0.1:PORT, the Host httpx sends
    response = await gateway.http.post(
        "/v1/runs", json={"function": "order"}, headers={"origin": origin}
    )
    assert response.status_code == 201, response.text
    assert "access-control-allow-origin" not in response.headers


async def test_behind_a_proxy_the_forwarded_host_is_the_own_origin(gateway: Gateway) -> None:
    headers = {"origin": "https://trine.example.com", "x-forwarded-host": "trine.example.com"}
    response = await gateway.http.post("/v1/runs", json={"function": "order"}, headers=headers)
    assert response.status_code == 201, response.text


# -- CORS ----------------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }


async def test_no_cors_unless_configured(gateway: Gateway) -> None:
    answer = await gateway.http.options("/v1/runs", headers=preflight(PAGE))
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers
    read = await gateway.http.get("/v1/runs", headers={"origin": PAGE})
    assert read.status_code == 200
    assert not [name for name in read.headers if name.startswith("access-control-")]


async def test_cors_for_the_configured_origins_only() -> None:
    async with served(cors_origins=(PAGE,)) as (http, memory):
        answer = await http.options("/v1/runs", headers=preflight(PAGE))
        assert answer.status_code == 204, answer.text
        assert answer.headers["access-control-allow-origin"] == PAGE
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed
        assert "content-type" in allowed
        assert answer.headers["vary"] == "Origin"

        other = await http.options("/v1/runs", headers=preflight("https://evil.example"))
        assert other.status_code == 403
        assert "access-control-allow-origin" not in other.headers

        started = await http.post("/v1/runs", json={"function": "order"}, headers={"origin": PAGE})
        assert started.status_code == 201, started.text
        assert started.headers["access-control-allow-origin"] == PAGE
        refused = await http.post(
            "/v1/runs", json={"function": "order"}, headers={"origin": "https://evil.example"}
        )
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        assert await count_runs(memory) == 1


def test_a_cors_origin_must_be_an_origin() -> None:
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x"):
        with pytest.raises(ConfigError, match="cors_origins"):
            BrowserPolicy.of("127.0.0.1:1", cors_origins=[bad])
    policy = BrowserPolicy.of("127.0.0.1:1", cors_origins=["HTTPS://App.Example.com/"])
    assert policy.cors_allowed("https://app.example.com")


# -- the console keeps its own checks ------------------------------------------------------------


async def test_console_forms_are_not_refused_for_their_form_type(gateway: Gateway) -> None:
    form = {"function": "order", "input": "{}"}
    response = await gateway.http.post("/ui/runs", data=form)
    assert response.status_code == 303, response.text
    foreign = await gateway.http.post("/ui/runs", data=form, headers={"origin": PAGE})
    assert foreign.status_code == 403
    assert foreign.headers["content-type"].startswith("text/html")
    opaque = await gateway.http.post("/ui/runs", data=form, headers={"origin": "null"})
    assert opaque.status_code == 403  # a sandboxed frame's or a data: page's form


# -- listening on the network ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("fd00::2", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("address", ["0.0.0.0:7480", "[::]:7480", "192.0.2.2:7480"])
def test_the_network_without_tokens_is_refused_in_one_line(address: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_listen_address(address, "", insecure=False)
    message = caught.value.message
    assert "\n" not in message
    assert address in message
    assert "--auth-tokens-file" in message
    assert "--insecure" in message


def test_loopback_tokens_or_insecure_may_listen() -> None:
    assert check_listen_address("127.0.0.1:7480", "", insecure=False) is False
    assert check_listen_address("localhost:7480", "", insecure=False) is False
    assert check_listen_address("0.0.0.0:7480", "/etc/trine/tokens.toml", insecure=False) is False
    assert check_listen_address("0.0.0.0:7480", "", insecure=True) is True  # warned about

"""Serving: the port, shutdown with open streams and long-polls, OpenAPI, the role and plugin."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import structlog
from conftest import Gateway, start
from drive import FUNCTIONS
from sse_client import SseReader

from trine_core import Backend, ConfigError, RoleContext, RoleRegistry, Settings
from trine_core.contracts import Contracts
from trine_core.testing import occupied_port
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayRole, GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR, trine_register_roles
from trine_gateway.server import bind


async def test_port_in_use_is_a_config_error() -> None:
    with occupied_port() as port:
        address = f"127.0.0.1:{port}"
        app = create_app(MemoryEngine().backend, Settings({HTTP_ADDR: address}), lambda: True)
        server = GatewayServer(app, address, Lifecycle())
        with pytest.raises(ConfigError) as caught:
            await server.start()
    assert caught.value.message == (
        f"gateway: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert not server.serving
    await server.stop()  # nothing to stop: fine


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999"])
async def test_malformed_address_is_a_config_error(address: str) -> None:
    app = create_app(MemoryEngine().backend, Settings(), lambda: True)
    with pytest.raises(ConfigError, match="http_addr"):
        await GatewayServer(app, address, Lifecycle()).start()


async def test_stop_ends_open_streams_and_long_polls_promptly(gateway: Gateway) -> None:
    run_id = await start(gateway)
    poll = asyncio.create_task(gateway.http.get(f"/v1/runs/{run_id}", params={"wait": 300}))
    await gateway.memory.called("wait_run")
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        reader = SseReader(response)
        await reader.read(limit=1)
        stopping = asyncio.create_task(gateway.server.stop())
        rest = await asyncio.wait_for(reader.read(), 5)
    assert rest.ended
    polled = await asyncio.wait_for(poll, 5)
    assert polled.status_code == 200
    assert polled.json()["status"] == "pending"
    await asyncio.wait_for(stopping, 10)
    assert gateway.memory.open_subscriptions == 0
    assert gateway.lifecycle.open_tasks == 0
    assert not gateway.server.serving
    with pytest.raises(httpx.ConnectError):
        await gateway.http.get("/healthz")


async def test_openapi_schema_lists_the_api(gateway: Gateway) -> None:
    response = await gateway.http.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "trine"
    assert {
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/journal",
        "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/signals/{name}",
        "/v1/functions",
        "/healthz",
    } <= set(schema["paths"])
    start = schema["paths"]["/v1/runs"]["post"]
    assert {"200", "201", "202", "400", "404", "413"} <= set(start["responses"])
    components = schema["components"]["schemas"]
    assert {"StartRunBody", "RunOut", "ErrorBody", "SignalOut", "WaitOut"} <= set(components)
    assert "timeout_s" in components["StartRunBody"]["properties"]
    assert {"cancel_requested", "cancel_deadline", "parent_run_id", "deadline", "waiting"} <= set(
        components["RunOut"]["properties"]
    )
    cancel = schema["paths"]["/v1/runs/{run_id}/cancel"]["post"]
    assert {"200", "202", "404", "409"} <= set(cancel["responses"])
    assert "wait" in {p["name"] for p in cancel["parameters"]}
    signal = schema["paths"]["/v1/runs/{run_id}/signals/{name}"]["post"]
    assert signal["summary"]
    assert "delivered" in signal["description"]
    assert {"202", "400", "404", "409", "413"} <= set(signal["responses"])
    assert "requestBody" in signal
    ui = await gateway.http.get("/schema")
    assert ui.status_code == 200
    assert ui.headers["content-type"].startswith("text/html")


def backend_needs() -> Contracts:
    """The gateway's one need, wired to an in-memory engine."""
    needs = Contracts()
    needs.add(Backend, MemoryEngine(functions=FUNCTIONS).backend)
    return needs


class OtherRole:
    name = "engine"

    def __init__(self) -> None:
        self.is_ready = True

    def ready(self) -> bool:
        return self.is_ready


async def test_the_role_serves_and_reports_readiness() -> None:
    registry = RoleRegistry()
    trine_register_roles(registry)
    factory = registry.get("gateway")
    assert factory is GatewayRole
    role = GatewayRole(Settings({HTTP_ADDR: "127.0.0.1:0"}))
    assert (role.name, role.serves, role.needs) == ("gateway", frozenset(), frozenset({Backend}))
    assert not role.ready()
    engine = OtherRole()
    context = RoleContext(
        role.settings,
        structlog.get_logger("test"),
        backend_needs(),
        ready=lambda: engine.ready() and role.ready(),
    )
    await role.start(context)
    try:
        assert role.ready()
        async with httpx.AsyncClient(base_url=role.url) as http:
            assert (await http.get("/healthz")).status_code == 200
            engine.is_ready = False
            down = await http.get("/healthz")
            assert (down.status_code, down.json()) == (503, {"status": "unavailable"})
            engine.is_ready = True
            created = await http.post("/v1/runs", json={"function": "order"})
            assert created.status_code == 201
    finally:
        await role.stop()
    assert not role.ready()
    await role.stop()  # twice is fine
    assert Backend not in context.provided  # it serves no contract


async def test_the_role_names_a_port_in_use() -> None:
    with occupied_port() as port:
        address = f"127.0.0.1:{port}"
        role = GatewayRole(Settings({HTTP_ADDR: address}))
        context = RoleContext(role.settings, structlog.get_logger("test"), backend_needs())
        with pytest.raises(ConfigError, match=f"{address}: address already in use"):
            await role.start(context)
    assert not role.ready()
    await role.stop()


def test_listening_socket_is_tcp_so_connections_get_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on connections accepted from an IPPROTO_TCP socket; with
    proto 0 every keep-alive response stalled ~40 ms on the client's delayed ACK."""
    sock = bind("127.0.0.1:0")
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

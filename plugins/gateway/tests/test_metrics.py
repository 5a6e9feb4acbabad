"""The gateway's instruments (trine_gateway.metrics) and the observers' mounts: HTTP requests
timed by method, route template and status; open event streams counted; an app mounted by path."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from conftest import Gateway, start
from sse_client import SseReader

from trine_core import Settings
from trine_core.instruments import REGISTRY
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR


def requests(method: str, route: str, status: str) -> int:
    instrument = REGISTRY.get("trine_http_request_duration_seconds")
    assert instrument is not None
    found = [s for s in instrument.collect().samples if s.labels == (method, route, status)]
    return found[0].count if found else 0


def open_streams() -> float:
    instrument = REGISTRY.get("trine_sse_streams_open")
    assert instrument is not None
    return instrument.collect().samples[0].value


async def test_requests_are_timed_by_route_template_and_status(gateway: Gateway) -> None:
    created = requests("POST", "/v1/runs", "201")
    read = requests("GET", "/v1/runs/{run_id}", "200")
    missing = requests("GET", "/v1/runs/{run_id}", "404")
    unmatched = requests("GET", "unmatched", "404")
    run_id = await start(gateway)
    assert (await gateway.http.get(f"/v1/runs/{run_id}")).status_code == 200
    assert (await gateway.http.get("/v1/runs/nope")).status_code == 404
    assert (await gateway.http.get("/no/such/path")).status_code == 404
    assert requests("POST", "/v1/runs", "201") == created + 1
    assert requests("GET", "/v1/runs/{run_id}", "200") == read + 1
    assert requests("GET", "/v1/runs/{run_id}", "404") == missing + 1
    assert requests("GET", "unmatched", "404") == unmatched + 1


async def test_open_event_streams_are_counted(gateway: Gateway) -> None:
    run_id = await start(gateway)
    before = open_streams()
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        await SseReader(response).read(limit=1)
        assert open_streams() == before + 1
    await gateway.drive.complete(run_id, "done")
    for _ in range(500):
        if open_streams() == before:
            break
        await asyncio.sleep(0.01)
    assert open_streams() == before


async def test_an_observers_app_is_mounted_at_its_path() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mounted"})

    settings = Settings({HTTP_ADDR: "127.0.0.1:0"})
    lifecycle = Lifecycle()
    created = create_app(MemoryEngine().backend, settings, lambda: True, mounts={"/metrics": app})
    server = GatewayServer(created, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            answer = await http.get("/metrics")
            assert (answer.status_code, answer.text) == (200, "mounted")
            schema = (await http.get("/schema/openapi.json")).json()
        assert "/metrics" not in schema["paths"]
        assert requests("GET", "/metrics", "200") >= 1
    finally:
        await server.stop()

"""Fixtures: a fake backend, and the real gateway (uvicorn on an ephemeral port) in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fakes import FakeBackend

from trine_core import MAX_PAYLOAD_BYTES, Settings
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR

MAX_PAYLOAD = 1024


@dataclass
class Readiness:
    ready: bool = True

    def __call__(self) -> bool:
        return self.ready


@dataclass
class Gateway:
    backend: FakeBackend
    server: GatewayServer
    lifecycle: Lifecycle
    http: httpx.AsyncClient
    readiness: Readiness = field(default_factory=Readiness)


async def start(gateway: Gateway, function: str = "order") -> str:
    """Start a run of ``function`` through the API (no input); its id."""
    response = await gateway.http.post("/v1/runs", json={"function": function})
    run_id: str = response.json()["id"]
    return run_id


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(max_payload_bytes=MAX_PAYLOAD)


@pytest.fixture
def keepalive_s() -> float:
    return 15.0


@pytest.fixture
async def gateway(backend: FakeBackend, keepalive_s: float) -> AsyncIterator[Gateway]:
    settings = Settings({HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: MAX_PAYLOAD})
    lifecycle = Lifecycle()
    readiness = Readiness()
    app = create_app(backend, settings, readiness, lifecycle=lifecycle, keepalive_s=keepalive_s)
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield Gateway(backend, server, lifecycle, http, readiness)
    finally:
        await server.stop()

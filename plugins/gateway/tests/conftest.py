"""Fixtures: an in-memory engine (``trine_core.testing.memory``), a worker the test scripts
(:class:`drive.Driver`), and the real gateway (uvicorn on an ephemeral port) in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from drive import FUNCTIONS, Clock, Driver

from trine_core import MAX_PAYLOAD_BYTES, Settings
from trine_core.testing.memory import MemoryEngine
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
    memory: MemoryEngine
    drive: Driver
    clock: Clock
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
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryEngine:
    return MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS, clock=clock)


@pytest.fixture
def keepalive_s() -> float:
    return 15.0


@pytest.fixture
async def gateway(memory: MemoryEngine, clock: Clock, keepalive_s: float) -> AsyncIterator[Gateway]:
    settings = Settings({HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: MAX_PAYLOAD})
    lifecycle = Lifecycle()
    readiness = Readiness()
    app = create_app(
        memory.backend, settings, readiness, lifecycle=lifecycle, keepalive_s=keepalive_s
    )
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield Gateway(memory, Driver(memory), clock, server, lifecycle, http, readiness)
    finally:
        await server.stop()

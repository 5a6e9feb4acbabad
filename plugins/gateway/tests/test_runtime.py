"""The gateway booted by trine's runtime, from its entry point, behind a stand-in engine role
(an inline plugin serving an in-memory engine, with a worker of ``echo``)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

import httpx
from drive import FUNCTIONS, serve_echo

from trine_core import TARGET, Backend, RoleContext, RoleRegistry, Runtime, Settings, hookimpl
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayRole
from trine_gateway.plugin import HTTP_ADDR


class StandInEngine:
    name: ClassVar[str] = "engine"
    serves: ClassVar[frozenset[type]] = frozenset({Backend})
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.memory = MemoryEngine(functions=FUNCTIONS)
        self.worker: asyncio.Task[None] | None = None
        self.is_ready = True

    async def start(self, context: RoleContext) -> None:
        context.provide(Backend, self.memory.backend)
        self.worker = asyncio.create_task(serve_echo(self.memory))

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker

    def ready(self) -> bool:
        return self.is_ready


class EnginePlugin:
    @staticmethod
    @hookimpl
    def trine_register_roles(registry: RoleRegistry) -> None:
        registry.add_role("engine", StandInEngine)


async def test_runtime_boots_the_gateway_from_its_entry_point() -> None:
    settings = Settings({TARGET: "engine,gateway", HTTP_ADDR: "127.0.0.1:0"})
    runtime = Runtime(settings, extra_plugins=(EnginePlugin(),))
    await runtime.start()
    try:
        gateway = runtime.roles["gateway"]
        engine = runtime.roles["engine"]
        assert isinstance(gateway, GatewayRole)
        assert isinstance(engine, StandInEngine)
        assert runtime.ready()
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            body = {"function": "echo", "input": 2}
            created = await http.post("/v1/runs", params={"wait": 5}, json=body)
            assert created.status_code == 201
            assert created.json()["result"] == 2
            assert (await http.get("/healthz")).status_code == 200
            engine.is_ready = False
            assert (await http.get("/healthz")).status_code == 503
    finally:
        await runtime.stop()
    assert not gateway.ready()

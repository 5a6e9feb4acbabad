"""The gateway booted by trine's runtime, from its entry point, behind a stand-in engine role
(an inline plugin serving the fake backend)."""

from __future__ import annotations

from typing import ClassVar

import httpx
from fakes import FakeBackend

from trine_core import TARGET, Backend, RoleContext, RoleRegistry, Runtime, Settings, hookimpl
from trine_gateway import GatewayRole
from trine_gateway.plugin import HTTP_ADDR


class StandInEngine:
    name: ClassVar[str] = "engine"
    serves: ClassVar[frozenset[type]] = frozenset({Backend})
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.backend = FakeBackend()
        self.is_ready = True

    async def start(self, context: RoleContext) -> None:
        context.provide(Backend, self.backend)  # type: ignore[type-abstract]

    async def stop(self) -> None:
        pass

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
            created = await http.post("/v1/runs", json={"function": "echo", "input": 2})
            assert created.status_code == 201
            assert created.json()["result"] == 2
            assert (await http.get("/healthz")).status_code == 200
            engine.is_ready = False
            assert (await http.get("/healthz")).status_code == 503
    finally:
        await runtime.stop()
    assert not gateway.ready()

"""``GET /v1/workers``: the workers of every coordinator wired to the gateway (core's in-memory
``MemoryWorkerRegistry`` standing in for coordinators), and a gateway with none."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import httpx
from drive import FUNCTIONS, T0

from trine_core import (
    MAX_PAYLOAD_BYTES,
    TARGET,
    Backend,
    RoleContext,
    RoleRegistry,
    Runtime,
    Settings,
    Unavailable,
    WorkerRegistry,
    hookimpl,
)
from trine_core.testing.memory import MemoryEngine
from trine_core.testing.workers import MemoryWorkerRegistry
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR

T0_ISO = "2023-11-14T22:13:20.123Z"


@contextlib.asynccontextmanager
async def gateway(*registries: WorkerRegistry) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway over an in-memory engine and these coordinators' registries."""
    settings = Settings({HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: 1024})
    lifecycle = Lifecycle()
    app = create_app(
        MemoryEngine(functions=FUNCTIONS).backend,
        settings,
        lambda: True,
        lifecycle=lifecycle,
        registries=registries,
    )
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield http
    finally:
        await server.stop()


def coordinator(name: str) -> MemoryWorkerRegistry:
    return MemoryWorkerRegistry(name, clock=lambda: T0)


async def test_a_worker_with_its_functions_capacity_and_runs_in_flight() -> None:
    registry = coordinator("127.0.0.1:7481")
    await registry.connect("w-1", ["order", "echo"], 4, "0.1.0")
    run_id = await registry.dispatch("w-1", "order", "01RUN")
    await registry.step("w-1", run_id, "charge")
    await registry.dispatch("w-1", "echo", "02RUN")
    async with gateway(registry) as http:
        response = await http.get("/v1/workers")
    assert response.status_code == 200
    assert response.json() == {
        "workers": [
            {
                "worker_id": "w-1",
                "session_id": "session-1",
                "sdk_version": "0.1.0",
                "functions": ["order", "echo"],
                "max_concurrency": 4,
                "in_flight": 2,
                "free_slots": 2,
                "runs": [
                    {
                        "run_id": "01RUN",
                        "function": "order",
                        "since": T0_ISO,
                        "attempt": 1,
                        "step": "charge",
                    },
                    {
                        "run_id": "02RUN",
                        "function": "echo",
                        "since": T0_ISO,
                        "attempt": 1,
                        "step": None,
                    },
                ],
                "connected_at": T0_ISO,
                "last_heartbeat_at": T0_ISO,
                "draining": False,
                "coordinator": "127.0.0.1:7481",
                "build_id": None,
            }
        ],
        "unavailable": [],
    }


async def test_max_runs_bounds_the_runs_listed_not_the_count() -> None:
    registry = coordinator("c")
    await registry.connect("w-1", ["order"], 10, "")
    for _ in range(3):
        await registry.dispatch("w-1", "order")
    async with gateway(registry) as http:
        [worker] = (await http.get("/v1/workers", params={"max_runs": 1})).json()["workers"]
        assert (worker["in_flight"], len(worker["runs"])) == (3, 1)
        refused = await http.get("/v1/workers", params={"max_runs": 1001})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_request")
    assert [call.max_runs for call in registry.calls] == [1]


async def test_a_draining_worker_has_no_free_slots() -> None:
    registry = coordinator("c")
    await registry.connect("w-1", ["order"], 2, "")
    await registry.drain("w-1")
    async with gateway(registry) as http:
        [worker] = (await http.get("/v1/workers")).json()["workers"]
    assert (worker["draining"], worker["free_slots"], worker["sdk_version"]) == (True, 0, None)


async def test_every_coordinators_workers_are_listed_by_worker_id() -> None:
    east, west = coordinator("east:7481"), coordinator("west:7481")
    await east.connect("w-b", ["order"], 1, "")
    await west.connect("w-a", ["order"], 1, "")
    await west.connect("w-c", ["echo"], 1, "")
    async with gateway(east, west) as http:
        body = (await http.get("/v1/workers")).json()
    listed = [(w["worker_id"], w["coordinator"]) for w in body["workers"]]
    assert listed == [("w-a", "west:7481"), ("w-b", "east:7481"), ("w-c", "west:7481")]
    assert body["unavailable"] == []


async def test_a_coordinator_that_does_not_answer_is_named_and_the_others_listed() -> None:
    east, west = coordinator("east:7481"), coordinator("west:7481")
    await east.connect("w-1", ["order"], 1, "")
    west.fail_with = Unavailable("cannot reach grpc://west:7483: ConnectionRefusedError")
    async with gateway(east, west) as http:
        response = await http.get("/v1/workers")
        assert response.status_code == 200
        body = response.json()
        assert [w["worker_id"] for w in body["workers"]] == ["w-1"]
        assert body["unavailable"] == [
            {
                "code": "unavailable",
                "message": "cannot reach grpc://west:7483: ConnectionRefusedError",
            }
        ]
        east.fail_with = Unavailable("cannot reach grpc://east:7483: ConnectionRefusedError")
        down = await http.get("/v1/workers")
    assert down.status_code == 503
    assert down.json()["error"] == {
        "code": "unavailable",
        "message": "no coordinator answered (2 asked): cannot reach grpc://east:7483: "
        "ConnectionRefusedError",
    }


async def test_a_gateway_without_a_coordinator_answers_503_naming_the_fix() -> None:
    async with gateway() as http:
        response = await http.get("/v1/workers")
        assert (await http.get("/v1/functions")).status_code == 200  # the rest works
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["message"].startswith("no coordinator is wired to this gateway")
    assert "[connect] worker_registry" in error["message"]


async def test_openapi_documents_the_route_and_its_shapes() -> None:
    async with gateway() as http:
        schema = (await http.get("/schema/openapi.json")).json()
    route = schema["paths"]["/v1/workers"]["get"]
    assert route["tags"] == ["workers"]
    assert {"200", "400", "503"} <= set(route["responses"])
    assert [p["name"] for p in route["parameters"]] == ["max_runs"]
    components = schema["components"]["schemas"]
    assert {"WorkerListOut", "WorkerOut", "RunInFlightOut"} <= set(components)
    assert "free_slots" in components["WorkerOut"]["properties"]


# -- booted by the runtime -----------------------------------------------------------------------


class StandInEngine:
    name: ClassVar[str] = "engine"
    serves: ClassVar[frozenset[type]] = frozenset({Backend})
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.memory = MemoryEngine(functions=FUNCTIONS)

    async def start(self, context: RoleContext) -> None:
        context.provide(Backend, self.memory.backend)

    async def stop(self) -> None:
        pass

    def ready(self) -> bool:
        return True


class StandInCoordinator:
    name: ClassVar[str] = "coordinator"
    serves: ClassVar[frozenset[type]] = frozenset({WorkerRegistry})
    needs: ClassVar[frozenset[type]] = frozenset()
    registry = MemoryWorkerRegistry("local:7481")

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        await self.registry.connect("w-1", ["echo"], 2)
        context.provide(WorkerRegistry, self.registry)

    async def stop(self) -> None:
        pass

    def ready(self) -> bool:
        return True


class StandIns:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role("engine", StandInEngine)
        registry.add_role("coordinator", StandInCoordinator)


async def booted(target: str) -> Sequence[httpx.Response]:
    """``/v1/workers`` and ``/v1/functions`` of a runtime running ``target``."""
    settings = Settings({TARGET: target, HTTP_ADDR: "127.0.0.1:0"})
    runtime = Runtime(settings, extra_plugins=(StandIns(),))
    await runtime.start()
    try:
        url = runtime.roles["gateway"].url  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=url) as http:
            return await asyncio.gather(http.get("/v1/workers"), http.get("/v1/functions"))
    finally:
        await runtime.stop()


async def test_the_runtime_wires_a_coordinator_of_the_same_process() -> None:
    workers, _ = await booted("gateway,engine,coordinator")  # the gateway starts last
    assert [w["worker_id"] for w in workers.json()["workers"]] == ["w-1"]


async def test_the_runtime_boots_a_gateway_with_no_coordinator() -> None:
    workers, functions = await booted("engine,gateway")
    assert functions.status_code == 200
    assert workers.status_code == 503

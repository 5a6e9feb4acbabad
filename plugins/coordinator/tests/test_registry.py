"""The coordinator's ``WorkerRegistry`` (``trine_coordinator.registry``): the contract suite with
real worker streams in front of it, and what only a coordinator knows (the step a run is in, the
last heartbeat, how it names itself, where a split serves it)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from conftest import Harness, WorkerStream, ack, coordinator_context, dispatched, running

from trine_coordinator import CoordinatorRole
from trine_coordinator import plugin as coordinator_plugin
from trine_coordinator.admission import INSTANCE
from trine_coordinator.registry import coordinator_name
from trine_coordinator.service import WorkerService
from trine_coordinator.settings import COORDINATOR_ADDR, WORKER_ADDR
from trine_core import Backend, Settings, WorkerRegistry
from trine_core.testing import eventually, free_port
from trine_core.testing.contracts import WorkerRegistryContract, WorkerRegistrySubject
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    Command,
    Drain,
    FunctionSpec,
    ListWorkersRequest,
    Register,
    ReportRequest,
    StartRunRequest,
    StepStarted,
    WorkerInfo,
    WorkerReport,
)


class StreamWorkers:
    """The contract suite's ``Workers``: worker streams over gRPC to a running coordinator."""

    def __init__(self, harness: Harness, service: WorkerService) -> None:
        self.harness = harness
        self.service = service
        self.streams: dict[str, WorkerStream] = {}
        self.stack = contextlib.AsyncExitStack()

    async def connect(
        self,
        worker_id: str,
        functions: Sequence[str],
        max_concurrency: int,
        sdk_version: str,
        build_id: str = "",
    ) -> None:
        # One instance per id: connecting an id again is that worker reconnecting, which
        # replaces its session (another process with a live id would be refused).
        metadata = {INSTANCE: f"instance-of-{worker_id}"}
        stream = await self.stack.enter_async_context(self.harness.open(metadata))
        self.stack.push_async_callback(self._cancel, stream)  # before the stream's own exit
        await stream.send_request()
        worker = WorkerStream(stream)
        await worker.send(
            register=Register(
                worker_id=worker_id,
                functions=[FunctionSpec(name=name) for name in functions],
                max_concurrency=max_concurrency,
                sdk_version=sdk_version,
                build_id=build_id,
            )
        )
        reply = await worker.recv()
        assert reply is not None
        assert reply.registered is not None
        self.streams[worker_id] = worker

    @staticmethod
    async def _cancel(stream: Any) -> None:
        with contextlib.suppress(Exception):  # ended or cancelled already
            await stream.cancel()

    async def dispatch(self, worker_id: str, function: str) -> str:
        started = await self.harness.memory.backend.start_run(StartRunRequest(function=function))
        assert started.run is not None
        assert await dispatched(self.streams[worker_id]) == started.run.id
        return started.run.id

    async def finish(self, worker_id: str, run_id: str) -> None:
        worker = self.streams[worker_id]
        await worker.report(run_id)
        assert (await ack(worker)).response is not None  # the slot is free before the ack

    async def drain(self, worker_id: str) -> None:
        await self.streams[worker_id].send(drain=Drain())
        await eventually(lambda: self.service.sessions[worker_id].draining, "drain read")

    async def disconnect(self, worker_id: str) -> None:
        await self.streams.pop(worker_id).stream.end()
        await eventually(lambda: worker_id not in self.service.sessions, "session ended")


@contextlib.asynccontextmanager
async def registry() -> AsyncIterator[tuple[WorkerRegistry, StreamWorkers, CoordinatorRole]]:
    """A running coordinator's registry (as the runtime gets it from the role), and workers."""
    async with running() as (role, harness):
        assert role.service is not None
        assert role.registry is not None
        workers = StreamWorkers(harness, role.service)
        async with workers.stack:
            yield role.registry, workers, role


class TestCoordinatorWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    async def worker_registry(self) -> AsyncIterator[WorkerRegistrySubject]:
        async with registry() as (worker_registry, workers, _):
            yield WorkerRegistrySubject(worker_registry, workers)


async def only(worker_registry: WorkerRegistry) -> WorkerInfo:
    [worker] = (await worker_registry.list_workers(ListWorkersRequest())).workers
    return worker


async def test_a_run_shows_the_step_it_is_in_and_its_attempt() -> None:
    async with registry() as (worker_registry, workers, _):
        await workers.connect("w-1", ["f"], 2, "1.0")
        run_id = await workers.dispatch("w-1", "f")
        worker = workers.streams["w-1"]
        started = Command(step_started=StepStarted(index=0, name="charge", attempt=1))
        report = ReportRequest(run_id=run_id, lease_id=worker.leases[run_id], commands=[started])
        await worker.send(report=WorkerReport(request_id=1, report=report))
        await ack(worker)
        [run] = (await only(worker_registry)).runs
        assert (run.run_id, run.function, run.step, run.attempt) == (run_id, "f", "charge", 1)


async def test_the_last_heartbeat_moves_with_each_message_from_the_worker() -> None:
    async with registry() as (worker_registry, workers, role):
        await workers.connect("w-1", ["f"], 1, "")
        first = (await only(worker_registry)).last_heartbeat_at_ms
        await asyncio.sleep(0.02)
        await workers.streams["w-1"].heartbeat()
        assert role.service is not None
        session = role.service.sessions["w-1"]
        await eventually(lambda: session.last_heard_ms > first, "heartbeat read")
        assert (await only(worker_registry)).last_heartbeat_at_ms > first


async def test_a_coordinator_names_itself_by_its_worker_address() -> None:
    assert coordinator_name("10.0.0.7:7481") == "10.0.0.7:7481"
    assert coordinator_name("0.0.0.0:7481") == f"{socket.gethostname()}:7481"
    port = free_port()
    settings = Settings({WORKER_ADDR: f"127.0.0.1:{port}"})
    role = CoordinatorRole(settings)
    context = coordinator_context(settings, MemoryEngine().dispatcher)
    await role.start(context)
    try:
        answer = await context.provided.get(WorkerRegistry).list_workers(ListWorkersRequest())
        assert answer.coordinator == f"127.0.0.1:{port}"
    finally:
        await role.stop()


def test_a_split_serves_the_registry_at_its_coordinator_addr() -> None:
    settings = Settings({COORDINATOR_ADDR: "10.0.0.7:7000"})
    address = coordinator_plugin.trine_contract_address
    assert address(contract=WorkerRegistry, settings=settings) == "grpc://10.0.0.7:7000"
    assert address(contract=Backend, settings=settings) is None
    assert Settings()[COORDINATOR_ADDR] == "127.0.0.1:7483"

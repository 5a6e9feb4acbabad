"""A scripted Dispatcher and a raw worker stream, to test the coordinator alone over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality

from trine_coordinator import CoordinatorRole
from trine_coordinator.settings import HEARTBEAT_INTERVAL_MS, LEASE_TTL_MS, WORKER_ADDR
from trine_core import Dispatcher, LeaseLost, RoleContext, Settings, Unavailable, get_logger
from trine_core.contracts import Contracts
from trine_core.testing import free_port
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    FunctionSpec,
    Heartbeat,
    Lease,
    Register,
    RegisterFunctionsRequest,
    RegisterFunctionsResponse,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportAck,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    Run,
    RunCompleted,
    TakeWorkRequest,
    TakeWorkResponse,
    WorkerMessage,
    WorkerReport,
    WorkItem,
)


class FakeDispatcher:
    """Ready runs in a list; leases ``L-<run id>``; answers and refusals chosen by the test."""

    def __init__(self) -> None:
        self.ready: list[str] = []
        self.ready_changed = asyncio.Event()
        self.registered: list[RegisterFunctionsRequest] = []
        self.released: list[str] = []
        self.released_changed = asyncio.Event()
        self.reports: list[ReportRequest] = []
        self.lost_leases: set[str] = set()
        self.cancelling: set[str] = set()
        self.outcome = ReportOutcome.CONTINUE
        self.unavailable = False

    def add_ready(self, *run_ids: str) -> None:
        self.ready.extend(run_ids)
        self.ready_changed.set()

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        if self.unavailable:
            raise Unavailable("the engine is down")
        self.registered.append(message)
        return RegisterFunctionsResponse()

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        if not self.ready:
            self.ready_changed.clear()
            try:
                await asyncio.wait_for(self.ready_changed.wait(), message.wait_ms / 1000)
            except TimeoutError:
                return TakeWorkResponse()
        taken, self.ready = self.ready[: message.max_items], self.ready[message.max_items :]
        return TakeWorkResponse(
            items=[
                WorkItem(run=Run(id=run_id, function="f"), lease=Lease(id=f"L-{run_id}", attempt=1))
                for run_id in taken
            ]
        )

    async def report(self, message: ReportRequest) -> ReportResponse:
        self.reports.append(message)
        if message.lease_id in self.lost_leases:
            raise LeaseLost(f"lease {message.lease_id} is not current")
        return ReportResponse(outcome=self.outcome)

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        if self.unavailable:
            raise Unavailable("the engine is down")
        return RenewLeasesResponse(
            lost=[i for i in message.lease_ids if i in self.lost_leases],
            cancel_requested=[i for i in message.lease_ids if i in self.cancelling],
        )

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        self.released.extend(message.lease_ids)
        self.released_changed.set()
        return ReleaseLeasesResponse()

    async def wait_released(self, count: int) -> None:
        while len(self.released) < count:
            self.released_changed.clear()
            await asyncio.wait_for(self.released_changed.wait(), 5)


class WorkerStream:
    """A worker's side of ``WorkerService.Connect``, message by message."""

    def __init__(self, stream: Stream[WorkerMessage, CoordinatorMessage]) -> None:
        self.stream = stream

    async def send(self, **message: Any) -> None:
        await self.stream.send_message(WorkerMessage(**message))

    async def recv(self) -> CoordinatorMessage | None:
        return await asyncio.wait_for(self.stream.recv_message(), 5)

    async def register(self, worker_id: str = "w1", slots: int = 10) -> CoordinatorMessage:
        await self.send(
            register=Register(
                worker_id=worker_id, functions=[FunctionSpec(name="f")], max_concurrency=slots
            )
        )
        reply = await self.recv()
        assert reply is not None
        assert reply.registered is not None
        return reply

    async def heartbeat(self) -> None:
        await self.send(heartbeat=Heartbeat())

    async def report(self, run_id: str, request_id: int = 1) -> None:
        """Report that ``run_id`` completed, under the lease it was dispatched with."""
        await self.send(report=completed(run_id, request_id))


def completed(run_id: str, request_id: int) -> WorkerReport:
    return WorkerReport(
        request_id=request_id,
        report=ReportRequest(
            run_id=run_id,
            lease_id=f"L-{run_id}",
            commands=[Command(run_completed=RunCompleted(result=b"1"))],
        ),
    )


async def dispatched(worker: WorkerStream) -> str:
    message = await worker.recv()
    assert message is not None
    assert message.dispatch is not None, message
    return str(message.dispatch.run.id)


async def ack(worker: WorkerStream) -> ReportAck:
    message = await worker.recv()
    assert message is not None
    assert message.report_ack is not None, message
    return message.report_ack


class Harness:
    def __init__(self, dispatcher: FakeDispatcher, port: int) -> None:
        self.dispatcher = dispatcher
        self.port = port
        self.channels: list[Channel] = []

    def open(self) -> Any:
        channel = Channel("127.0.0.1", self.port)
        self.channels.append(channel)
        return channel.request(
            "/trine.v1.WorkerService/Connect",
            Cardinality.STREAM_STREAM,
            WorkerMessage,
            CoordinatorMessage,
        )

    @contextlib.asynccontextmanager
    async def worker(self, worker_id: str = "w1", slots: int = 10) -> AsyncIterator[WorkerStream]:
        """A worker's stream, opened and registered."""
        async with self.open() as stream:
            await stream.send_request()
            worker = WorkerStream(stream)
            await worker.register(worker_id, slots=slots)
            yield worker


def coordinator_context(settings: Settings, dispatcher: object) -> RoleContext:
    """What the runtime hands the coordinator role: its settings, and ``dispatcher`` as its one
    need."""
    needs = Contracts()
    needs.add(Dispatcher, dispatcher)  # type: ignore[type-abstract]
    return RoleContext(settings, get_logger("coordinator"), needs)


@contextlib.asynccontextmanager
async def running(
    *, heartbeat_ms: int = 1000, lease_ttl_ms: int = 3000
) -> AsyncIterator[tuple[CoordinatorRole, Harness]]:
    """A started coordinator role with its own timings, in front of a FakeDispatcher."""
    dispatcher = FakeDispatcher()
    port = free_port()
    settings = Settings(
        {
            WORKER_ADDR: f"127.0.0.1:{port}",
            HEARTBEAT_INTERVAL_MS: heartbeat_ms,
            LEASE_TTL_MS: lease_ttl_ms,
        }
    )
    role = CoordinatorRole(settings)
    await role.start(coordinator_context(settings, dispatcher))
    harness = Harness(dispatcher, port)
    try:
        yield role, harness
    finally:
        await role.stop()
        for channel in harness.channels:
            channel.close()


@pytest.fixture
def heartbeat_ms() -> int:
    """Heartbeat interval of the coordinator under test; a worker silent 5x this is gone."""
    return 1000


@pytest.fixture
async def coordinator(heartbeat_ms: int) -> AsyncIterator[Harness]:
    async with running(heartbeat_ms=heartbeat_ms) as (_, harness):
        yield harness

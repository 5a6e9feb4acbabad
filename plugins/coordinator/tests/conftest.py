"""The coordinator alone over real gRPC: ``MemoryEngine`` behind it, a raw worker stream in front.

``MemoryEngine`` (``trine_core.testing.memory``) is the reference in-memory engine that passes the
contract suites: the coordinator gets ``memory.dispatcher``; a test starts, cancels and reads runs
through ``memory.backend`` and sees what the coordinator sent the engine in ``memory.calls``. A
behaviour the engine does not have (a report that hangs, a take_work that raises once) is a
``Delegating`` subclass in the test that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality

from trine_coordinator import CoordinatorRole
from trine_coordinator.settings import (
    HEARTBEAT_INTERVAL_MS,
    LEASE_TTL_MS,
    MAX_WORKER_LOSSES,
    WORKER_ADDR,
)
from trine_core import (
    AUTH_TOKENS_FILE,
    Dispatcher,
    RoleContext,
    Settings,
    Transport,
    get_logger,
    report_each,
    take_work_polling,
)
from trine_core.contracts import Contracts
from trine_core.testing import free_port
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    FunctionSpec,
    Heartbeat,
    Register,
    RegisterFunctionsRequest,
    RegisterFunctionsResponse,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportAck,
    ReportBatchRequest,
    ReportBatchResponse,
    ReportRequest,
    ReportResponse,
    RunCompleted,
    StartRunRequest,
    TakeWorkRequest,
    TakeWorkResponse,
    WorkerMessage,
    WorkerReport,
    WorkItem,
)
from trine_transport_grpc.plugin import GrpcTransport

FUNCTION = "f"
"""The one function every test worker serves."""


class Delegating:
    """``memory.dispatcher`` as is; a test's subclass replaces the one call it scripts."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        return await self.inner.register_functions(message)

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        return await self.inner.take_work(message)

    async def report(self, message: ReportRequest) -> ReportResponse:
        return await self.inner.report(message)

    def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        """Through ``take_work``, so a subclass that scripts ``take_work`` scripts this."""
        return take_work_polling(self.take_work, requests)

    async def report_batch(self, message: ReportBatchRequest) -> ReportBatchResponse:
        """Through ``report``, one by one, so a subclass that scripts ``report`` scripts this."""
        return await report_each(self.report, message)

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        return await self.inner.renew_leases(message)

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        return await self.inner.release_leases(message)


class WorkerStream:
    """A worker's side of ``WorkerService.Connect``, message by message.

    ``leases`` maps run id → lease id of each run :func:`dispatched` here, so a report goes under
    the lease the engine gave.
    """

    def __init__(self, stream: Stream[WorkerMessage, CoordinatorMessage]) -> None:
        self.stream = stream
        self.leases: dict[str, str] = {}

    async def send(self, **message: Any) -> None:
        await self.stream.send_message(WorkerMessage(**message))

    async def recv(self) -> CoordinatorMessage | None:
        return await asyncio.wait_for(self.stream.recv_message(), 5)

    async def register(
        self,
        worker_id: str = "w1",
        slots: int = 10,
        spec: FunctionSpec | None = None,
        build_id: str = "",
        batches: bool = False,
    ) -> CoordinatorMessage:
        """Register serving ``spec`` (``FUNCTION`` with its defaults if None) as of ``build_id``;
        ``batches``: as a worker that reads ReportAcks and WorkItems."""
        await self.send(
            register=Register(
                worker_id=worker_id,
                functions=[spec or FunctionSpec(name=FUNCTION)],
                max_concurrency=slots,
                build_id=build_id,
                batches=batches,
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
        await self.send(report=completed(run_id, self.leases[run_id], request_id))


def completed(run_id: str, lease_id: str, request_id: int) -> WorkerReport:
    return WorkerReport(
        request_id=request_id,
        report=ReportRequest(
            run_id=run_id,
            lease_id=lease_id,
            commands=[Command(run_completed=RunCompleted(result=b"1"))],
        ),
    )


async def dispatched(worker: WorkerStream) -> str:
    """The next message's run id, which must be a dispatch (its lease noted in ``leases``)."""
    message = await worker.recv()
    assert message is not None
    assert message.dispatch is not None, message
    run_id, lease_id = _ids(message.dispatch)
    worker.leases[run_id] = lease_id
    return run_id


async def ack(worker: WorkerStream) -> ReportAck:
    message = await worker.recv()
    assert message is not None
    assert message.report_ack is not None, message
    return message.report_ack


def _ids(item: WorkItem) -> tuple[str, str]:
    assert item.run is not None
    assert item.lease is not None
    return str(item.run.id), str(item.lease.id)


class Harness:
    """The coordinator's port and the engine behind it."""

    def __init__(self, memory: MemoryEngine, port: int) -> None:
        self.memory = memory
        self.port = port
        self.channels: list[Channel] = []

    def open(self, metadata: dict[str, str] | None = None) -> Any:
        """A ``Connect`` stream, sent with ``metadata`` (a token, an instance)."""
        channel = Channel("127.0.0.1", self.port)
        self.channels.append(channel)
        return channel.request(
            "/trine.v1.WorkerService/Connect",
            Cardinality.STREAM_STREAM,
            WorkerMessage,
            CoordinatorMessage,
            metadata=metadata,
        )

    @contextlib.asynccontextmanager
    async def worker(
        self,
        worker_id: str = "w1",
        slots: int = 10,
        spec: FunctionSpec | None = None,
        build_id: str = "",
        metadata: dict[str, str] | None = None,
        batches: bool = False,
    ) -> AsyncIterator[WorkerStream]:
        """A worker's stream, opened and registered (so the engine knows its function)."""
        async with self.open(metadata) as stream:
            await stream.send_request()
            worker = WorkerStream(stream)
            await worker.register(
                worker_id, slots=slots, spec=spec, build_id=build_id, batches=batches
            )
            yield worker

    async def start(self, count: int = 1, payload: bytes = b"") -> list[str]:
        """Start ``count`` runs of the worker's function: their ids, first in line first."""
        runs = []
        for _ in range(count):
            request = StartRunRequest(function=FUNCTION, input=payload)
            response = await self.memory.backend.start_run(request)
            assert response.run is not None
            runs.append(str(response.run.id))
        return runs

    def released_so_far(self) -> list[str]:
        """The lease ids given back to the engine until now, in order, without waiting."""
        calls = [request for name, request in self.memory.calls if name == "release_leases"]
        return [lease for request in calls for lease in request.lease_ids]

    async def released(self, count: int) -> list[str]:
        """The lease ids given back to the engine (sorted), once there are ``count`` of them
        (those :meth:`taken_elsewhere` gave back included)."""
        await self.memory.until(lambda: len(self.released_so_far()) >= count)
        return sorted(self.released_so_far())

    async def renewed(self, count: int = 1) -> None:
        """Until the coordinator renewed leases ``count`` more times from now."""
        before = sum(name == "renew_leases" for name, _ in self.memory.calls)
        await self.memory.called("renew_leases", before + count)

    async def taken_elsewhere(self, lease_id: str) -> str:
        """The lease ends as one nobody renewed does: the engine takes it back and another
        worker takes the run (so it is not dispatched here again). The run's id."""
        await self.memory.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[lease_id]))
        [(run_id, _)] = await self.taken_by_another_worker(max_items=1)
        return run_id

    async def taken_by_another_worker(self, max_items: int = 10) -> list[tuple[str, int]]:
        """What another worker is given now (nothing waits): each run's id and attempt."""
        request = TakeWorkRequest(worker_id="w-other", functions=[FUNCTION], max_items=max_items)
        items = (await self.memory.dispatcher.take_work(request)).items
        return [(_ids(item)[0], item.lease.attempt if item.lease else 0) for item in items]


def coordinator_context(settings: Settings, dispatcher: Dispatcher) -> RoleContext:
    """What the runtime hands the coordinator role: its settings, ``dispatcher`` as its one
    need, and the grpc transport for its worker port (the runtime's, for ``grpc://``)."""
    needs = Contracts()
    needs.add(Dispatcher, dispatcher)
    transport = GrpcTransport(settings)

    async def transport_for(address: str) -> Transport:
        assert address.startswith("grpc://"), address
        return transport

    return RoleContext(settings, get_logger("coordinator"), needs, transport_for=transport_for)


@contextlib.asynccontextmanager
async def running(
    *,
    heartbeat_ms: int = 1000,
    lease_ttl_ms: int = 3000,
    max_worker_losses: int = 3,
    memory: MemoryEngine | None = None,
    dispatcher: Delegating | None = None,
    tokens_file: Path | None = None,
) -> AsyncIterator[tuple[CoordinatorRole, Harness]]:
    """A started coordinator role with its own timings, in front of ``memory`` (a new
    ``MemoryEngine`` by default): its dispatcher, or ``dispatcher`` that scripts it; workers need
    a token of ``tokens_file`` when given."""
    memory = memory or MemoryEngine()
    if dispatcher is not None:
        assert dispatcher.inner is memory.dispatcher, "dispatcher must wrap memory's"
    port = free_port()
    settings = Settings(
        {
            WORKER_ADDR: f"127.0.0.1:{port}",
            HEARTBEAT_INTERVAL_MS: heartbeat_ms,
            LEASE_TTL_MS: lease_ttl_ms,
            MAX_WORKER_LOSSES: max_worker_losses,
            AUTH_TOKENS_FILE: str(tokens_file or ""),
        }
    )
    role = CoordinatorRole(settings)
    await role.start(coordinator_context(settings, dispatcher or memory.dispatcher))
    harness = Harness(memory, port)
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

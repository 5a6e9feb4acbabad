"""A coordinator's client against an engine from before ``ReportBatch`` and ``TakeWorkStream``:
the engine answers those UNIMPLEMENTED (having done nothing), and the client goes on with the
calls that engine has (``Report`` per report, ``TakeWork`` long-polls), the contract unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpclib.server import Server

from trine_core import Backend, Dispatcher, TrineError
from trine_core.testing import free_port
from trine_core.testing.contracts import ContractSubject, DispatcherContract
from trine_core.testing.memory import MemoryEngine
from trine_proto.limits import BoundedCodec
from trine_proto.trine.v1 import (
    DispatcherBase,
    RegisterFunctionsRequest,
    RegisterFunctionsResponse,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportRequest,
    ReportResponse,
    TakeWorkRequest,
    TakeWorkResponse,
)
from trine_transport_grpc import GrpcTransport
from trine_transport_grpc.errors import to_grpc
from trine_transport_grpc.server import Served, ServedBackend


class OlderDispatcher(DispatcherBase):
    """The Dispatcher service as an engine before batches and streams served it: the generated
    base answers every other method UNIMPLEMENTED."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        return await self.inner.register_functions(message)

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        try:
            return await self.inner.take_work(message)
        except TrineError as exc:
            raise to_grpc(exc) from None

    async def report(self, message: ReportRequest) -> ReportResponse:
        try:
            return await self.inner.report(message)
        except TrineError as exc:
            raise to_grpc(exc) from None

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        return await self.inner.renew_leases(message)

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        return await self.inner.release_leases(message)


class TestAgainstAnOlderEngine(DispatcherContract):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[ContractSubject]:
        memory = MemoryEngine()
        served = Served()
        served.backend = memory.backend
        older = OlderDispatcher(memory.dispatcher)
        port = free_port()
        server = Server([ServedBackend(served), older], codec=BoundedCodec(4 << 20))
        await server.start("127.0.0.1", port)
        client = GrpcTransport()
        address = f"grpc://127.0.0.1:{port}"
        try:
            yield ContractSubject(
                await client.connect(Backend, address), await client.connect(Dispatcher, address)
            )
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

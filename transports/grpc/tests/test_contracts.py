"""The contract suites through gRPC over loopback, around core's reference implementations: what a
caller of a remote Backend, Dispatcher or WorkerRegistry sees must be what a caller of the local
one sees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trine_core import Backend, Dispatcher, WorkerRegistry
from trine_core.testing import free_port
from trine_core.testing.contracts import (
    BackendContract,
    ContractSubject,
    DispatcherContract,
    WorkerRegistryContract,
    WorkerRegistrySubject,
)
from trine_core.testing.memory import MemoryEngine
from trine_core.testing.workers import MemoryWorkerRegistry
from trine_transport_grpc import GrpcTransport


class TestGrpcTransport(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[ContractSubject]:
        memory = MemoryEngine(max_payload_bytes=4096)
        address = f"grpc://127.0.0.1:{free_port()}"
        server, client = GrpcTransport(), GrpcTransport()
        await server.serve(Backend, memory.backend, address)
        await server.serve(Dispatcher, memory.dispatcher, address)
        try:
            yield ContractSubject(
                await client.connect(Backend, address),
                await client.connect(Dispatcher, address),
                max_payload_bytes=4096,
            )
        finally:
            await client.close()
            await server.close()


class TestGrpcWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    async def worker_registry(self) -> AsyncIterator[WorkerRegistrySubject]:
        memory = MemoryWorkerRegistry()
        address = f"grpc://127.0.0.1:{free_port()}"
        server, client = GrpcTransport(), GrpcTransport()
        await server.serve(WorkerRegistry, memory, address)
        try:
            yield WorkerRegistrySubject(await client.connect(WorkerRegistry, address), memory)
        finally:
            await client.close()
            await server.close()

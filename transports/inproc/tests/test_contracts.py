"""The contract suites through ``inproc://``, around core's reference implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trine_core import Backend, Dispatcher, WorkerRegistry
from trine_core.testing.contracts import (
    BackendContract,
    ContractSubject,
    DispatcherContract,
    WorkerRegistryContract,
    WorkerRegistrySubject,
)
from trine_core.testing.memory import MemoryEngine
from trine_core.testing.workers import MemoryWorkerRegistry
from trine_transport_inproc import InprocTransport


class TestInprocTransport(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[ContractSubject]:
        memory = MemoryEngine(max_payload_bytes=4096)
        transport = InprocTransport()
        await transport.serve(Backend, memory.backend, "inproc://contracts")
        await transport.serve(Dispatcher, memory.dispatcher, "inproc://contracts")
        yield ContractSubject(
            await transport.connect(Backend, "inproc://contracts"),
            await transport.connect(Dispatcher, "inproc://contracts"),
            max_payload_bytes=4096,
        )
        await transport.close()


class TestInprocWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    async def worker_registry(self) -> AsyncIterator[WorkerRegistrySubject]:
        memory = MemoryWorkerRegistry()
        transport = InprocTransport()
        await transport.serve(WorkerRegistry, memory, "inproc://workers")
        yield WorkerRegistrySubject(
            await transport.connect(WorkerRegistry, "inproc://workers"), memory
        )
        await transport.close()

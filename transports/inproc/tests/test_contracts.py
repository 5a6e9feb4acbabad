"""The contract suites through ``inproc://``, around core's reference implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trine_core import Backend, Dispatcher
from trine_core.testing.contracts import BackendContract, ContractSubject, DispatcherContract
from trine_core.testing.memory import MemoryEngine
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

"""The contract suites against the engine through every transport that carries it (in-process,
gRPC over loopback, and the third-party ``counting://`` fixture); the engine's own tests run them
against the engine directly."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from harness import ROOT

from trine_core import Backend, Dispatcher, Transport
from trine_core.testing import free_port
from trine_core.testing.contracts import BackendContract, ContractSubject, DispatcherContract
from trine_engine import Engine, EngineConfig
from trine_transport_grpc import GrpcTransport
from trine_transport_inproc import InprocTransport

MAX_PAYLOAD = 4096
COUNTING = ROOT / "tests/fixtures/trine-transport-counting/src/trine_transport_counting/plugin.py"


def counting_module() -> ModuleType:
    """The fixture's plugin module, loaded from its file under a private name (it is never
    installed into this virtualenv: test_third_party_transport checks that)."""
    spec = importlib.util.spec_from_file_location("counting_under_contract_test", COUNTING)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await Engine.open(
        EngineConfig(data_dir=tmp_path / "data", max_payload_bytes=MAX_PAYLOAD)
    )
    try:
        yield engine
    finally:
        await engine.close()


async def carried(engine: Engine, transport: Transport, address: str) -> ContractSubject:
    await transport.serve(Backend, engine.backend, address)
    await transport.serve(Dispatcher, engine.dispatcher, address)
    return ContractSubject(
        backend=await transport.connect(Backend, address),
        dispatcher=await transport.connect(Dispatcher, address),
        max_payload_bytes=MAX_PAYLOAD,
    )


class TestInproc(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self, engine: Engine) -> AsyncIterator[ContractSubject]:
        transport = InprocTransport()
        yield await carried(engine, transport, "inproc://contracts")
        await transport.close()


class TestGrpc(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self, engine: Engine) -> AsyncIterator[ContractSubject]:
        transport = GrpcTransport()
        yield await carried(engine, transport, f"grpc://127.0.0.1:{free_port()}")
        await transport.close()


class TestCountingFixture(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self, engine: Engine) -> AsyncIterator[ContractSubject]:
        transport = counting_module().CountingTransport()
        yield await carried(engine, transport, "counting://contracts")
        await transport.close()

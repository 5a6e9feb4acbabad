"""The contract suites against the engine itself, on a real RocksDB (the cross-plugin tests run
them through every transport around it)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from trine_core.testing.contracts import BackendContract, ContractSubject, DispatcherContract
from trine_engine import Engine, EngineConfig
from trine_proto.trine.v1 import FunctionSpec, RegisterFunctionsRequest, RunStatus, StartRunRequest


class TestEngineContracts(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self, config: EngineConfig) -> AsyncIterator[ContractSubject]:
        engine = await Engine.open(config)
        try:
            yield ContractSubject(engine.backend, engine.dispatcher, config.max_payload_bytes)
        finally:
            await engine.close()


async def test_the_engine_waits_in_a_start_that_asks_it(config: EngineConfig) -> None:
    """The engine takes the start's ``wait_ms`` (the contract lets a backend answer at once):
    one call for the gateway's ``POST /v1/runs?wait``."""
    engine = await Engine.open(config)
    try:
        await engine.dispatcher.register_functions(
            RegisterFunctionsRequest(worker_id="w", functions=[FunctionSpec(name="f")])
        )
        begun = time.monotonic()
        answer = await engine.backend.start_run(StartRunRequest(function="f", wait_ms=50))
        assert answer.waited
        assert answer.created
        assert time.monotonic() - begun >= 0.04
        assert answer.run is not None
        assert answer.run.status == RunStatus.PENDING
        at_once = await engine.backend.start_run(StartRunRequest(function="f"))
        assert not at_once.waited
    finally:
        await engine.close()

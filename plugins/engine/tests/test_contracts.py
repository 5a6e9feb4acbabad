"""The contract suites against the engine itself, on a real RocksDB (the cross-plugin tests run
them through every transport around it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trine_core.testing.contracts import BackendContract, ContractSubject, DispatcherContract
from trine_engine import Engine, EngineConfig


class TestEngineContracts(BackendContract, DispatcherContract):
    @pytest.fixture
    async def subject(self, config: EngineConfig) -> AsyncIterator[ContractSubject]:
        engine = await Engine.open(config)
        try:
            yield ContractSubject(engine.backend, engine.dispatcher, config.max_payload_bytes)
        finally:
            await engine.close()

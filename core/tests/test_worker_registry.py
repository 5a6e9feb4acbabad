"""``MemoryWorkerRegistry`` against the ``WorkerRegistry`` contract suite (it stands in for a
coordinator in the gateway's tests), and its test hooks."""

from __future__ import annotations

import pytest

from trine_core import Unavailable, WorkerRegistry
from trine_core.testing.contracts import WorkerRegistryContract, WorkerRegistrySubject
from trine_core.testing.workers import MemoryWorkerRegistry
from trine_proto.trine.v1 import ListWorkersRequest


class TestMemoryWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    def worker_registry(self) -> WorkerRegistrySubject:
        memory = MemoryWorkerRegistry()
        return WorkerRegistrySubject(memory, memory)


def test_it_is_a_worker_registry() -> None:
    assert isinstance(MemoryWorkerRegistry(), WorkerRegistry)


async def test_hooks_record_calls_fail_them_and_fix_the_clock() -> None:
    memory = MemoryWorkerRegistry("c-1", clock=lambda: 1_000)
    await memory.connect("w", ["f"], 2)
    run_id = await memory.dispatch("w", "f")
    await memory.step("w", run_id, "charge")
    answer = await memory.list_workers(ListWorkersRequest(max_runs=5))
    [worker] = answer.workers
    [run] = worker.runs
    assert (answer.coordinator, worker.coordinator, worker.connected_at_ms) == ("c-1", "c-1", 1_000)
    assert (run.since_ms, run.step) == (1_000, "charge")
    memory.fail_with = Unavailable("down")
    with pytest.raises(Unavailable):
        await memory.list_workers(ListWorkersRequest())
    assert [call.max_runs for call in memory.calls] == [5, 0]

"""The coordinator's instruments (trine_coordinator.metrics): connected workers, free slots and
runs in flight, read from the sessions at collection."""

from __future__ import annotations

import asyncio

from conftest import Harness, dispatched

from trine_core.instruments import REGISTRY


def value(name: str) -> float:
    instrument = REGISTRY.get(name)
    assert instrument is not None, name
    return sum(s.value for s in instrument.collect().samples)


async def until(name: str, expected: float) -> None:
    for _ in range(500):
        if value(name) == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} is {value(name)}, not {expected}")


async def test_workers_slots_and_runs_in_flight(coordinator: Harness) -> None:
    assert value("trine_workers_connected") == 0
    async with coordinator.worker(slots=3) as worker:
        await until("trine_workers_connected", 1)
        assert value("trine_worker_slots_free") == 3
        [run_id] = await coordinator.start()
        assert await dispatched(worker) == run_id
        assert value("trine_worker_runs_in_flight") == 1
        assert value("trine_worker_slots_free") == 2
        await worker.report(run_id)
        await until("trine_worker_slots_free", 3)
        lost = value("trine_workers_lost_total")
        await worker.stream.cancel()  # the stream breaks: a loss
        await until("trine_workers_connected", 0)
        assert value("trine_workers_lost_total") == lost + 1

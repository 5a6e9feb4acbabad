"""The coordinator when things go wrong: workers that die or freeze, an engine that fails, stop.

Each failure must end with the runs given back to the engine (``release_leases``) or the session
still working, never with a worker that is registered but stalled, or leases renewed forever.
"""

from __future__ import annotations

import asyncio
import json

import grpclib
import pytest
from conftest import Delegating, Harness, ack, dispatched, running
from grpclib.const import Status

from trine_core import Dispatcher, StorageError
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    CancelRunRequest,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    TakeWorkRequest,
    TakeWorkResponse,
    WorkerReport,
)


async def test_killed_worker_gives_its_runs_back(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        r1, r2 = await coordinator.start(2)
        assert {await dispatched(worker), await dispatched(worker)} == {r1, r2}
        coordinator.channels[-1].close()  # the connection drops: no end of stream, no reset
        assert await coordinator.released(2) == sorted(worker.leases.values())
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever grpclib makes of it
            await worker.stream.recv_message()


async def test_frozen_worker_that_stops_reading_still_gives_its_runs_back() -> None:
    """Big work items fill the HTTP/2 window of a worker that reads nothing: the response
    generator blocks in send_message, and the session must end without it."""
    memory = MemoryEngine(max_payload_bytes=8 << 20)
    big = json.dumps("x" * (4 << 20)).encode()
    async with (
        running(heartbeat_ms=50, memory=memory) as (_, coordinator),
        coordinator.worker(slots=3) as worker,
    ):
        runs = await coordinator.start(3, payload=big)  # then neither read nor heartbeat again
        assert len(await coordinator.released(3)) == 3
        # What was given back is the three runs, each after one lease: ready again, attempt 2.
        assert sorted(await coordinator.taken_by_another_worker()) == [(r, 2) for r in runs]
        await worker.stream.cancel()


class TakeWorkFailsOnce(Delegating):
    failures = 0

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        if self.failures == 0:
            self.failures += 1
            raise StorageError("the disk is full")
        return await self.inner.take_work(message)


async def test_take_work_failure_does_not_stall_the_worker() -> None:
    memory = MemoryEngine()
    scripted = TakeWorkFailsOnce(memory.dispatcher)
    async with (
        running(memory=memory, dispatcher=scripted) as (_, coordinator),
        coordinator.worker() as worker,
    ):
        [r1] = await coordinator.start()
        assert await dispatched(worker) == r1
        assert scripted.failures == 1
        await worker.stream.end()


async def test_a_lease_lost_on_renewal_frees_its_slot() -> None:
    # renewals every 50 ms
    async with (
        running(lease_ttl_ms=150) as (_, coordinator),
        coordinator.worker(slots=1) as worker,
    ):
        r1, r2 = await coordinator.start(2)
        assert await dispatched(worker) == r1
        assert await coordinator.taken_elsewhere(worker.leases[r1]) == r1
        assert await dispatched(worker) == r2
        await worker.stream.end()


async def test_a_cancellation_is_passed_to_the_worker_once() -> None:
    async with (
        running(lease_ttl_ms=150) as (_, coordinator),
        coordinator.worker(slots=1) as worker,
    ):
        [r1] = await coordinator.start()
        assert await dispatched(worker) == r1
        await coordinator.memory.backend.cancel_run(CancelRunRequest(run_id=r1))
        notice = await asyncio.wait_for(worker.recv(), 5)
        assert notice is not None
        assert notice.cancel is not None
        assert (notice.cancel.run_id, notice.cancel.lease_id) == (r1, worker.leases[r1])
        await coordinator.renewed(3)
        # Three renewals later, the next message is the ack of this report: no second notice.
        report = ReportRequest(run_id=r1, lease_id=worker.leases[r1])
        await worker.send(report=WorkerReport(request_id=7, report=report))
        ack = await asyncio.wait_for(worker.recv(), 5)
        assert ack is not None
        assert ack.report_ack is not None
        await worker.stream.end()


class BrokenRenewals(Delegating):
    def __init__(self, inner: Dispatcher) -> None:
        super().__init__(inner)
        self.renewed = asyncio.Event()

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        self.renewed.set()
        raise RuntimeError("a bug, not a TrineError")


async def test_a_failing_renewal_does_not_stop_the_heartbeat_watch() -> None:
    memory = MemoryEngine()
    broken = BrokenRenewals(memory.dispatcher)
    async with (
        running(heartbeat_ms=50, lease_ttl_ms=150, memory=memory, dispatcher=broken) as (_, c),
        c.worker() as worker,
    ):
        [r1] = await c.start()
        assert await dispatched(worker) == r1
        await asyncio.wait_for(broken.renewed.wait(), 5)
        # Silent from here: the watch that survived the failure drops the worker.
        assert await worker.recv() is None
        assert await c.released(1) == [worker.leases[r1]]
        await worker.stream.end()


class HeldReports(Delegating):
    """A report of a run in ``held`` waits until its event is set."""

    def __init__(self, inner: Dispatcher) -> None:
        super().__init__(inner)
        self.held: dict[str, asyncio.Event] = {}
        self.arrived = asyncio.Event()

    async def report(self, message: ReportRequest) -> ReportResponse:
        if (held := self.held.get(message.run_id)) is not None:
            self.arrived.set()
            await held.wait()
        return await self.inner.report(message)


async def test_a_slow_report_does_not_hold_up_another_runs_report() -> None:
    """Reports read in one turn go to the engine in one call and are answered together (the
    engine commits them together); a report read later goes in a call of its own, which a slow
    call before it does not hold up."""
    memory = MemoryEngine()
    slow = HeldReports(memory.dispatcher)
    async with (
        running(memory=memory, dispatcher=slow) as (_, coordinator),
        coordinator.worker(slots=2) as worker,
    ):
        r1, r2 = await coordinator.start(2)
        slow_run_may_finish = slow.held[r1] = asyncio.Event()
        assert {await dispatched(worker), await dispatched(worker)} == {r1, r2}
        await worker.report(r1, request_id=1)
        await slow.arrived.wait()  # r1's call is under way
        await worker.report(r2, request_id=2)
        assert (await ack(worker)).request_id == 2
        slow_run_may_finish.set()
        first = await ack(worker)
        assert first.request_id == 1
        assert first.response is not None
        assert first.response.outcome == ReportOutcome.FINISHED
        await worker.stream.end()


async def test_a_report_without_a_body_is_refused(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        await worker.send(report=WorkerReport(request_id=9))
        refused = await ack(worker)
        assert (refused.request_id, refused.error_code) == (9, "invalid_argument")
        await worker.stream.end()


async def test_stop_ends_worker_streams_and_gives_their_runs_back() -> None:
    async with running() as (role, coordinator), coordinator.worker("w-stop", slots=3) as worker:
        [r1] = await coordinator.start()
        assert await dispatched(worker) == r1
        [listed] = role.workers()
        assert listed["worker_id"] == "w-stop"
        assert listed["functions"] == ["f"]
        assert (listed["max_concurrency"], listed["in_flight"]) == (3, 1)
        assert listed["draining"] is False
        await role.stop()
        assert await worker.recv() is None
        assert coordinator.released_so_far() == [worker.leases[r1]]
        assert role.workers() == []
        await worker.stream.end()


class SlowReleases(Delegating):
    """Releases wait until ``engine_slow`` is set."""

    def __init__(self, inner: Dispatcher) -> None:
        super().__init__(inner)
        self.engine_slow = asyncio.Event()

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        await self.engine_slow.wait()
        return await self.inner.release_leases(message)


async def test_a_worker_registering_while_stop_gives_runs_back_does_not_hang_stop() -> None:
    """stop() waits for the release of the ended sessions' leases; a worker that reconnects in
    that window (the SDK does at once) must be refused, not get a session whose dispatch loop
    stop() then waits for forever."""
    memory = MemoryEngine()
    slow = SlowReleases(memory.dispatcher)
    async with running(memory=memory, dispatcher=slow) as (role, coordinator):
        async with coordinator.worker("w1") as worker:
            [r1] = await coordinator.start()
            assert await dispatched(worker) == r1
            stopping = asyncio.create_task(role.stop())
            assert await worker.recv() is None  # the session ended; its release is under way
            await worker.stream.end()

        async def register_again() -> None:
            async with coordinator.worker("w1"):
                pass

        with pytest.raises(grpclib.GRPCError, match="the coordinator is stopping") as refused:
            await register_again()
        assert refused.value.status == Status.UNAVAILABLE
        slow.engine_slow.set()
        await asyncio.wait_for(stopping, 5)
        assert coordinator.released_so_far() == [worker.leases[r1]]

"""The coordinator when things go wrong: workers that die or freeze, an engine that fails, stop.

Each failure must end with the runs given back to the engine (``release_leases``) or the session
still working, never with a worker that is registered but stalled, or leases renewed forever.
"""

from __future__ import annotations

import asyncio

import grpclib
import pytest
from conftest import Harness, ack, dispatched, running
from grpclib.const import Status

from trine_core import StorageError
from trine_proto.trine.v1 import (
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
        coordinator.dispatcher.add_ready("r1", "r2")
        assert {await dispatched(worker), await dispatched(worker)} == {"r1", "r2"}
        coordinator.channels[-1].close()  # the connection drops: no end of stream, no reset
        await coordinator.dispatcher.wait_released(2)
        assert sorted(coordinator.dispatcher.released) == ["L-r1", "L-r2"]
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever grpclib makes of it
            await worker.stream.recv_message()


@pytest.mark.parametrize("heartbeat_ms", [50])
async def test_frozen_worker_that_stops_reading_still_gives_its_runs_back(
    coordinator: Harness,
) -> None:
    """Big work items fill the HTTP/2 window of a worker that reads nothing: the response
    generator blocks in send_message, and the session must end without it."""
    fake = coordinator.dispatcher
    take_work = fake.take_work

    async def big_items(message: TakeWorkRequest) -> TakeWorkResponse:
        response = await take_work(message)
        for item in response.items:
            item.run.input = b"x" * (4 << 20)
        return response

    fake.take_work = big_items  # type: ignore[method-assign]
    async with coordinator.worker(slots=3) as worker:
        fake.add_ready("r1", "r2", "r3")  # then neither read nor heartbeat again
        await fake.wait_released(3)
        assert sorted(fake.released) == ["L-r1", "L-r2", "L-r3"]
        await worker.stream.cancel()


async def test_take_work_failure_does_not_stall_the_worker(coordinator: Harness) -> None:
    fake = coordinator.dispatcher
    take_work = fake.take_work
    failures = 0

    async def failing_once(message: TakeWorkRequest) -> TakeWorkResponse:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise StorageError("the disk is full")
        return await take_work(message)

    fake.take_work = failing_once  # type: ignore[method-assign]
    async with coordinator.worker() as worker:
        fake.add_ready("r1")
        assert await dispatched(worker) == "r1"
        assert failures == 1
        await worker.stream.end()


async def test_a_lease_lost_on_renewal_frees_its_slot() -> None:
    # renewals every 50 ms
    async with (
        running(lease_ttl_ms=150) as (_, coordinator),
        coordinator.worker(slots=1) as worker,
    ):
        coordinator.dispatcher.add_ready("r1", "r2")
        assert await dispatched(worker) == "r1"
        coordinator.dispatcher.lost_leases.add("L-r1")  # say, the run was cancelled
        assert await dispatched(worker) == "r2"
        await worker.stream.end()


async def test_a_cancellation_is_passed_to_the_worker_once() -> None:
    async with running(lease_ttl_ms=150) as (_, coordinator):
        fake = coordinator.dispatcher
        renewals = 0
        three_more = asyncio.Event()
        renew = fake.renew_leases

        async def counting(message: RenewLeasesRequest) -> RenewLeasesResponse:
            nonlocal renewals
            renewals += 1
            if renewals >= 3:
                three_more.set()
            return await renew(message)

        async with coordinator.worker(slots=1) as worker:
            fake.add_ready("r1")
            assert await dispatched(worker) == "r1"
            fake.cancelling.add("L-r1")
            notice = await asyncio.wait_for(worker.recv(), 5)
            assert notice is not None
            assert notice.cancel is not None
            assert (notice.cancel.run_id, notice.cancel.lease_id) == ("r1", "L-r1")
            fake.renew_leases = counting  # type: ignore[method-assign]
            await asyncio.wait_for(three_more.wait(), 5)
            # Three renewals later, the next message is the ack of this report: no second notice.
            report = ReportRequest(run_id="r1", lease_id="L-r1")
            await worker.send(report=WorkerReport(request_id=7, report=report))
            ack = await asyncio.wait_for(worker.recv(), 5)
            assert ack is not None
            assert ack.report_ack is not None
            await worker.stream.end()


async def test_a_failing_renewal_does_not_stop_the_heartbeat_watch() -> None:
    async with running(heartbeat_ms=50, lease_ttl_ms=150) as (_, coordinator):
        fake = coordinator.dispatcher
        renewed = asyncio.Event()

        async def broken(message: RenewLeasesRequest) -> RenewLeasesResponse:
            renewed.set()
            raise RuntimeError("a bug, not a TrineError")

        fake.renew_leases = broken  # type: ignore[method-assign]
        async with coordinator.worker() as worker:
            fake.add_ready("r1")
            assert await dispatched(worker) == "r1"
            await asyncio.wait_for(renewed.wait(), 5)
            # Silent from here: the watch that survived the failure drops the worker.
            assert await worker.recv() is None
            await fake.wait_released(1)
            await worker.stream.end()


async def test_a_slow_report_does_not_hold_up_another_runs_report(coordinator: Harness) -> None:
    fake = coordinator.dispatcher
    report = fake.report
    slow_run_may_finish = asyncio.Event()

    async def slow_for_r1(message: ReportRequest) -> ReportResponse:
        if message.run_id == "r1":
            await slow_run_may_finish.wait()
        return await report(message)

    fake.report = slow_for_r1  # type: ignore[method-assign]
    fake.outcome = ReportOutcome.FINISHED
    async with coordinator.worker(slots=2) as worker:
        fake.add_ready("r1", "r2")
        assert {await dispatched(worker), await dispatched(worker)} == {"r1", "r2"}
        await worker.report("r1", request_id=1)
        await worker.report("r2", request_id=2)
        assert (await ack(worker)).request_id == 2
        slow_run_may_finish.set()
        first = await ack(worker)
        assert first.request_id == 1
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
        coordinator.dispatcher.add_ready("r1")
        assert await dispatched(worker) == "r1"
        [listed] = role.workers()
        assert listed["worker_id"] == "w-stop"
        assert listed["functions"] == ["f"]
        assert (listed["max_concurrency"], listed["in_flight"]) == (3, 1)
        assert listed["draining"] is False
        await role.stop()
        assert await worker.recv() is None
        assert coordinator.dispatcher.released == ["L-r1"]
        assert role.workers() == []
        await worker.stream.end()


async def test_a_worker_registering_while_stop_gives_runs_back_does_not_hang_stop() -> None:
    """stop() waits for the release of the ended sessions' leases; a worker that reconnects in
    that window (the SDK does at once) must be refused, not get a session whose dispatch loop
    stop() then waits for forever."""
    async with running() as (role, coordinator):
        fake = coordinator.dispatcher
        release_leases = fake.release_leases
        engine_slow = asyncio.Event()

        async def slow_release(message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
            await engine_slow.wait()
            return await release_leases(message)

        fake.release_leases = slow_release  # type: ignore[method-assign]
        async with coordinator.worker("w1") as worker:
            fake.add_ready("r1")
            assert await dispatched(worker) == "r1"
            stopping = asyncio.create_task(role.stop())
            assert await worker.recv() is None  # the session ended; its release is under way
            await worker.stream.end()

        async def register_again() -> None:
            async with coordinator.worker("w1"):
                pass

        with pytest.raises(grpclib.GRPCError, match="the coordinator is stopping") as refused:
            await register_again()
        assert refused.value.status == Status.UNAVAILABLE
        engine_slow.set()
        await asyncio.wait_for(stopping, 5)
        assert fake.released == ["L-r1"]

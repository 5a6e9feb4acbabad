"""The coordinator alone: a scripted dispatcher behind it, a raw gRPC worker stream in front."""

from __future__ import annotations

import asyncio
import socket

import grpclib
import pytest
from conftest import Harness, WorkerStream, coordinator_context, dispatched
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from trine_coordinator import CoordinatorRole
from trine_coordinator.settings import WORKER_ADDR
from trine_core import ConfigError, Settings
from trine_core.testing import free_port
from trine_proto.trine.v1 import Drain, ReportOutcome


async def test_register_dispatch_report_ack(coordinator: Harness) -> None:
    async with coordinator.open() as stream:
        await stream.send_request()
        worker = WorkerStream(stream)
        reply = await worker.register()
        assert reply.registered.heartbeat_interval_ms == 1000
        assert coordinator.dispatcher.registered[0].functions[0].name == "f"
        coordinator.dispatcher.add_ready("r1")
        assert await dispatched(worker) == "r1"
        coordinator.dispatcher.outcome = ReportOutcome.FINISHED
        await worker.report("r1", request_id=7)
        ack = await worker.recv()
        assert ack is not None
        assert ack.report_ack.request_id == 7
        assert ack.report_ack.response.outcome == ReportOutcome.FINISHED
        await stream.end()


async def test_capacity_is_respected(coordinator: Harness) -> None:
    async with coordinator.worker(slots=2) as worker:
        coordinator.dispatcher.add_ready("r1", "r2", "r3", "r4", "r5")
        first = {await dispatched(worker), await dispatched(worker)}
        assert first == {"r1", "r2"}
        with pytest.raises(TimeoutError):  # no third run while both slots are busy
            await asyncio.wait_for(worker.stream.recv_message(), 0.3)
        coordinator.dispatcher.outcome = ReportOutcome.FINISHED
        await worker.report("r1")
        messages = [await worker.recv(), await worker.recv()]
        kinds = sorted("ack" if m and m.report_ack else "dispatch" for m in messages)
        assert kinds == ["ack", "dispatch"]
        await worker.stream.end()


async def test_refused_report_is_acked_with_its_code_and_frees_the_slot(
    coordinator: Harness,
) -> None:
    async with coordinator.worker(slots=1) as worker:
        coordinator.dispatcher.add_ready("r1", "r2")
        assert await dispatched(worker) == "r1"
        coordinator.dispatcher.lost_leases.add("L-r1")
        await worker.report("r1")
        ack = await worker.recv()
        assert ack is not None
        assert ack.report_ack.error_code == "lease_lost"
        assert await dispatched(worker) == "r2"  # the slot was freed
        await worker.stream.end()


async def test_closed_stream_releases_its_leases(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        coordinator.dispatcher.add_ready("r1", "r2")
        assert {await dispatched(worker), await dispatched(worker)} == {"r1", "r2"}
        await worker.stream.end()
        assert await worker.recv() is None
    await coordinator.dispatcher.wait_released(2)
    assert sorted(coordinator.dispatcher.released) == ["L-r1", "L-r2"]


async def test_registering_again_fences_the_old_session(coordinator: Harness) -> None:
    async with coordinator.worker("same") as old:
        coordinator.dispatcher.add_ready("r1")
        assert await dispatched(old) == "r1"
        async with coordinator.worker("same") as new:
            assert await old.recv() is None  # the old stream was ended by the coordinator
            await coordinator.dispatcher.wait_released(1)
            assert coordinator.dispatcher.released == ["L-r1"]
            await new.stream.end()
        await old.stream.end()


@pytest.mark.parametrize("heartbeat_ms", [50])
async def test_silent_worker_is_dropped_and_its_leases_released(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        coordinator.dispatcher.add_ready("r1")
        assert await dispatched(worker) == "r1"
        assert await worker.recv() is None  # 5 heartbeat intervals (250 ms) without a word
        await coordinator.dispatcher.wait_released(1)
        await worker.stream.end()


@pytest.mark.parametrize("heartbeat_ms", [50])
async def test_heartbeats_keep_a_worker(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        for _ in range(10):  # 10 x 50 ms: twice the silence that would drop it
            await worker.heartbeat()
            await asyncio.sleep(0.05)  # pacing the heartbeats is the point, not a sync
        coordinator.dispatcher.add_ready("r1")
        assert await dispatched(worker) == "r1"
        await worker.stream.end()


async def test_drain_stops_dispatch(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        await worker.send(drain=Drain())
        await worker.heartbeat()
        coordinator.dispatcher.add_ready("r1")
        await coordinator.dispatcher.wait_released(1)  # the long-poll's run went straight back
        assert coordinator.dispatcher.released == ["L-r1"]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(worker.stream.recv_message(), 0.2)
        await worker.stream.end()


async def test_first_message_must_be_register(coordinator: Harness) -> None:
    async def first_message_heartbeat() -> None:
        async with coordinator.open() as stream:
            await stream.send_request()
            await WorkerStream(stream).heartbeat()
            await stream.recv_message()

    with pytest.raises(grpclib.GRPCError, match="first message must be Register"):
        await first_message_heartbeat()


async def test_port_in_use_is_a_config_error() -> None:
    port = free_port()
    settings = Settings({WORKER_ADDR: f"127.0.0.1:{port}"})
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        role = CoordinatorRole(settings)
        context = coordinator_context(settings, object())
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port} for workers: address already"):
            await role.start(context)


async def test_health_service_follows_the_engine(coordinator: Harness) -> None:

    channel = Channel("127.0.0.1", coordinator.port)
    try:
        health = HealthStub(channel)
        reply = await health.Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.SERVING
        coordinator.dispatcher.unavailable = True
        await asyncio.sleep(1.1)  # the check result is cached for 1 s (check_ttl)
        reply = await health.Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.NOT_SERVING
    finally:
        channel.close()


async def test_registration_while_the_engine_is_away_is_unavailable(coordinator: Harness) -> None:
    coordinator.dispatcher.unavailable = True

    async def register() -> None:
        async with coordinator.worker():
            pass

    with pytest.raises(grpclib.GRPCError, match="the engine is down") as caught:
        await register()
    assert caught.value.status == grpclib.const.Status.UNAVAILABLE

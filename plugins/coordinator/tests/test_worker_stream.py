"""The coordinator alone: ``MemoryEngine`` behind it, a raw gRPC worker stream in front."""

from __future__ import annotations

import asyncio

import grpclib
import pytest
from conftest import Harness, WorkerStream, ack, completed, coordinator_context, dispatched
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from trine_coordinator import CoordinatorRole
from trine_coordinator.settings import WORKER_ADDR
from trine_core import ConfigError, Settings, Unavailable
from trine_core.testing import occupied_port
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    Drain,
    FunctionSpec,
    GetRunRequest,
    Register,
    ReportAck,
    ReportOutcome,
    RunStatus,
    WorkerMessage,
    WorkerReports,
)


async def test_register_dispatch_report_ack(coordinator: Harness) -> None:
    async with coordinator.open() as stream:
        await stream.send_request()
        worker = WorkerStream(stream)
        reply = await worker.register()
        assert reply.registered is not None
        assert reply.registered.heartbeat_interval_ms == 1000
        [registration] = await coordinator.memory.called("register_functions")
        assert registration.functions[0].name == "f"
        [r1] = await coordinator.start()
        assert await dispatched(worker) == r1
        await worker.report(r1, request_id=7)
        acked = await ack(worker)
        assert acked.request_id == 7
        assert acked.response is not None
        assert acked.response.outcome == ReportOutcome.FINISHED
        run = await coordinator.memory.backend.get_run(GetRunRequest(run_id=r1))
        assert run.status == RunStatus.COMPLETED
        await stream.end()


async def test_a_batching_worker_gets_its_dispatches_and_acks_in_batches(
    coordinator: Harness,
) -> None:
    async with coordinator.open() as stream:
        await stream.send_request()
        worker = WorkerStream(stream)
        reply = await worker.register(batches=True)
        assert reply.registered is not None
        assert reply.registered.batches  # the coordinator reads WorkerReports
        runs = await coordinator.start(3)
        messages = []
        while sum(len(m.dispatches.items) if m.dispatches else 1 for m in messages) < 3:
            message = await worker.recv()
            assert message is not None
            messages.append(message)
        # Taken in one take_work, queued in one turn: one message.
        assert [m.dispatches is not None for m in messages] == [True]
        items = messages[0].dispatches.items  # type: ignore[union-attr]
        leases = {str(i.run.id): str(i.lease.id) for i in items if i.run and i.lease}
        assert sorted(leases) == sorted(runs)
        reports = [completed(run, leases[run], request_id=n) for n, run in enumerate(runs, 1)]
        await worker.send(reports=WorkerReports(reports))
        acks: list[ReportAck] = []
        kinds = []
        while len(acks) < 3:
            message = await worker.recv()
            assert message is not None
            kinds.append("report_acks" if message.report_acks else "report_ack")
            acks += message.report_acks.acks if message.report_acks else [message.report_ack]
        assert sorted(a.request_id for a in acks) == [1, 2, 3]
        assert {a.response.outcome for a in acks if a.response} == {ReportOutcome.FINISHED}
        assert "report_acks" in kinds  # at least two acks of the turn went together
        for run in runs:
            got = await coordinator.memory.backend.get_run(GetRunRequest(run_id=run))
            assert got.status == RunStatus.COMPLETED
        await stream.end()


async def test_a_worker_that_does_not_batch_gets_one_message_each(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:  # an SDK from before batches
        runs = await coordinator.start(3)
        assert {await dispatched(worker) for _ in runs} == set(runs)
        for n, run in enumerate(runs, 1):
            await worker.send(report=completed(run, worker.leases[run], request_id=n))
        assert sorted([(await ack(worker)).request_id for _ in runs]) == [1, 2, 3]
        await worker.stream.end()


async def test_capacity_is_respected(coordinator: Harness) -> None:
    async with coordinator.worker(slots=2) as worker:
        r1, r2, *_ = await coordinator.start(5)
        first = {await dispatched(worker), await dispatched(worker)}
        assert first == {r1, r2}
        with pytest.raises(TimeoutError):  # no third run while both slots are busy
            await asyncio.wait_for(worker.stream.recv_message(), 0.3)
        await worker.report(r1)  # completed: FINISHED, the slot ends
        messages = [await worker.recv(), await worker.recv()]
        kinds = sorted("ack" if m and m.report_ack else "dispatch" for m in messages)
        assert kinds == ["ack", "dispatch"]
        await worker.stream.end()


async def test_refused_report_is_acked_with_its_code_and_frees_the_slot(
    coordinator: Harness,
) -> None:
    async with coordinator.worker(slots=1) as worker:
        r1, r2 = await coordinator.start(2)
        assert await dispatched(worker) == r1
        # Right after a renewal, so the next one (a second later) cannot see the loss first.
        await coordinator.renewed()
        assert await coordinator.taken_elsewhere(worker.leases[r1]) == r1
        await worker.report(r1)
        assert (await ack(worker)).error_code == "lease_lost"
        assert await dispatched(worker) == r2  # the slot was freed
        await worker.stream.end()


async def test_closed_stream_releases_its_leases(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        r1, r2 = await coordinator.start(2)
        assert {await dispatched(worker), await dispatched(worker)} == {r1, r2}
        await worker.stream.end()
        assert await worker.recv() is None
    assert await coordinator.released(2) == sorted(worker.leases.values())


@pytest.mark.parametrize("heartbeat_ms", [50])
async def test_silent_worker_is_dropped_and_its_leases_released(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        [r1] = await coordinator.start()
        assert await dispatched(worker) == r1
        assert await worker.recv() is None  # 5 heartbeat intervals (250 ms) without a word
        assert await coordinator.released(1) == [worker.leases[r1]]
        await worker.stream.end()


@pytest.mark.parametrize("heartbeat_ms", [50])
async def test_heartbeats_keep_a_worker(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        for _ in range(10):  # 10 x 50 ms: twice the silence that would drop it
            await worker.heartbeat()
            await asyncio.sleep(0.05)  # pacing the heartbeats is the point, not a sync
        [r1] = await coordinator.start()
        assert await dispatched(worker) == r1
        await worker.stream.end()


async def test_drain_stops_dispatch(coordinator: Harness) -> None:
    async with coordinator.worker() as worker:
        [r0] = await coordinator.start()
        assert await dispatched(worker) == r0
        await worker.send(drain=Drain())
        await worker.heartbeat()
        await worker.report(r0)  # its ack says the coordinator has read the Drain before it
        finished = (await ack(worker)).response
        assert finished is not None
        assert finished.outcome == ReportOutcome.FINISHED
        [r1] = await coordinator.start()
        # The drain ended the session's work stream: r1 was never leased to it, and another
        # worker takes it on its first attempt.
        assert await coordinator.taken_by_another_worker() == [(r1, 1)]
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
    with occupied_port() as port:
        settings = Settings({WORKER_ADDR: f"127.0.0.1:{port}"})
        role = CoordinatorRole(settings)
        context = coordinator_context(settings, MemoryEngine().dispatcher)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port} for workers: address already"):
            await role.start(context)


async def test_health_service_follows_the_engine(coordinator: Harness) -> None:

    channel = Channel("127.0.0.1", coordinator.port)
    try:
        health = HealthStub(channel)
        reply = await health.Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.SERVING
        async with health.Watch.open() as watch:
            await watch.send_message(HealthCheckRequest(), end=True)
            serving = await watch.recv_message()
            assert serving is not None
            assert serving.status == HealthCheckResponse.SERVING
            coordinator.memory.fail_with = Unavailable("the engine is down")
            # The check result is cached for 1 s (check_ttl); a watch hears the next check.
            changed = await asyncio.wait_for(watch.recv_message(), 5)
            assert changed is not None
            assert changed.status == HealthCheckResponse.NOT_SERVING
            await watch.cancel()
        reply = await health.Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.NOT_SERVING
    finally:
        channel.close()


async def test_registration_while_the_engine_is_away_is_unavailable(coordinator: Harness) -> None:
    coordinator.memory.fail_with = Unavailable("the engine is down")

    async def register() -> None:
        async with coordinator.worker():
            pass

    with pytest.raises(grpclib.GRPCError, match="the engine is down") as caught:
        await register()
    assert caught.value.status == grpclib.const.Status.UNAVAILABLE


async def _refused(coordinator: Harness, register: Register) -> grpclib.GRPCError:
    """The INVALID_ARGUMENT a stream that sends ``register`` ends with."""

    async def send() -> None:
        async with coordinator.open() as stream:
            await stream.send_request()
            await stream.send_message(WorkerMessage(register=register))
            await asyncio.wait_for(stream.recv_message(), 5)

    with pytest.raises(grpclib.GRPCError) as refused:
        await send()
    assert refused.value.status == grpclib.const.Status.INVALID_ARGUMENT
    return refused.value


@pytest.mark.parametrize(
    ("worker_id", "function", "problem"),
    [
        ("w" * 201, "f", "a worker_id is 201 characters; at most 200"),
        ("w\n1", "f", "not printable"),
        ("w\u20281", "f", "not printable"),
        ("w1", "f" * 201, "a function's name is 201 characters"),
    ],
)
async def test_a_name_too_long_or_not_printable_is_refused_before_anything_logs_it(
    coordinator: Harness, worker_id: str, function: str, problem: str
) -> None:
    """Every line about a worker carries its id, and a token's refusal names the functions: a
    1 MB id was logged in full."""
    register = Register(worker_id=worker_id, functions=[FunctionSpec(name=function)])
    refused = await _refused(coordinator, register)
    assert problem in str(refused.message)
    assert len(str(refused.message)) < 300
    assert await coordinator.memory.called("register_functions", 0) == []


async def test_a_registration_the_engine_refuses_is_a_refusal_not_an_outage(
    coordinator: Harness,
) -> None:
    """The worker's owner must change what the engine refused; UNAVAILABLE would have the
    worker retry the same registration for ever, as if the engine were away."""
    register = Register(worker_id="w1", functions=[FunctionSpec(name="")])
    refused = await _refused(coordinator, register)
    assert "a function needs a name" in str(refused.message)
    async with coordinator.worker() as worker:  # a good registration is served after it
        [run] = await coordinator.start()
        assert await dispatched(worker) == run
        await worker.stream.end()

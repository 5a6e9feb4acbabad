"""The gRPC transport alone: a small in-memory Backend served and called over real loopback gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from trine_core import (
    INSECURE,
    Backend,
    ConfigError,
    Dispatcher,
    RunNotFound,
    Settings,
    Unavailable,
    UnknownFunction,
    WorkerRegistry,
)
from trine_core.errors import RunNotRetryable, UnknownBuild
from trine_core.testing import free_port, occupied_port
from trine_core.testing.workers import MemoryWorkerRegistry
from trine_proto.codec import GrpcCodec
from trine_proto.trine.v1 import (
    BackendStub,
    BuildInfo,
    Event,
    GetRunRequest,
    ListBuildsRequest,
    ListBuildsResponse,
    ListWorkersRequest,
    MoveRunRequest,
    RenewLeasesRequest,
    RetryRunRequest,
    Run,
    RunStatus,
    StartRunRequest,
    StartRunResponse,
    SubscribeRequest,
)
from trine_transport_grpc import GrpcTransport


class TinyBackend:
    """Just enough of a Backend: one known run, one known function, three events (the contract
    suites test the rest, in the cross-plugin tests)."""

    async def get_run(self, message: GetRunRequest) -> Run:
        if message.run_id != "r1":
            raise RunNotFound(f"no run {message.run_id!r}")
        return Run(id="r1", function="f", status=RunStatus.COMPLETED, result=b'{"ok":true}')

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        raise UnknownFunction(f"no worker registered {message.function!r}", known=["f"])

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        for seq in range(message.after_seq + 1, 4):
            yield Event(run_id=message.run_id, seq=seq, type="custom")
        if message.run_id == "live":  # a run that goes on: the stream stays open
            await asyncio.Event().wait()

    async def retry_run(self, message: RetryRunRequest) -> Run:
        if message.run_id != "failed":
            raise RunNotRetryable(f"run {message.run_id} is completed", status="completed")
        return Run(id="failed", status=RunStatus.PENDING, retries=1)

    async def move_run(self, message: MoveRunRequest) -> Run:
        raise UnknownBuild(f"no worker registered f with build {message.build_id!r}", known=["a"])

    async def list_builds(self, message: ListBuildsRequest) -> ListBuildsResponse:
        return ListBuildsResponse(builds=[BuildInfo(build_id="a", functions=["f"], open_runs=2)])


@pytest.fixture
async def remote() -> AsyncIterator[Backend]:
    address = f"grpc://127.0.0.1:{free_port()}"
    server, client = GrpcTransport(), GrpcTransport()
    await server.serve(Backend, TinyBackend(), address)  # type: ignore[arg-type]
    try:
        yield await client.connect(Backend, address)
    finally:
        await client.close()
        await server.close()


async def test_calls_cross_the_wire(remote: Backend) -> None:
    run = await remote.get_run(GetRunRequest(run_id="r1"))
    assert run == Run(id="r1", function="f", status=RunStatus.COMPLETED, result=b'{"ok":true}')


async def test_errors_arrive_as_the_same_types_with_details(remote: Backend) -> None:
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        await remote.get_run(GetRunRequest(run_id="nope"))
    with pytest.raises(UnknownFunction) as caught:
        await remote.start_run(StartRunRequest(function="g"))
    assert caught.value.details == {"known": ["f"]}


async def test_retry_move_and_builds_cross_the_wire(remote: Backend) -> None:
    retried = await remote.retry_run(RetryRunRequest(run_id="failed", reason="fixed"))
    assert (retried.id, retried.status, retried.retries) == ("failed", RunStatus.PENDING, 1)
    builds = await remote.list_builds(ListBuildsRequest())
    assert builds == ListBuildsResponse(
        builds=[BuildInfo(build_id="a", functions=["f"], open_runs=2)]
    )
    with pytest.raises(RunNotRetryable, match="is completed") as not_retryable:
        await remote.retry_run(RetryRunRequest(run_id="done"))
    assert not_retryable.value.details == {"status": "completed"}
    with pytest.raises(UnknownBuild, match="build 'b'") as unknown:
        await remote.move_run(MoveRunRequest(run_id="r1", build_id="b"))
    assert unknown.value.details == {"known": ["a"]}


async def test_a_refused_retry_or_move_travels_as_failed_precondition() -> None:
    """Generic gRPC tooling sees the status; our clients read the code from the body."""
    port = free_port()
    server = GrpcTransport()
    await server.serve(Backend, TinyBackend(), f"grpc://127.0.0.1:{port}")  # type: ignore[arg-type]
    channel = Channel("127.0.0.1", port, codec=GrpcCodec())
    try:
        stub = BackendStub(channel)
        with pytest.raises(GRPCError) as retry:
            await stub.retry_run(RetryRunRequest(run_id="done"))
        with pytest.raises(GRPCError) as move:
            await stub.move_run(MoveRunRequest(run_id="r1", build_id="b"))
        assert (retry.value.status, move.value.status) == (
            Status.FAILED_PRECONDITION,
            Status.FAILED_PRECONDITION,
        )
        assert '"code": "run_not_retryable"' in (retry.value.message or "")
        assert '"code": "unknown_build"' in (move.value.message or "")
    finally:
        channel.close()
        await server.close()


async def test_server_streams_arrive_in_order(remote: Backend) -> None:
    stream = remote.subscribe(SubscribeRequest(run_id="r1", after_seq=1))
    assert [event.seq async for event in stream] == [2, 3]


async def test_an_unreachable_peer_is_unavailable() -> None:
    client = GrpcTransport()
    backend = await client.connect(Backend, f"grpc://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable, match="cannot reach"):
            await backend.get_run(GetRunRequest(run_id="r1"))
    finally:
        await client.close()


async def test_port_in_use_is_a_config_error() -> None:
    with occupied_port() as port:
        where = f"127.0.0.1:{port} for backend/dispatcher: address"
        with pytest.raises(ConfigError, match=where):
            await GrpcTransport().serve(
                Backend,
                TinyBackend(),  # type: ignore[arg-type]
                f"grpc://127.0.0.1:{port}",
            )


async def test_open_streams_do_not_block_other_calls(remote: Backend) -> None:
    """An HTTP/2 connection carries at most 100 concurrent streams (the server's setting): a
    gateway with that many SSE clients must still reach the engine for everything else."""
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(150):
            stream = remote.subscribe(SubscribeRequest(run_id="live", after_seq=2))
            streams.push_async_callback(stream.aclose)
            assert (await asyncio.wait_for(anext(stream), 2)).seq == 3
        run = await asyncio.wait_for(remote.get_run(GetRunRequest(run_id="r1")), 2)
        assert run.id == "r1"


async def test_a_contract_not_served_answers_unimplemented(remote: Backend) -> None:
    """The server carries both contracts; only Backend is served here."""
    client = GrpcTransport()
    address = f"grpc://127.0.0.1:{free_port()}"
    server = GrpcTransport()
    await server.serve(Backend, TinyBackend(), address)  # type: ignore[arg-type]
    try:
        dispatcher = await client.connect(Dispatcher, address)
        with pytest.raises(Exception, match="dispatcher is not served here"):
            await dispatcher.renew_leases(RenewLeasesRequest())
    finally:
        await client.close()
        await server.close()


async def test_only_trines_contracts_are_carried() -> None:
    class Other:
        pass

    with pytest.raises(ConfigError, match="carries backend, dispatcher and worker_registry, not"):
        await GrpcTransport().connect(Other, "grpc://127.0.0.1:1")


async def test_a_worker_registry_served_alone_names_itself_when_its_port_is_taken() -> None:
    with (
        occupied_port() as port,
        pytest.raises(ConfigError, match=f"127.0.0.1:{port} for worker_registry: address"),
    ):
        await GrpcTransport().serve(
            WorkerRegistry, MemoryWorkerRegistry(), f"grpc://127.0.0.1:{port}"
        )


async def test_a_worker_registry_not_served_at_an_address_says_so() -> None:
    address = f"grpc://127.0.0.1:{free_port()}"
    server, client = GrpcTransport(), GrpcTransport()
    await server.serve(Backend, TinyBackend(), address)  # type: ignore[arg-type]
    try:
        registry = await client.connect(WorkerRegistry, address)
        with pytest.raises(Exception, match="worker_registry is not served here"):
            await registry.list_workers(ListWorkersRequest())
        unreachable = await client.connect(WorkerRegistry, f"grpc://127.0.0.1:{free_port()}")
        with pytest.raises(Unavailable, match="cannot reach"):
            await unreachable.list_workers(ListWorkersRequest())
    finally:
        await client.close()
        await server.close()


async def test_a_port_on_the_network_needs_mutual_tls_or_insecure() -> None:
    """Whoever reaches a served port controls runs: not on a non-loopback address in clear."""
    address = f"grpc://0.0.0.0:{free_port()}"
    transport = GrpcTransport(Settings())
    try:
        with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0:\d+ \(not loop"):
            await transport.serve(Backend, TinyBackend(), address)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="worker_registry: refusing"):
            await transport.serve(WorkerRegistry, MemoryWorkerRegistry(), address)
    finally:
        await transport.close()
    insecure = GrpcTransport(Settings({INSECURE: True}))
    try:
        await insecure.serve(Backend, TinyBackend(), address)  # type: ignore[arg-type]
    finally:
        await insecure.close()


async def test_without_tls_settings_it_serves_and_dials_plain() -> None:
    transport = GrpcTransport(Settings())
    assert transport.server_tls is None
    assert transport.client_tls is None

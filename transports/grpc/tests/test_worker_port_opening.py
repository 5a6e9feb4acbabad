"""A connection to the grpc:// worker port must open a stream within ``OPEN_TIMEOUT_S``: grpclib
alone kept a connection that never sent a request open for as long as its peer liked, so
strangers could hold the port's file descriptors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from structlog.testing import capture_logs

from trine_core import Settings, WorkerListener, WorkerServing, split_host_port
from trine_core.testing.worker_transport import LIMIT, LIMIT_SETTING, ScriptedHub, WorkerStream
from trine_transport_grpc import workers
from trine_transport_grpc.plugin import GrpcTransport

CLOSED = "closed a connection to the grpc:// worker port that opened no stream"


async def _nothing(stream: WorkerStream) -> None:
    await stream.receive()


@pytest.fixture
async def port(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, int]]:
    monkeypatch.setattr(workers, "OPEN_TIMEOUT_S", 0.3)
    transport = GrpcTransport(Settings())
    listener: WorkerListener = await transport.serve_workers(
        ScriptedHub(_nothing), "grpc://127.0.0.1:0", WorkerServing(LIMIT, LIMIT_SETTING)
    )
    try:
        host, number = split_host_port(listener.address.removeprefix("grpc://"), "")
        yield host, number
    finally:
        await listener.close()


async def test_a_connection_that_opens_no_stream_is_closed(port: tuple[str, int]) -> None:
    with capture_logs() as logs:
        reader, writer = await asyncio.open_connection(*port)
        try:
            await asyncio.wait_for(reader.read(), 5)  # grpclib's SETTINGS, then the end
            assert reader.at_eof()
        finally:
            writer.close()
    [closed] = [log for log in logs if log["event"] == CLOSED]
    assert closed["within_s"] == 0.3
    assert closed["peer"].startswith("127.0.0.1:")


async def test_a_connection_that_opened_a_stream_is_kept(port: tuple[str, int]) -> None:
    """The stranger connects after the client, so its deadline comes after the client's would
    have: once it is closed, the client's deadline has passed too."""
    channel = Channel(*port)
    try:
        health = HealthStub(channel)
        with capture_logs() as logs:
            first = await health.Check(HealthCheckRequest())
            assert first.status == HealthCheckResponse.SERVING
            reader, writer = await asyncio.open_connection(*port)
            try:
                await asyncio.wait_for(reader.read(), 5)
            finally:
                writer.close()
            again = await health.Check(HealthCheckRequest())
            assert again.status == HealthCheckResponse.SERVING
        assert len([log for log in logs if log["event"] == CLOSED]) == 1  # the stranger only
    finally:
        channel.close()

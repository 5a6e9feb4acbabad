"""The maximum gRPC message size: refused from the length prefix, on ports and on channels."""

from __future__ import annotations

import pytest

from trine_core import MAX_PAYLOAD_BYTES, Backend, ConfigError, Settings, TrineError
from trine_core.testing import free_port
from trine_proto.limits import derived_limit
from trine_proto.trine.v1 import GetRunRequest, Run, RunStatus, StartRunRequest, StartRunResponse
from trine_transport_grpc import GrpcTransport
from trine_transport_grpc.plugin import MAX_MESSAGE_BYTES

LIMIT = 1 << 20


class EchoBackend:
    """A run whose result is as large as its id asks: ``big`` is 2 MiB."""

    async def get_run(self, message: GetRunRequest) -> Run:
        size = 2 * LIMIT if message.run_id == "big" else 10
        return Run(id=message.run_id, status=RunStatus.COMPLETED, result=b"x" * size)

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        return StartRunResponse(run=Run(id="r1"))


async def _pair(server_limit: int, client_limit: int) -> tuple[GrpcTransport, GrpcTransport, str]:
    address = f"grpc://127.0.0.1:{free_port()}"
    server = GrpcTransport(Settings({MAX_MESSAGE_BYTES: server_limit}))
    client = GrpcTransport(Settings({MAX_MESSAGE_BYTES: client_limit}))
    await server.serve(Backend, EchoBackend(), address)
    return server, client, address


async def test_a_port_refuses_a_request_over_its_limit_and_serves_on() -> None:
    server, client, address = await _pair(LIMIT, 0)
    try:
        remote = await client.connect(Backend, address)
        with pytest.raises(TrineError) as caught:
            await remote.start_run(StartRunRequest(function="f", input=b"x" * (2 * LIMIT)))
        assert "RESOURCE_EXHAUSTED" in caught.value.message
        assert f"exceeds the limit of {LIMIT} bytes (grpc.max_message_bytes)" in (
            caught.value.message
        )
        # Just under the limit passes, and the port still serves.
        started = await remote.start_run(StartRunRequest(function="f", input=b"x" * (LIMIT - 64)))
        assert started.run is not None
        assert started.run.id == "r1"
    finally:
        await client.close()
        await server.close()


async def test_a_channel_refuses_a_reply_over_its_limit() -> None:
    server, client, address = await _pair(0, LIMIT)
    try:
        remote = await client.connect(Backend, address)
        with pytest.raises(TrineError, match="RESOURCE_EXHAUSTED"):
            await remote.get_run(GetRunRequest(run_id="big"))
        assert (await remote.get_run(GetRunRequest(run_id="small"))).result == b"x" * 10
    finally:
        await client.close()
        await server.close()


def test_the_limit_is_derived_from_the_payload_limit_unless_set() -> None:
    assert derived_limit(1 << 20) == 64 << 20  # the default: 64 payloads of 1 MiB
    assert derived_limit(1 << 10) == 4 << 20  # never under 4 MiB
    assert derived_limit(1 << 20, 5_000_000) == 5_000_000
    assert GrpcTransport(Settings({MAX_PAYLOAD_BYTES: 2 << 20})).max_message_bytes == 128 << 20
    with pytest.raises(ConfigError, match=r"grpc\.max_message_bytes"):
        _ = GrpcTransport(Settings({MAX_MESSAGE_BYTES: -1})).max_message_bytes

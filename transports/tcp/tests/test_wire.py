"""What the tcp worker port does with connections that are not a trine worker's, and what the
transport refuses to carry."""

from __future__ import annotations

import asyncio

import pytest
import structlog.testing

from trine_core import Backend, ConfigError, Settings, WorkerServing
from trine_core.testing.worker_transport import LIMIT, ScriptedHub, echo
from trine_proto import frames
from trine_transport_tcp.plugin import TcpTransport
from trine_transport_tcp.workers import TcpWorkerListener

WAIT_S = 10.0
REFUSED = "refused a connection to the tcp:// worker port"


async def listening(hub: ScriptedHub) -> tuple[TcpTransport, TcpWorkerListener, int]:
    transport = TcpTransport(Settings())
    listener = await transport.serve_workers(
        hub, "tcp://127.0.0.1:0", WorkerServing(LIMIT, "contract.max_message_bytes")
    )
    return transport, listener, int(listener.address.rsplit(":", 1)[1])


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (it must close it)."""
    return await asyncio.wait_for(reader.read(), WAIT_S)


@pytest.mark.parametrize(
    ("opening", "reason"),
    [
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "trine worker preamble"),  # a grpc:// worker
        (frames.PREAMBLE + frames.frame(frames.MESSAGE, b"\x08\x01"), "not HELLO"),
        (frames.PREAMBLE + frames.frame(frames.HELLO, b"[1, 2]"), "not an object of strings"),
        (frames.PREAMBLE + frames.frame(frames.HELLO, b"{"), "not JSON"),
        (frames.PREAMBLE + frames.HEADER.pack(frames.HELLO, 1 << 20), "over the limit"),
    ],
)
async def test_a_connection_that_does_not_open_as_a_worker_is_closed_and_logged(
    opening: bytes, reason: str
) -> None:
    hub = ScriptedHub(echo)
    transport, _, port = await listening(hub)
    try:
        with structlog.testing.capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(opening)
            assert await closed_by_server(reader) == b""
            writer.close()
            await writer.wait_closed()
        refused = [e for e in logs if e["event"] == REFUSED]
        assert len(refused) == 1, logs
        assert reason in refused[0]["reason"]
        assert hub.served.empty()  # the hub never saw it
    finally:
        await transport.close()


async def test_the_port_serves_workers_after_refusing_a_stranger() -> None:
    hub = ScriptedHub(echo)
    transport, _, port = await listening(hub)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        assert await closed_by_server(reader) == b""
        writer.close()
        await writer.wait_closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frames.hello({"Trine-Worker-Instance": "i-7"}) + frames.frame(frames.END))
        assert await closed_by_server(reader) == frames.frame(frames.END)
        served = await hub.next()
        assert served.stream.metadata == {"trine-worker-instance": "i-7"}  # names lower-cased
        writer.close()
        await writer.wait_closed()
    finally:
        await transport.close()


async def test_a_frame_of_a_kind_the_wire_does_not_have_ends_the_stream_as_invalid() -> None:
    hub = ScriptedHub(echo)
    transport, _, port = await listening(hub)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frames.hello({}) + frames.HEADER.pack(9, 0))
        ending = await closed_by_server(reader)
        kind, length = frames.HEADER.unpack(ending[: frames.HEADER.size])
        assert (kind, length) == (frames.ERROR, len(ending) - frames.HEADER.size)
        code, message = frames.read_error(ending[frames.HEADER.size :])
        assert (code, message) == ("invalid_argument", "the worker sent a frame of unknown kind 9")
        writer.close()
        await writer.wait_closed()
    finally:
        await transport.close()


async def test_a_port_in_use_is_one_line_naming_it() -> None:
    hub = ScriptedHub(echo)
    transport, _, port = await listening(hub)
    try:
        in_use = rf"tcp: cannot listen on 127.0.0.1:{port} for workers: address already in use"
        with pytest.raises(ConfigError, match=in_use):
            await TcpTransport(Settings()).serve_workers(
                hub, f"tcp://127.0.0.1:{port}", WorkerServing(LIMIT, "x")
            )
    finally:
        await transport.close()


async def test_roles_are_not_carried_over_tcp() -> None:
    transport = TcpTransport(Settings())
    with pytest.raises(ConfigError, match="carries workers only, not backend"):
        await transport.connect(Backend, "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="give roles a grpc:// address"):
        await transport.serve(Backend, object(), "tcp://127.0.0.1:1")  # type: ignore[arg-type]

"""What the tcp worker port does with connections that are not a trine worker's, and what the
transport refuses to carry."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import structlog.testing

from trine._tcp_transport import TcpCoordinatorStream
from trine.transport import ConnectOptions, StreamError, connector_for
from trine_core import Backend, ConfigError, Settings, Unauthenticated, WorkerServing, WorkerStream
from trine_core.testing import eventually
from trine_core.testing.worker_transport import (
    LIMIT,
    ScriptedHub,
    ack,
    echo,
    next_ack,
    report,
    stream_end,
)
from trine_proto import frames
from trine_proto.vocabulary import ErrorCode
from trine_transport_tcp import workers
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
        (frames.PREAMBLE + frames.frame(frames.HELLO, b"[" * 60_000), "not JSON"),
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


async def dropped_by_server(reader: asyncio.StreamReader) -> None:
    """The server dropped the connection (a reset, or an end: it never answered)."""
    with contextlib.suppress(ConnectionResetError):
        assert await closed_by_server(reader) == b""


async def test_beyond_the_greeting_cap_the_longest_waiting_connection_makes_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "MAX_GREETING", 2)
    hub = ScriptedHub(echo)
    transport, listener, port = await listening(hub)
    try:
        with structlog.testing.capture_logs() as logs:
            oldest, newer = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            # polled: accepting a connection is no event a test sees
            await eventually(lambda: listener.greeting == 2, "both accepted, waiting for HELLO")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frames.hello({}) + frames.frame(frames.END))
            assert await closed_by_server(reader) == frames.frame(frames.END)  # served
            await hub.next()
            await dropped_by_server(oldest[0])
            assert listener.greeting == 1  # the newer one waits on
            for _, silent in (oldest, newer):
                silent.close()
            writer.close()
        dropped = [e for e in logs if e["event"].startswith("dropped connections")]
        assert [e["dropped"] for e in dropped] == [1], logs
        assert "more than 2 were waiting" in dropped[0]["event"]
    finally:
        await transport.close()


async def test_connections_dropped_after_the_first_are_logged_as_a_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "MAX_GREETING", 1)
    monkeypatch.setattr(workers, "DROPPED_LOG_EVERY_S", 3600.0)  # no line falls due in the test
    hub = ScriptedHub(echo)
    transport, _, port = await listening(hub)
    with structlog.testing.capture_logs() as logs:

        def lines() -> list[int]:
            return [e["dropped"] for e in logs if e["event"].startswith("dropped connections")]

        try:
            opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
            for reader, _ in opened[:-1]:  # each newcomer dropped the one before it
                await dropped_by_server(reader)
            assert lines() == [1]  # the first at once; the others wait for the line due
        finally:
            await transport.close()  # which logs what was still to log
        assert lines() == [1, 2], logs
        for _, writer in opened:
            writer.close()


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


async def dial(port: int) -> TcpCoordinatorStream:
    address = f"tcp://127.0.0.1:{port}"
    options = ConnectOptions(metadata={}, max_message_bytes=4 * LIMIT)
    stream = await connector_for(address).connect(address, options)
    assert isinstance(stream, TcpCoordinatorStream)
    return stream


async def keep_sending(worker: TcpCoordinatorStream, count: int = 2000) -> None:
    """Send ``count`` reports without reading, letting the loop run between them (the worker's
    reader, and the port), as a busy worker does; stop at the first that fails."""
    for i in range(count):
        try:
            await worker.send(report(i))
        except ConnectionError:
            return
        await asyncio.sleep(0)


async def test_a_refusal_reaches_a_worker_that_is_still_sending() -> None:
    """The port refuses a worker (a revoked token) while the worker is busy sending: it closes
    only once the worker has read the refusal, or the reset its sends then meet would overtake
    the refusal."""

    async def refuse(stream: WorkerStream) -> None:
        await stream.receive()
        raise Unauthenticated("token 'w' was revoked")

    transport, _, port = await listening(ScriptedHub(refuse))
    worker = await dial(port)
    try:
        await keep_sending(worker)
        error = await stream_end(worker)
        assert isinstance(error, StreamError), error
        assert (error.code, error.message) == (ErrorCode.UNAUTHENTICATED, "token 'w' was revoked")
    finally:
        await worker.close()
        await transport.close()


async def test_a_read_the_hub_left_behind_does_not_break_the_streams_end() -> None:
    """The coordinator reads in a task of its own and, when it ends a session, cancels that task
    without waiting for it: the port still ends the stream properly, and nothing is logged as an
    unhandled error by the loop."""
    unhandled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))

    async def fence(stream: WorkerStream) -> None:
        await stream.receive()
        await stream.send(ack(1))  # nothing left unread: the left-behind read waits on the socket
        reading = asyncio.create_task(stream.receive())
        await asyncio.sleep(0)  # the read is waiting on the connection
        reading.cancel()
        raise Unauthenticated("replaced by a newer session")

    hub = ScriptedHub(fence)
    transport, _, port = await listening(hub)
    worker = await dial(port)
    try:
        await worker.send(report(1))
        assert await next_ack(worker) == 1
        await keep_sending(worker)
        error = await stream_end(worker)
        assert isinstance(error, StreamError), error
        assert error.code == ErrorCode.UNAUTHENTICATED
        await asyncio.wait_for((await hub.next()).ended, WAIT_S)
    finally:
        await worker.close()
        await transport.close()
    assert unhandled == []


async def test_closing_a_worker_stream_the_coordinator_stopped_reading_does_not_wait() -> None:
    """A coordinator that stopped reading (stalled, or its host gone) must not hold the worker's
    close, and so its next session, until TCP gives up."""
    stalled = asyncio.Event()

    async def never_read(stream: WorkerStream) -> None:
        await stalled.wait()

    transport, _, port = await listening(ScriptedHub(never_read))
    worker = await dial(port)
    try:
        worker._writer.write(b"x" * (32 << 20))  # more than the sockets' buffers take
        assert worker._writer.transport.get_write_buffer_size() > 0
        await asyncio.wait_for(worker.close(), WAIT_S)
    finally:
        stalled.set()
        await transport.close()

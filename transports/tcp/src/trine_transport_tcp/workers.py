"""The worker port on plain TCP: each connection one worker's stream, its messages framed as
:mod:`trine_proto.frames` says, handed to the coordinator's :class:`~trine_core.WorkerHub`.

What the grpc transport gets from HTTP/2 this one does itself, and no more: a refusal is an
``ERROR`` frame with the code and message; a normal end an ``END`` frame; a message over the limit
is refused from its header. It has no health service (the coordinator's HTTP ``/health`` tells).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from trine_core import (
    InvalidArgument,
    PayloadTooLarge,
    TrineError,
    Unavailable,
    WorkerHub,
    WorkerServing,
    cannot_listen,
    get_logger,
    join_host_port,
    split_host_port,
)
from trine_proto import frames
from trine_proto.codec import decode, encode
from trine_proto.limits import too_large
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage
from trine_proto.vocabulary import ErrorCode

HELLO_TIMEOUT_S = 10.0
"""How long a new connection has to finish its TLS handshake, and to send its preamble and
``HELLO``."""
MAX_GREETING = 256
"""At most this many connections may be waiting to send their ``HELLO`` at once (counted once
accepted, after their TLS handshake: asyncio runs that before the listener sees them). Each costs
a task and its buffers for up to :data:`HELLO_TIMEOUT_S`, so the bound bounds what a flood of
strangers costs. When one more comes, the one that has waited longest is dropped, not the
newcomer: a worker sends its ``HELLO`` within milliseconds of connecting, so the oldest is the
likeliest stranger, and a flood keeps a worker out only by opening more than this many
connections within the worker's few milliseconds. A worker dropped all the same retries with
its backoff."""
DROPPED_LOG_EVERY_S = 10.0
"""The port logs the first connection it drops for :data:`MAX_GREETING` at once, then, at the end
of each such interval that had more, how many more (a flood must not flood the log too)."""
LINGER_S = 1.0
"""How long a stream that ended keeps reading (and dropping) what the worker still sends, so its
``END`` or ``ERROR`` frame is read before the connection closes: closing a socket with unread data
resets it, and a reset can overtake the frame."""

log = get_logger("tcp")


class TcpWorkerStream:
    """One worker's connection as a :class:`~trine_core.WorkerStream`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        metadata: Mapping[str, str],
        serving: WorkerServing,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._serving = serving
        self.metadata = metadata
        self.peer = _peer(writer)
        self.failure: TrineError | None = None
        """Why reading failed (a message over the limit): the stream ends with it."""
        self._remote_ended = False
        self._over = False
        self._receiving: asyncio.Task[object] | None = None

    async def receive(self) -> WorkerMessage | None:
        if self._over:
            raise Unavailable("the worker's stream is over")
        if self._remote_ended:
            return None
        self._receiving = asyncio.current_task()
        try:
            kind, body = await frames.read_frame(self._reader, self._serving.max_message_bytes)
        except frames.FrameTooLarge as exc:
            error: TrineError = PayloadTooLarge(
                too_large(exc.length, exc.limit, self._serving.limit_setting)
            )
        except frames.WireError as exc:
            error = InvalidArgument(f"the worker sent {exc}")
        except frames.BROKEN as exc:
            error = Unavailable(f"the worker's connection broke: {type(exc).__name__}: {exc}")
        else:
            if kind == frames.MESSAGE:
                try:
                    return decode(WorkerMessage, body)
                except Exception:  # upb's DecodeError, or what a converter raises
                    error = InvalidArgument("the worker sent a message that is not a WorkerMessage")
            elif kind == frames.END:
                self._remote_ended = True
                return None
            else:
                error = InvalidArgument(f"the worker sent a frame of kind {kind} mid-stream")
        self.failure = self.failure or error
        raise error

    async def send(self, message: CoordinatorMessage) -> None:
        if self._writer.is_closing():
            raise Unavailable("the worker's connection is closed")
        self._writer.write(frames.frame(frames.MESSAGE, encode(message)))
        try:
            await self._writer.drain()
        except frames.BROKEN as exc:
            raise Unavailable(f"the worker's connection broke: {type(exc).__name__}") from None

    async def over(self) -> None:
        """The hub is done with the stream: a read it left behind (a task it cancelled and did
        not wait for) is let go of, so the transport can read the connection to its end."""
        self._over = True
        reading = self._receiving
        if reading is not None and reading is not asyncio.current_task() and not reading.done():
            reading.cancel()
            await asyncio.wait({reading}, timeout=LINGER_S)


class TcpWorkerListener:
    """An asyncio server on the worker port; one task per connection."""

    def __init__(self, hub: WorkerHub, serving: WorkerServing) -> None:
        self._hub = hub
        self._serving = serving
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        """Connections waiting to send their ``HELLO``, the longest waiting first."""
        self._dropped = 0  # connections dropped for MAX_GREETING since the last log line
        self._dropped_report: asyncio.TimerHandle | None = None  # its next line, if one is due
        self._closing = False
        self.address = ""

    async def start(self, address: str) -> None:
        host, port = split_host_port(address.removeprefix("tcp://"), address)
        if self._serving.tls is not None:  # the coordinator makes this context for this port
            self._serving.tls.set_alpn_protocols([frames.ALPN])
        try:
            self._server = await asyncio.start_server(
                self._connected,
                host,
                port,
                ssl=self._serving.tls,
                ssl_handshake_timeout=HELLO_TIMEOUT_S if self._serving.tls else None,
                limit=2**16,
            )
        except OSError as exc:
            raise cannot_listen("tcp", f"{host}:{port} for workers", exc) from None
        bound = self._server.sockets[0].getsockname()[1] if self._server.sockets else port
        self.address = f"tcp://{join_host_port(host, bound)}"

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._dropped_report is not None:
            self._dropped_report.cancel()
            self._report_dropped(last=True)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted as the listener closed: this task was not there to cancel
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._waiting) >= MAX_GREETING:
                self._drop_longest_waiting()
            self._waiting[task] = writer
            try:
                metadata = await self._hello(reader, writer)
            finally:
                self._waiting.pop(task, None)
            if metadata is not None:
                await self._serve(TcpWorkerStream(reader, writer, metadata, self._serving))
        except asyncio.CancelledError:
            # The listener closing (or the loop ending): asyncio's callback on this task reads
            # its exception, and a cancelled task's would be logged as an error.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    @property
    def greeting(self) -> int:
        """How many connections are waiting to send their ``HELLO`` now."""
        return len(self._waiting)

    def _drop_longest_waiting(self) -> None:
        """Make room for one more connection (:data:`MAX_GREETING` says why the oldest goes);
        its task then reads the end of its connection and leaves."""
        task = next(iter(self._waiting))
        writer = self._waiting.pop(task)
        writer.transport.abort()
        self._dropped += 1
        if self._dropped_report is None:
            self._report_dropped(peer=_peer(writer))

    def _report_dropped(self, peer: str = "", last: bool = False) -> None:
        """Log the connections dropped since the last line, if any, and (unless ``last``) keep
        a line due :data:`DROPPED_LOG_EVERY_S` from now; with none to log, none is due."""
        self._dropped_report = None
        if not self._dropped:
            return
        log.warning(
            "dropped connections to the tcp:// worker port that had not sent their HELLO: "
            f"more than {MAX_GREETING} were waiting",
            dropped=self._dropped,
            **({"peer": peer} if peer else {"within_s": DROPPED_LOG_EVERY_S}),
        )
        self._dropped = 0
        if not last:
            loop = asyncio.get_running_loop()
            self._dropped_report = loop.call_later(DROPPED_LOG_EVERY_S, self._report_dropped)

    async def _hello(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, str] | None:
        """The metadata of a connection that opened as a trine worker does; None (logged) for
        anything else, which is then closed without a word."""
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                preamble = await reader.readexactly(len(frames.PREAMBLE))
                if preamble != frames.PREAMBLE:
                    raise frames.WireError(
                        "it did not open with the trine worker preamble (a grpc:// worker, or not "
                        "a worker at all?)"
                    )
                kind, body = await frames.read_frame(reader, frames.MAX_HELLO_BYTES)
                if kind != frames.HELLO:
                    raise frames.WireError(f"its first frame is of kind {kind}, not HELLO")
                return frames.read_hello(body)
        except (frames.WireError, frames.FrameTooLarge) as exc:
            log.warning(
                "refused a connection to the tcp:// worker port",
                peer=_peer(writer),
                reason=str(exc),
            )
        except (*frames.BROKEN, TimeoutError):
            pass
        return None

    async def _serve(self, stream: TcpWorkerStream) -> None:
        try:
            await self._hub.serve(stream)
        except TrineError as exc:
            ending = frames.error(exc.code, exc.message)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            ending = frames.error(ErrorCode.UNAVAILABLE, "the coordinator closed its worker port")
        except Exception:
            log.exception("serving a worker failed", peer=stream.peer)
            ending = frames.error(ErrorCode.INTERNAL, "the coordinator failed serving this worker")
        else:
            failure = stream.failure
            ending = (
                frames.error(failure.code, failure.message)
                if failure is not None
                else frames.frame(frames.END)
            )
        await stream.over()
        await _end(stream._reader, stream._writer, ending)


async def _end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ending: bytes) -> None:
    """Send the stream's last frame, then drop what the worker still sends until it closes (at
    most :data:`LINGER_S`), so the frame is read before the connection goes. A worker that did
    not close by then (its host vanished, it stopped reading) is dropped: a graceful close would
    wait on its unsent bytes until TCP gave up."""
    if writer.is_closing():
        return
    closed_by_worker = False
    # RuntimeError: a read the hub left behind still waits on the reader (see TcpWorkerStream.over).
    with contextlib.suppress(*frames.BROKEN, TimeoutError, RuntimeError):
        writer.write(ending)
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            await writer.drain()
            while await reader.read(2**16):
                pass
            closed_by_worker = True
    if not closed_by_worker:
        writer.transport.abort()


async def serve_workers(hub: WorkerHub, address: str, serving: WorkerServing) -> TcpWorkerListener:
    """Listen for workers at ``tcp://host:port`` (port 0: any free one, named in the listener's
    ``address``)."""
    listener = TcpWorkerListener(hub, serving)
    await listener.start(address)
    return listener


def _peer(writer: asyncio.StreamWriter) -> str:
    """The remote ``host:port`` of a connection ("" if unknown)."""
    with contextlib.suppress(Exception):
        address = writer.get_extra_info("peername")
        if address:
            return f"{address[0]}:{address[1]}"
    return ""

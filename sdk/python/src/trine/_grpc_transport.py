"""The SDK's own worker transport: ``grpc://host:port``, one ``WorkerService.Connect`` stream
(grpclib, HTTP/2) per session. Registered as the ``grpc`` entry point of
``trine.worker_transports`` in the SDK's pyproject, as a third party's would be."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpclib
from grpclib.client import Channel, Stream
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.exceptions import ProtocolError, StreamTerminatedError

from trine_proto.addresses import host_port
from trine_proto.limits import BoundedCodec
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage
from trine_proto.vocabulary import ErrorCode

from .transport import LIMIT_SETTING, ConnectOptions, StreamError

CONNECT = "/trine.v1.WorkerService/Connect"
CODES = {
    Status.UNAUTHENTICATED: ErrorCode.UNAUTHENTICATED,
    Status.PERMISSION_DENIED: ErrorCode.PERMISSION_DENIED,
    Status.ALREADY_EXISTS: ErrorCode.WORKER_ID_IN_USE,
    Status.RESOURCE_EXHAUSTED: ErrorCode.PAYLOAD_TOO_LARGE,
    Status.INVALID_ARGUMENT: ErrorCode.INVALID_ARGUMENT,
    Status.UNAVAILABLE: ErrorCode.UNAVAILABLE,
}
"""The error code of each status a coordinator ends a worker's stream with (any other:
``internal``)."""
BROKEN = (StreamTerminatedError, ProtocolError, OSError)
KEEPALIVE_S = 10.0
"""An HTTP/2 ping every this long on the worker's stream (grpclib sends none by default): the
worker finds a coordinator whose host vanished without a reset, instead of heartbeating into
nothing until TCP gives up minutes later, and reconnects."""
KEEPALIVE_TIMEOUT_S = 10.0
"""A ping unanswered this long closes the stream, and the worker reconnects."""


class GrpcConnector:
    """Opens ``WorkerService.Connect`` streams: one channel (connection) per stream."""

    async def connect(self, address: str, options: ConnectOptions) -> GrpcCoordinatorStream:
        host, port = host_port(address)
        # A work item over the limit is refused from its length prefix (trine_proto.limits).
        codec = BoundedCodec(options.max_message_bytes, LIMIT_SETTING)
        config = Configuration(
            _keepalive_time=KEEPALIVE_S,
            _keepalive_timeout=KEEPALIVE_TIMEOUT_S,
            _http2_max_pings_without_data=0,  # no limit: an idle worker's stream is still watched
            _http2_min_sent_ping_interval_without_data=KEEPALIVE_S,
        )
        channel = Channel(host, port, codec=codec, ssl=options.tls, config=config)
        try:
            stream: Stream[WorkerMessage, CoordinatorMessage] = channel.request(
                CONNECT,
                Cardinality.STREAM_STREAM,
                WorkerMessage,
                CoordinatorMessage,
                metadata=dict(options.metadata),
            )
            await stream.__aenter__()
            opened = GrpcCoordinatorStream(channel, stream, plain_text=options.tls is None)
            with opened.translated():
                # grpclib: open the HTTP/2 stream before reading, or the first read hangs.
                await stream.send_request()
        except BaseException:
            channel.close()
            raise
        return opened


class GrpcCoordinatorStream:
    """One ``Connect`` stream and its channel, as a :class:`~trine.transport.CoordinatorStream`."""

    def __init__(
        self,
        channel: Channel,
        stream: Stream[WorkerMessage, CoordinatorMessage],
        plain_text: bool,
    ) -> None:
        self._channel = channel
        self._stream = stream
        self._plain_text = plain_text
        self._ended = False  # we ended our side
        self._remote_ended = False  # the coordinator ended its side
        self._closed = False
        self._answered = False  # the coordinator sent a message: it speaks this wire

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """grpclib's errors as the transport's: a status → StreamError, a broken connection →
        ConnectionError."""
        try:
            try:
                yield
            except StreamTerminatedError:
                # A coordinator that ends the stream with an error status while ours is open
                # resets it: its status is in the headers or trailers it sent first.
                self._raise_status()
                raise
        except grpclib.GRPCError as exc:
            code = CODES.get(exc.status, ErrorCode.INTERNAL)
            raise StreamError(code, exc.message or exc.status.name) from None
        except BROKEN as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, StreamTerminatedError | ProtocolError) and not self._answered:
                # A TLS listener drops a plain-text HTTP/2 preface without a word; a tcp:// port
                # closes a connection that does not open as its wire does.
                if self._plain_text:
                    reason += "; if the coordinator serves TLS, set TRINE_TLS_CA"
                reason += "; if its worker port is tcp://, use that"
            raise ConnectionError(reason) from None

    def _raise_status(self) -> None:
        """Raise the ``GRPCError`` of the status the coordinator ended the stream with, if it
        sent one other than OK (what grpclib itself does when leaving the stream's context; it
        reads trailers only once our side ended too, so a stream the coordinator ended while
        ours is open needs this). Private to grpclib (pinned <0.5): the worker transport
        contract's refusal-after-messages tests, run by transports/grpc, fail without it."""
        self._stream._maybe_raise()

    async def send(self, message: WorkerMessage) -> None:
        with self.translated():
            await self._stream.send_message(message)

    async def receive(self) -> CoordinatorMessage | None:
        with self.translated():
            message = await self._stream.recv_message()
            self._answered = True
            if message is None:
                self._remote_ended = True
                self._raise_status()
            return message

    async def end(self) -> None:
        with self.translated():
            await self._stream.end()
        self._ended = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not (self._ended and self._remote_ended):
                # Unless both sides ended, grpclib would wait for trailers (and raise "Outgoing
                # stream was not ended"): reset the stream instead.
                with contextlib.suppress(Exception):
                    await self._stream.cancel()
            with contextlib.suppress(Exception):
                await self._stream.__aexit__(None, None, None)
        finally:
            self._channel.close()

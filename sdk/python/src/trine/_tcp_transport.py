"""The SDK's lean worker transport: ``tcp://host:port``, the ``trine.v1`` worker messages as
length-prefixed frames on one TCP (or TLS) connection (:mod:`trine_proto.frames`), for
coordinators that serve it (``worker_addr = "tcp://…"``, trine-transport-tcp). It does what the
``grpc://`` one does without HTTP/2 around each message. Registered as the ``tcp`` entry point of
``trine.worker_transports``."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from trine_proto import frames
from trine_proto.addresses import host_port
from trine_proto.codec import decode, encode
from trine_proto.limits import too_large
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage
from trine_proto.vocabulary import ErrorCode

from .transport import LIMIT_SETTING, ConnectOptions, StreamError

# A coordinator whose host vanished (no reset ever comes) is found in about 20 s, as the grpc
# transport's HTTP/2 pings find it: keepalive probes while the connection is idle, and
# TCP_USER_TIMEOUT while data waits for an acknowledgement (the heartbeats every few seconds
# mean there nearly always is some, and Linux sends no keepalive probe then).
KEEPALIVE_IDLE_S = 10
"""Keepalive probes start after this long without traffic."""
KEEPALIVE_INTERVAL_S = 5
"""Between two probes."""
KEEPALIVE_PROBES = 2
"""Probes unanswered before the connection is dropped."""
USER_TIMEOUT_MS = 20_000
"""Sent data unacknowledged this long drops the connection (Linux)."""
CLOSE_TIMEOUT_S = 1.0
"""How long a stream both sides ended waits for its last bytes to go before it is dropped."""


class TcpConnector:
    """Opens one connection per stream."""

    async def connect(self, address: str, options: ConnectOptions) -> TcpCoordinatorStream:
        host, port = host_port(address)
        if options.tls is not None:  # the worker's own context, made for this address
            options.tls.set_alpn_protocols([frames.ALPN])
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=options.tls,
            server_hostname=host if options.tls is not None else None,
            limit=2**16,
        )
        _watch_for_a_vanished_peer(writer)
        writer.write(frames.hello(options.metadata))
        return TcpCoordinatorStream(reader, writer, options)


def _watch_for_a_vanished_peer(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    wanted = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", KEEPALIVE_PROBES),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ]
    for level, name, value in wanted:
        option = getattr(socket, name, None)  # not every platform has every option
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, value)


class TcpCoordinatorStream:
    """One connection to the coordinator, as a :class:`~trine.transport.CoordinatorStream`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, options: ConnectOptions
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._limit = options.max_message_bytes
        self._plain_text = options.tls is None
        self._answered = False  # a frame came: the coordinator speaks this wire
        self._ended = False  # we ended our side
        self._remote_ended = False  # the coordinator ended its side
        self._closed = False

    async def send(self, message: WorkerMessage) -> None:
        await self._write(frames.frame(frames.MESSAGE, encode(message)))

    async def receive(self) -> CoordinatorMessage | None:
        try:
            kind, body = await frames.read_frame(self._reader, self._limit)
        except frames.FrameTooLarge as exc:
            raise StreamError(
                ErrorCode.PAYLOAD_TOO_LARGE, too_large(exc.length, exc.limit, LIMIT_SETTING)
            ) from None
        except frames.WireError as exc:
            raise ConnectionError(f"the coordinator sent {exc}{self._hints()}") from None
        except frames.BROKEN as exc:
            raise ConnectionError(self._broken(exc)) from None
        self._answered = True
        if kind == frames.MESSAGE:
            try:
                return decode(CoordinatorMessage, body)
            except Exception:  # upb's DecodeError, or what a converter raises
                what = "a MESSAGE frame that is not a CoordinatorMessage"
                raise ConnectionError(f"the coordinator sent {what}") from None
        if kind == frames.END:
            self._remote_ended = True
            return None
        if kind == frames.ERROR:
            raise StreamError(*frames.read_error(body))
        raise ConnectionError(f"the coordinator sent a frame of kind {kind}, which it never sends")

    async def end(self) -> None:
        if not self._ended:
            self._ended = True
            await self._write(frames.frame(frames.END))

    async def close(self) -> None:
        """Both sides ended: close, waiting a moment for the last bytes to go. Otherwise drop the
        connection at once: a coordinator that stopped reading would hold a graceful close (and
        the worker's next session) until TCP gave up."""
        if self._closed:
            return
        self._closed = True
        if self._ended and self._remote_ended:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT_S)
        self._writer.transport.abort()  # a no-op once closed
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT_S)

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionError("the connection to the coordinator is closed")
        self._writer.write(data)
        try:
            await self._writer.drain()
        except frames.BROKEN as exc:
            raise ConnectionError(self._broken(exc)) from None

    def _hints(self) -> str:
        """What to check when the coordinator broke off before it sent anything: the connection
        may have reached a port of another wire, or a TLS port in plain text."""
        if self._answered:
            return ""
        tls = "; if the coordinator serves TLS, set TRINE_TLS_CA" if self._plain_text else ""
        return f"{tls}; if its worker port is grpc://, use that"

    def _broken(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.IncompleteReadError):
            return f"the coordinator closed the connection{self._hints()}"
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

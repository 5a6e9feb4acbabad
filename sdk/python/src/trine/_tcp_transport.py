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
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage
from trine_proto.vocabulary import ErrorCode

from .transport import ConnectOptions, StreamError

KEEPALIVE_IDLE_S = 10
"""TCP keepalive probes start after this long without traffic: a worker finds a coordinator whose
host vanished without a reset (as the grpc transport's HTTP/2 pings do), and reconnects."""
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_PROBES = 2
BROKEN = (ConnectionError, asyncio.IncompleteReadError, OSError)
HINT = "; if the coordinator serves TLS, set TRINE_TLS_CA; if its worker port is grpc://, use that"


class TcpConnector:
    """Opens one connection per stream."""

    async def connect(self, address: str, options: ConnectOptions) -> TcpCoordinatorStream:
        host, port = host_port(address)
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=options.tls,
            server_hostname=host if options.tls is not None else None,
            limit=2**16,
        )
        _keepalive(writer)
        writer.write(frames.hello(options.metadata))
        return TcpCoordinatorStream(reader, writer, options.max_message_bytes)


def _keepalive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # not every platform has every option
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class TcpCoordinatorStream:
    """One connection to the coordinator, as a :class:`~trine.transport.CoordinatorStream`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._limit = limit
        self._ended = False
        self._closed = False

    async def send(self, message: WorkerMessage) -> None:
        await self._write(frames.frame(frames.MESSAGE, encode(message)))

    async def receive(self) -> CoordinatorMessage | None:
        try:
            kind, body = await frames.read_frame(self._reader, self._limit)
        except frames.FrameTooLarge as exc:
            raise StreamError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"a message of {exc.length} bytes exceeds the limit of {exc.limit} bytes "
                "(derived from the worker's max_payload_bytes)",
            ) from None
        except frames.WireError as exc:
            raise ConnectionError(f"the coordinator does not speak tcp:// ({exc}){HINT}") from None
        except BROKEN as exc:
            raise ConnectionError(_broken(exc)) from None
        if kind == frames.MESSAGE:
            return decode(CoordinatorMessage, body)
        if kind == frames.END:
            return None
        if kind == frames.ERROR:
            raise StreamError(*frames.read_error(body))
        raise ConnectionError(f"the coordinator sent a {kind} frame, which only a worker sends")

    async def end(self) -> None:
        if not self._ended:
            self._ended = True
            await self._write(frames.frame(frames.END))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionError("the connection to the coordinator is closed")
        self._writer.write(data)
        try:
            await self._writer.drain()
        except BROKEN as exc:
            raise ConnectionError(_broken(exc)) from None


def _broken(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"the coordinator closed the connection{HINT}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

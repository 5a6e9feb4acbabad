"""The worker port over gRPC: ``WorkerService.Connect`` (one bidirectional stream per worker),
served for the coordinator's :class:`~trine_core.WorkerHub`.

The wire is what it was before worker transports were plugins: the service and method names, the
``trine.v1`` messages, a refusal as the gRPC status its code maps to with the plain message (what
the SDK shows its user), the standard gRPC health service (``SERVING`` while the hub says it is
healthy). So any SDK, old or new, works with any coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import grpclib
import grpclib.server
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import ProtocolError, StreamTerminatedError
from grpclib.health.check import ServiceCheck
from grpclib.health.service import Health
from grpclib.protocol import H2Protocol
from grpclib.server import Server

from trine_core import (
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
from trine_proto.limits import BoundedCodec
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage
from trine_transport_grpc.errors import STATUS_BY_CODE

CONNECT = "/trine.v1.WorkerService/Connect"
BROKEN = (StreamTerminatedError, ProtocolError, OSError)
"""What grpclib raises when a worker's connection breaks (reset, closed, killed peer)."""
log = get_logger("grpc")
OPEN_TIMEOUT_S = 10.0
"""How long a connection to the worker port has to open its first stream (from its TCP accept,
or the end of its TLS handshake). A worker opens its ``Connect`` stream within milliseconds;
grpclib alone keeps a connection that never sends a request for as long as its peer likes, so
strangers could hold the port's file descriptors (the ``tcp://`` port gives its ``HELLO`` the
same 10 s)."""


class _OpeningProtocol(H2Protocol):
    """grpclib's HTTP/2 protocol, closing a connection that opens no stream in time."""

    def __init__(self, handler: Any, config: Any, h2_config: Any) -> None:
        super().__init__(handler, config, h2_config)
        self._deadline: asyncio.TimerHandle | None = None
        accept = handler.accept

        def accepted(*args: Any) -> None:  # a stream's request headers arrived
            self._disarm()
            accept(*args)

        handler.accept = accepted  # this connection's own handler (one per connection)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(OPEN_TIMEOUT_S, self._silent, transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _silent(self, transport: asyncio.BaseTransport) -> None:
        self._deadline = None
        log.info(
            "closed a connection to the grpc:// worker port that opened no stream",
            peer=_address(transport.get_extra_info("peername")),  # (host, port) or None
            within_s=OPEN_TIMEOUT_S,
        )
        transport.abort()  # type: ignore[attr-defined]


class _WorkerPortServer(Server):
    """A grpclib server whose connections must open a stream within :data:`OPEN_TIMEOUT_S`
    (grpclib has no such option: its protocol is made here, for the same handler)."""

    def _protocol_factory(self) -> H2Protocol:
        made = super()._protocol_factory()
        return _OpeningProtocol(made.handler, made.config, made.h2_config)


class GrpcWorkerStream:
    """One worker's ``Connect`` stream as a :class:`~trine_core.WorkerStream`."""

    def __init__(self, stream: grpclib.server.Stream[WorkerMessage, CoordinatorMessage]) -> None:
        self._stream = stream
        self.metadata: Mapping[str, str] = {
            str(name).lower(): _text(value) for name, value in (stream.metadata or {}).items()
        }
        self.peer = _peer(stream)
        self.failure: TrineError | None = None
        """Why reading failed (a message over the limit): the stream ends with it."""

    async def receive(self) -> WorkerMessage | None:
        try:
            return await self._stream.recv_message()
        except grpclib.GRPCError as exc:  # BoundedCodec: a message over the limit
            error: TrineError = (
                PayloadTooLarge(exc.message or "message too large")
                if exc.status is Status.RESOURCE_EXHAUSTED
                else Unavailable(f"the worker's stream failed: {exc.status.name}: {exc.message}")
            )
        except BROKEN as exc:
            error = Unavailable(f"the worker's connection broke: {type(exc).__name__}: {exc}")
        self.failure = self.failure or error
        raise error

    async def send(self, message: CoordinatorMessage) -> None:
        try:
            await self._stream.send_message(message)
        except BROKEN as exc:
            raise Unavailable(f"the worker's connection broke: {type(exc).__name__}") from None


class WorkerPort:
    """The servable grpclib mounts: ``Connect`` hands each stream to the hub."""

    def __init__(self, hub: WorkerHub) -> None:
        self._hub = hub
        self.closing = False
        """Set by the listener before it closes: the streams it cancels end with UNAVAILABLE
        (grpclib would otherwise leave them open without a word, the worker none the wiser)."""

    def __mapping__(self) -> dict[str, Handler]:
        return {
            CONNECT: Handler(
                self._connect, Cardinality.STREAM_STREAM, WorkerMessage, CoordinatorMessage
            )
        }

    async def _connect(
        self, stream: grpclib.server.Stream[WorkerMessage, CoordinatorMessage]
    ) -> None:
        worker = GrpcWorkerStream(stream)
        try:
            await self._hub.serve(worker)
        except TrineError as exc:
            raise ended_with(exc) from None
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # grpclib cancels its handlers as the server closes; this one's answer still goes.
            raise ended_with(Unavailable("the coordinator closed its worker port")) from None
        if worker.failure is not None:
            raise ended_with(worker.failure)


def ended_with(error: TrineError) -> grpclib.GRPCError:
    """The status a worker's stream ends with for ``error``: its code's gRPC status and its
    plain message (the SDK logs it as it is)."""
    return grpclib.GRPCError(STATUS_BY_CODE.get(error.code, Status.INTERNAL), error.message)


class GrpcWorkerListener:
    """A grpclib server on the worker port: ``Connect`` and the health service."""

    def __init__(self, server: Server, port: WorkerPort, address: str) -> None:
        self._server = server
        self._port = port
        self.address = address
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._port.closing = True
            self._server.close()
            await self._server.wait_closed()


async def serve_workers(hub: WorkerHub, address: str, serving: WorkerServing) -> GrpcWorkerListener:
    """Listen for workers at ``grpc://host:port`` (port 0: any free one, named in the listener's
    ``address``)."""
    host, port = split_host_port(address.removeprefix("grpc://"), address)
    port_servable = WorkerPort(hub)
    # SERVING only while the hub answers (the engine behind it); checked at most once a second.
    check = ServiceCheck(hub.healthy, check_ttl=1.0, check_timeout=2.0)
    # A message over the limit is refused from its length prefix (grpclib has no option).
    codec = BoundedCodec(serving.max_message_bytes, serving.limit_setting)
    server = _WorkerPortServer([port_servable, Health({port_servable: [check]})], codec=codec)
    try:
        await server.start(host, port, ssl=serving.tls)
    except OSError as exc:
        raise cannot_listen("grpc", f"{host}:{port} for workers", exc) from None
    # grpclib keeps asyncio's server (private, typed as AbstractServer, which has no
    # ``sockets``); tests/test_worker_transport.py listens on port 0 and dials what this names.
    sockets = getattr(server._server, "sockets", None) or ()
    bound = sockets[0].getsockname()[1] if sockets else port
    return GrpcWorkerListener(server, port_servable, f"grpc://{join_host_port(host, bound)}")


def _text(value: object) -> str:
    """A metadata value as text ("" if absent)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else ""


def _peer(stream: grpclib.server.Stream[WorkerMessage, CoordinatorMessage]) -> str:
    """The remote ``host:port`` of a stream ("" if unknown)."""
    with contextlib.suppress(Exception):
        return _address(stream.peer.addr())
    return ""


def _address(address: Any) -> str:
    """``host:port`` of a socket's address tuple ("" for None)."""
    return f"{address[0]}:{address[1]}" if address else ""

"""The worker stream as a transport carries it: one worker's messages, and the coordinator's hub.

Workers reach the coordinator the way roles reach each other: through a transport plugin chosen by
the address's scheme (``grpc://host:port`` by default). The coordinator implements
:class:`WorkerHub` (what to do with one worker's stream); a transport that carries workers
implements :class:`WorkerTransport` besides :class:`~trine_core.roles.Transport`: it listens at an
address and hands the hub each worker's connection as a :class:`WorkerStream`. The coordinator
never knows the wire, and a third party can carry worker traffic with one entry point (see
docs/transports.md, "Carrying workers").

The messages are ``trine.v1`` ``WorkerMessage`` (worker → coordinator) and ``CoordinatorMessage``
(coordinator → worker), unchanged whatever carries them. A transport must:

- deliver each side's messages in the order they were sent, each whole;
- refuse a message over :attr:`WorkerServing.max_message_bytes` from its length (before reading
  it): :meth:`WorkerStream.receive` raises :class:`~trine_core.errors.PayloadTooLarge` naming both
  sizes and :attr:`WorkerServing.limit_setting`, and the stream ends with that error;
- end the stream with the hub's :class:`~trine_core.errors.TrineError` when ``serve`` raises one
  (its ``code`` and ``message`` reach the worker: a refused token, a worker id in use), and end it
  normally when ``serve`` returns;
- answer :meth:`WorkerStream.receive` with None once the worker ended its side, and raise
  :class:`~trine_core.errors.Unavailable` when the connection broke (reset, killed peer);
- hand the hub the worker's connection metadata (its ``authorization`` token, its
  ``trine-worker-instance``), names in lower case.

``trine_core.testing.worker_transport.WorkerTransportContract`` checks all of it over a real
connection.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage


class WorkerStream(Protocol):
    """One worker's connection, as the coordinator sees it, from the moment it is accepted until
    :meth:`WorkerHub.serve` returns (then the transport ends it and forgets it)."""

    @property
    def metadata(self) -> Mapping[str, str]:
        """What the worker sent with its connection, by lower-case name: ``authorization``
        (``Bearer <token>``) and ``trine-worker-instance`` (empty when it sent nothing)."""
        ...

    @property
    def peer(self) -> str:
        """Who connected, for log lines (``host:port``; "" if unknown)."""
        ...

    async def receive(self) -> WorkerMessage | None:
        """The worker's next message; None once it ended its side. Raises
        :class:`~trine_core.errors.PayloadTooLarge` for a message over the limit and
        :class:`~trine_core.errors.Unavailable` when the connection broke."""
        ...

    async def send(self, message: CoordinatorMessage) -> None:
        """Send one message; returns once the transport took it (it may wait for flow control).
        Raises :class:`~trine_core.errors.Unavailable` when the connection is gone."""
        ...


class WorkerHub(Protocol):
    """What a worker transport hands each accepted stream to: the coordinator's sessions."""

    async def serve(self, stream: WorkerStream) -> None:
        """Serve one worker from its first message until its session ends; called once per
        accepted connection, concurrently for many. Returning ends the stream normally; raising a
        :class:`~trine_core.errors.TrineError` ends it with that error for the worker to read
        (``Unauthenticated``, ``PermissionDenied``, ``WorkerIdInUse``, ``InvalidArgument``,
        ``Unavailable``). Cancelled when the transport closes the listener."""
        ...

    async def healthy(self) -> bool:
        """Whether the coordinator can do its job now (the engine answers): what a transport's
        health check (gRPC's health service) reports."""
        ...


@dataclasses.dataclass(frozen=True)
class WorkerServing:
    """How the coordinator wants its worker port served; a transport applies what it can, and
    refuses (``ConfigError``) what it cannot honour, such as TLS it cannot speak."""

    max_message_bytes: int
    """The largest message accepted from a worker, in bytes; larger ones are refused."""
    limit_setting: str
    """The setting an operator changes to raise ``max_message_bytes`` (named in the refusal),
    e.g. ``coordinator.max_message_bytes``."""
    tls: ssl.SSLContext | None = None
    """The server TLS context (client certificates checked as it says); None: plain text."""


class WorkerListener(Protocol):
    """A worker port a transport opened; the coordinator closes it when it stops."""

    @property
    def address(self) -> str:
        """Where workers connect, with its scheme and the port actually bound."""
        ...

    async def close(self) -> None:
        """Stop accepting, end the streams still open and wait until they are gone."""
        ...


class WorkerTransport(Protocol):
    """A :class:`~trine_core.roles.Transport` that also carries workers (optional: a transport
    without ``serve_workers`` carries roles' contracts only)."""

    async def serve_workers(
        self, hub: WorkerHub, address: str, serving: WorkerServing
    ) -> WorkerListener:
        """Listen for workers at ``address`` (``scheme://…``), handing each connection to
        ``hub.serve``. A port in use is a ``ConfigError`` (:func:`trine_core.cannot_listen`)."""
        ...


ServeWorkers = Callable[[WorkerHub, str, WorkerServing], Awaitable[WorkerListener]]
"""What :meth:`trine_core.roles.RoleContext.serve_workers` calls (the runtime's transports)."""

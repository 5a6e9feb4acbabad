"""Worker transports: how a worker reaches its coordinator, chosen by the address's scheme.

A worker's coordinator address names its transport: ``grpc://host:port`` (a bare ``host:port``
too, the default) is the SDK's own, gRPC over HTTP/2 (:mod:`trine._grpc_transport`). A third
party carries worker traffic another way with a distribution of its own that depends on
``trine-sdk`` and names a :class:`Connector` in the ``trine.worker_transports`` entry-point group,
under the scheme it serves::

    [project.entry-points."trine.worker_transports"]
    nats = "trine_nats.worker:NatsConnector"

The coordinator's side is a ``trine.transports`` plugin with ``serve_workers`` (docs/transports.md,
"Carrying workers"); ``trine_core.testing.worker_transport.WorkerTransportContract`` tests both
sides together.
"""

from __future__ import annotations

import dataclasses
import functools
import ssl
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Protocol

from trine_proto.addresses import worker_scheme
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage

ENTRY_POINT_GROUP = "trine.worker_transports"
LIMIT_SETTING = "derived from the worker's max_payload_bytes"
"""What a built-in connector's refusal of a message over the worker's limit names as its
setting."""


class StreamError(Exception):
    """The coordinator ended the stream with an error: ``code`` is a
    :class:`trine_proto.vocabulary.ErrorCode` value (``unauthenticated``, ``permission_denied``,
    ``worker_id_in_use``: a refusal; ``payload_too_large``, ``unavailable``, ...), ``message`` its
    words for the worker's owner."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class ConnectOptions:
    """What the worker asks of its connection."""

    metadata: Mapping[str, str]
    """Sent with the connection for the coordinator to read before any message:
    ``authorization`` (``Bearer <token>``) and ``trine-worker-instance``."""
    max_message_bytes: int
    """The largest message accepted from the coordinator; a larger one ends the stream."""
    tls: ssl.SSLContext | None = None
    """The client TLS context (``TRINE_TLS_*``); None: plain text. It is this connection's
    worker's own and offers ALPN ``h2`` (gRPC): a connector of another wire sets its own
    protocol on it, as ``tcp://`` does."""


class CoordinatorStream(Protocol):
    """One open stream to the coordinator. Errors: :class:`StreamError` when the coordinator
    ended it with one, :class:`ConnectionError` when the connection failed or broke."""

    async def send(self, message: WorkerMessage) -> None:
        """Send one message, in order after the ones sent before (one sender at a time)."""
        ...

    async def receive(self) -> CoordinatorMessage | None:
        """The coordinator's next message; None once it ended the stream normally."""
        ...

    async def end(self) -> None:
        """End the worker's side (after a drain); the coordinator then ends its own."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent). A stream not ended by both sides is dropped,
        which the coordinator sees as the worker gone."""
        ...


class Connector(Protocol):
    """Opens streams for one scheme; made once per worker, with no arguments."""

    async def connect(self, address: str, options: ConnectOptions) -> CoordinatorStream:
        """Open a stream to the coordinator at ``address`` (with its scheme). Raises
        :class:`ConnectionError` (or ``OSError``, ``TimeoutError``) when it cannot be reached,
        :class:`StreamError` when it refuses the stream at once."""
        ...


class UnknownScheme(ValueError):
    """A worker address whose scheme no installed worker transport serves."""


def installed() -> dict[str, str]:
    """The worker transports installed: scheme → the entry point's object path."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


@functools.cache
def _connector_class(scheme: str) -> type[Connector]:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not matches:
        known = ", ".join(sorted(installed())) or "none"
        raise UnknownScheme(
            f"no worker transport for {scheme}:// is installed (installed: {known}); install "
            f"the package that provides it (entry point group {ENTRY_POINT_GROUP!r})"
        )
    loaded: type[Connector] = matches[0].load()
    return loaded


def connector_for(address: str) -> Connector:
    """A connector for ``address``'s scheme; :class:`UnknownScheme` naming the scheme and the
    installed ones when none serves it."""
    return _connector_class(worker_scheme(address))()

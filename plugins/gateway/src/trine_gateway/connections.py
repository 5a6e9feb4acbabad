"""Limits on the gateway's HTTP connections, enforced below the app (uvicorn 0.54 + httptools).

uvicorn's own options do not bound what matters here (checked in uvicorn 0.54's source):

- ``h11_max_incomplete_event_size`` applies to the h11 parser only; with httptools (installed by
  ``uvicorn[standard]``, and chosen by ``http="auto"``) a request head of any size is buffered
  whole: a 300 MB header cost +412 MB and blocked the loop for seconds;
- ``timeout_keep_alive`` is armed only after a response: a connection that sends nothing, or half
  a request head, or trickles a body, is never timed out;
- ``limit_concurrency`` answers 503 only once a request's head is read, and counts the asking
  connection itself, so it neither stops idle sockets piling up nor leaves room for the last one.

So :class:`BoundedHttpToolsProtocol` adds, per connection: a head larger than
``max_header_bytes`` gets 431 and the socket is closed (memory held: the limit plus one read); a
request whose head and body are not all in within ``read_timeout_s`` of its first byte (or of
the connection's opening) gets 408 (if no response started) and is closed; beyond
``max_connections`` a new connection gets 503 and is closed at once. Between requests uvicorn's
``timeout_keep_alive`` closes an idle keep-alive connection (``idle_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from trine_core import ConfigError, Settings, get_logger
from trine_gateway.settings import (
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    READ_TIMEOUT_S,
    REQUESTS_PER_TURN,
)

log = get_logger("gateway")


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may cost (see the module's docstring), and the HTTP requests let
    into the app per turn of the event loop (:mod:`trine_gateway.turns`)."""

    max_header_bytes: int = MAX_HEADER_BYTES.default
    read_timeout_s: float = READ_TIMEOUT_S.default
    idle_timeout_s: float = IDLE_TIMEOUT_S.default
    max_connections: int = MAX_CONNECTIONS.default
    requests_per_turn: int = REQUESTS_PER_TURN.default

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The ``[gateway]`` limits; a ConfigError names one that is not positive."""
        limits = cls(
            max_header_bytes=settings[MAX_HEADER_BYTES],
            read_timeout_s=settings[READ_TIMEOUT_S],
            idle_timeout_s=settings[IDLE_TIMEOUT_S],
            max_connections=settings[MAX_CONNECTIONS],
            requests_per_turn=settings[REQUESTS_PER_TURN],
        )
        for setting in (MAX_HEADER_BYTES, READ_TIMEOUT_S, IDLE_TIMEOUT_S, MAX_CONNECTIONS):
            if settings[setting] <= 0:
                raise ConfigError(f"{setting.key}: must be positive, got {settings[setting]}")
        if limits.requests_per_turn < 0:
            raise ConfigError(
                f"{REQUESTS_PER_TURN.key}: must be 0 (no limit) or more, "
                f"got {limits.requests_per_turn}"
            )
        return limits

    def protocol(self) -> type[asyncio.Protocol]:
        """The protocol class uvicorn serves connections with (``uvicorn.Config(http=...)``)."""
        limits = self

        class _Protocol(BoundedHttpToolsProtocol):
            pass

        _Protocol.limits = limits
        return _Protocol


def _error(status: int, code: str, message: str) -> bytes:
    """A complete ``Connection: close`` response in the API's JSON error shape."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        b"content-type: application/json\r\n"
        + b"content-length: %d\r\n" % len(body)
        + b"connection: close\r\n\r\n"
    )
    return STATUS_LINE[status] + head + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size cap, a read deadline and a connection cap.

    State: ``_head_bytes`` counts what was fed while a request head was incomplete (reset when
    a request completes); ``_deadline`` is the read timer, armed when a request's first byte
    arrives (or the connection opens) and cancelled when its body is complete.
    """

    limits: HttpLimits = HttpLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Not added to the connections: refused before any byte is read.
            log.warning("connection refused: too many", max_connections=self.limits.max_connections)
            transport.write(
                _error(
                    503,
                    "too_many_connections",
                    "the gateway serves as many connections as "
                    "it may (gateway.max_connections); try again later",
                )
            )
            transport.close()
            self.transport = transport
            self._refused = True
            return
        super().connection_made(transport)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.parser is None:
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._deadline is None:  # the first byte of a request on a kept-alive connection
                self._arm_deadline()
        super().data_received(data)
        # Checked after feeding: a read holding a small head and the start of a large body is
        # no head overflow (the head completed during the feed and reset _in_head).
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(
                431,
                "header_too_large",
                f"the request's line and headers exceed {self.limits.max_header_bytes} bytes "
                "(gateway.max_header_bytes)",
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self._disarm_deadline()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request line or headers httptools cannot parse, in the API's
        JSON error shape (issue 14) instead of plain text; the connection is closed as before."""
        message = f"the request is not valid HTTP/1.1: {msg}"
        self.transport.write(_error(400, "malformed_request", message))
        self.transport.close()

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._deadline = self.loop.call_later(self.limits.read_timeout_s, self._read_timed_out)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app answered already; its request body never came
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request did not arrive within {self.limits.read_timeout_s:g} s "
            "(gateway.read_timeout_s)",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` and close; the parser is dropped so that no more is buffered."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.write(_error(status, code, message))
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

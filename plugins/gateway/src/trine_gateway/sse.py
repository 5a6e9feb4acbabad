"""A run's events as server-sent events.

One event per message::

    id: 3
    event: step.completed
    data: {"seq":3,"type":"step.completed","name":"charge","data":{...},"at":"…Z"}

The stream ends after the run's final event (the backend's subscription ends there). While no
event comes, a comment line (``: keep-alive``) is sent every ``keepalive_s`` so proxies keep the
connection. If the subscription fails mid-stream (the status line is already sent), one
``stream.error`` event (:data:`~trine_proto.vocabulary.STREAM_ERROR_EVENT`) carries
``{"error": {"code", "message"}}`` and the stream ends.

Why a response of its own rather than litestar's ``ServerSentEvent``: a held stream is what a
gateway has most of (10,000 at once is a workload we measure), and litestar's streaming response
costs an anyio task group, a disconnect-listening task and its objects per stream, on top of the
queue and pump task it needed for keep-alives. Here a stream is two tasks: the response's own,
which reads the subscription and sends each event (its ``await send`` waits while the client
does not read, so the subscription is read only as fast as the client consumes: nothing is
buffered in the gateway; in ``split`` the gRPC stream's unread bytes stay within its HTTP/2
window and the engine's sender waits too), and a *watcher* spawned on the :class:`Lifecycle`,
which waits for the client's disconnect and sends the keep-alives in between. A disconnect, or
:meth:`Lifecycle.close` at shutdown, cancels the response's task, which closes the subscription.

The stream itself is :class:`Stream`. A plain request is served by
:mod:`trine_gateway.events_front` before litestar's router (it sends :data:`START`, then runs a
:class:`Stream`); litestar's route (and the console's) returns an :class:`EventStream`, a litestar
response around one.

Both tasks call ``send``: each call carries one whole SSE message, and uvicorn writes each call's
body with one ``transport.write``, so messages never interleave inside each other.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response.base import ASGIResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Send

from trine_core import Backend, TrineError, get_logger
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.metrics import SSE_STREAMS
from trine_gateway.serialization import event_json
from trine_proto.trine.v1 import Event, SubscribeRequest
from trine_proto.vocabulary import STREAM_ERROR_EVENT, ErrorCode

log = get_logger("gateway")

KEEPALIVE = b": keep-alive\r\n\r\n"
_LINE_BREAK = re.compile(r"[\r\n]")
HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


def message(event: Event) -> bytes:
    """One event as an SSE message (its JSON is compact: it holds no line break)."""
    kind = _LINE_BREAK.sub("", event.type)
    return f"id: {event.seq}\r\nevent: {kind}\r\ndata: {event_json(event)}\r\n\r\n".encode()


def error_message(exc: BaseException) -> bytes:
    if isinstance(exc, TrineError):
        error: dict[str, Any] = exc.to_dict()
    else:
        error = {"code": ErrorCode.INTERNAL, "message": "internal error"}
    data = msgspec.json.encode({"error": error}).decode()
    return f"event: {STREAM_ERROR_EVENT}\r\ndata: {data}\r\n\r\n".encode()


def _body(chunk: bytes, more: bool = True) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"cache-control", b"no-cache"),
        (b"connection", b"keep-alive"),
        (b"x-accel-buffering", b"no"),
        (b"content-type", b"text/event-stream; charset=utf-8"),
    ],
}
"""The status line and headers of a stream, as litestar's response for :class:`EventStream`
sends them (the fast path of :mod:`trine_gateway.events_front` sends the same)."""


class EventStream(ASGIResponse):
    """The ASGI response of ``GET /v1/runs/{id}/events`` when litestar serves it (the console's
    copy, and a request :mod:`trine_gateway.events_front` leaves to litestar)."""

    __slots__ = ("_stream",)
    _should_set_content_length = False

    def __init__(self, stream: Stream) -> None:
        super().__init__(media_type="text/event-stream", headers=HEADERS)
        self._stream = stream

    async def send_body(self, send: Send, receive: Receive) -> None:
        await self._stream.send_body(send, receive)


class Stream:
    """One stream's body: the subscription read and sent, and its watcher (the module's doc)."""

    __slots__ = (
        "_backend",
        "_ended_by_watcher",
        "_keepalive_s",
        "_last_sent",
        "_lifecycle",
        "_request",
        "_streaming",
    )

    def __init__(
        self,
        backend: Backend,
        lifecycle: Lifecycle,
        run_id: str,
        after_seq: int,
        keepalive_s: float,
    ) -> None:
        self._backend = backend
        self._lifecycle = lifecycle
        self._request = SubscribeRequest(run_id=run_id, after_seq=after_seq)
        self._keepalive_s = keepalive_s
        self._last_sent = time.monotonic()
        self._streaming = False
        self._ended_by_watcher = False

    async def _send(self, send: Send, chunk: bytes) -> None:
        self._last_sent = time.monotonic()
        await send(_body(chunk))

    async def send_body(self, send: Send, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._streaming = True
        watcher = self._lifecycle.spawn(
            self._watch(task, send, receive), name=f"trine-sse-{self._request.run_id}"
        )
        SSE_STREAMS.inc()
        try:
            await self._stream(send)
        except asyncio.CancelledError:
            if not self._ended_by_watcher:
                raise  # cancelled by the server itself: let it through
            task.uncancel()  # the client went away, or the gateway shuts down: end cleanly
        finally:
            self._streaming = False
            watcher.cancel()
            SSE_STREAMS.dec()
        await send(_body(b"", more=False))  # after a disconnect uvicorn drops it

    async def _stream(self, send: Send) -> None:
        subscription: AsyncIterator[Event] = self._backend.subscribe(self._request)
        try:
            async for event in subscription:
                await self._send(send, message(event))
        except TrineError as exc:
            await self._send(send, error_message(exc))
        except Exception as exc:
            log.error("event subscription failed", run_id=self._request.run_id, exc_info=exc)
            await self._send(send, error_message(exc))
        finally:
            aclose = getattr(subscription, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _watch(self, stream: asyncio.Task[Any], send: Send, receive: Receive) -> None:
        """Until the client disconnects, a keep-alive whenever nothing was sent for
        ``keepalive_s``; then, or when the lifecycle's close cancels it, end the stream."""
        try:
            while True:
                wait = self._last_sent + self._keepalive_s - time.monotonic()
                if wait <= 0:
                    await self._send(send, KEEPALIVE)
                    continue
                try:
                    async with asyncio.timeout(wait):
                        got = await receive()
                except TimeoutError:
                    continue
                if got["type"] == "http.disconnect":
                    return
        finally:
            if self._streaming:
                self._ended_by_watcher = True
                stream.cancel()

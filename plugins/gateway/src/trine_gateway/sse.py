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

The subscription is read by a separate task (the *pump*) into a queue: the response waits on the
queue with a timeout, which a keep-alive needs and which cancelling an iterator's ``__anext__``
could not give without closing it. When the client disconnects, litestar cancels the response and
its ``finally`` cancels the pump, which closes the subscription; :meth:`Lifecycle.close` cancels
every pump at shutdown, which ends every stream.

The queue holds at most :data:`BUFFER_EVENTS` events: the pump reads the subscription only as
fast as the client consumes (a client that stops reading fills its socket, then uvicorn stops
the response, then the queue fills and the pump waits). In ``split`` the subscription is a gRPC
stream, whose unread bytes stay within its HTTP/2 window (``trine_transport_grpc.client``), and
the engine's sender waits too. Before this, a client that did not read had the gateway buffer
the run's whole history (~95 MB each).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeAlias

import msgspec
from litestar.response import ServerSentEventMessage

from trine_core import Backend, TrineError, get_logger
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.metrics import SSE_STREAMS
from trine_gateway.serialization import event_json
from trine_proto.trine.v1 import Event, SubscribeRequest
from trine_proto.vocabulary import STREAM_ERROR_EVENT, ErrorCode

log = get_logger("gateway")

KEEPALIVE = ServerSentEventMessage(data=None, comment="keep-alive")
_Item: TypeAlias = Event | BaseException | None
"""What the pump hands over: an event, the error that ended the subscription, or ``None`` (end)."""
BUFFER_EVENTS = 32
"""Events read ahead of the client per stream (each at most ``max_payload_bytes``)."""


async def _close(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _pump(backend: Backend, request: SubscribeRequest, queue: asyncio.Queue[_Item]) -> None:
    subscription = backend.subscribe(request)
    try:
        async for event in subscription:
            await queue.put(event)  # waits while the client has BUFFER_EVENTS unread
    except TrineError as exc:
        await queue.put(exc)
    except Exception as exc:
        log.error("event subscription failed", run_id=request.run_id, exc_info=exc)
        await queue.put(exc)
    finally:
        await _close(subscription)


def _error_message(exc: BaseException) -> ServerSentEventMessage:
    if isinstance(exc, TrineError):
        error: dict[str, Any] = exc.to_dict()
    else:
        error = {"code": ErrorCode.INTERNAL, "message": "internal error"}
    return ServerSentEventMessage(
        data=msgspec.json.encode({"error": error}).decode(), event=STREAM_ERROR_EVENT
    )


async def event_stream(
    backend: Backend,
    lifecycle: Lifecycle,
    run_id: str,
    after_seq: int,
    keepalive_s: float,
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """The SSE messages of a run's events with ``seq > after_seq``, live until the final one."""
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=BUFFER_EVENTS)
    request = SubscribeRequest(run_id=run_id, after_seq=after_seq)
    pump = lifecycle.spawn(_pump(backend, request, queue), name=f"trine-sse-{run_id}")
    # Also when the pump is cancelled before it ever ran: the stream must learn that it ended.
    # A full queue has no room for the mark: the loop then ends once it drained the queue.
    pump.add_done_callback(lambda _: None if queue.full() else queue.put_nowait(None))
    SSE_STREAMS.inc()
    try:
        while True:
            if queue.empty() and pump.done():
                return  # ended with a full queue (no end mark), now drained
            if queue.empty():
                try:
                    async with asyncio.timeout(keepalive_s):
                        item = await queue.get()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
            else:
                item = queue.get_nowait()
            if item is None:
                return
            if isinstance(item, BaseException):
                yield _error_message(item)
                return
            yield ServerSentEventMessage(data=event_json(item), event=item.type, id=item.seq)
    finally:
        # No await here: after a disconnect, litestar's cancel scope cancels every await again.
        pump.cancel()
        SSE_STREAMS.dec()

"""Following a run's events: the SSE stream of ``GET /v1/runs/{id}/events`` as :class:`Event`
objects, resumed across breaks until the run's final event.

The gateway numbers a run's events 1, 2, 3… (the SSE ``id``) and answers a request carrying
``Last-Event-ID: N`` with the events after ``N``, so a stream that breaks is picked up where it
stopped: :func:`follow` remembers the last id it yielded and asks again with it, backing off
between tries. What counts as a break, to be resumed:

- the connection fails or resets, or goes silent for longer than :data:`IDLE_TIMEOUT_S` (the
  gateway sends a keep-alive comment every 15 s);
- the answer is an HTTP 500, 502, 503 or 504 (the runtime is restarting, the engine is away);
- the stream's error event (``stream.error``, :data:`~trine_proto.vocabulary.STREAM_ERROR_EVENT`)
  with a code retrying can mend (``unavailable``, ``internal``);
- the stream ends before the run's final event (a gateway shutting down ends its streams);
- an event id that skips ahead of the next one expected (never sent by a sound gateway).

Any other answer (404: no such run; 400; 410: the cursor is older than what is kept) is raised
at once. An id at or below the last one yielded is a duplicate and skipped, so the caller sees
every event once, in order, without a gap. The iteration ends after the final event
(``run.completed``, ``run.failed``, ``run.cancelled``). ``reconnect_timeout`` bounds each outage:
from the moment the stream broke until it works again (an event or a keep-alive arrives); past it
the last error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx

from trine_proto.vocabulary import FINAL_EVENT_TYPES, STREAM_ERROR_EVENT, ErrorCode

from .errors import ClientError

IDLE_TIMEOUT_S = 60.0
"""A stream silent this long (no event, no keep-alive: the gateway sends one every 15 s) is taken
for broken and resumed."""
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
RETRYABLE_STREAM_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL, ""})
_EPOCH = datetime.fromtimestamp(0, tz=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a run, as :meth:`trine.Client.events` yields it.

    ``id`` is its number in the run (1, 2, 3…; the SSE id, to resume after with
    ``last_event_id``); ``type`` what happened (``run.started``, ``step.completed``,
    ``custom``…); ``name`` the step's, the signal's, the child function's or the custom event's
    name (the run's function for ``run.*`` events); ``data`` its JSON data; ``at`` when the engine
    recorded it (an aware UTC datetime).
    """

    id: int
    type: str
    name: str
    data: Any
    at: datetime

    @property
    def final(self) -> bool:
        """The run's last event: ``run.completed``, ``run.failed`` or ``run.cancelled``."""
        return self.type in FINAL_EVENT_TYPES


class _Break(Exception):
    """The stream broke in a way a resume may mend; ``error`` is what to raise if it does not."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Frame:
    """One server-sent event: its ``id``, ``event`` and ``data`` fields (data lines joined)."""

    id: str | None
    event: str
    data: str


async def follow(
    http: httpx.AsyncClient,
    run_id: str,
    *,
    after: int | None,
    reconnect_timeout: float | None,
    connect_timeout: float,
) -> AsyncIterator[Event]:
    """The run's events after ``after`` (from the first when None), resumed across breaks, until
    the final one. See the module's documentation."""
    last = after
    outage_since: float | None = None
    backoff = INITIAL_BACKOFF_S
    while True:
        yielded = False
        try:
            async with contextlib.aclosing(_stream(http, run_id, last, connect_timeout)) as items:
                async for item in items:
                    outage_since, backoff = None, INITIAL_BACKOFF_S  # the stream works
                    if item is None:
                        continue
                    last, yielded = item.id, True
                    yield item
                    if item.final:
                        return
            if not yielded and await _is_final(http, run_id, connect_timeout):
                return  # resumed at or past its final event: nothing more will come
            ended = f"the event stream of run {run_id} ended before the run's final event"
            raise _Break(ClientError(503, ErrorCode.UNAVAILABLE, ended))
        except _Break as broken:
            now = time.monotonic()
            outage_since = now if outage_since is None else outage_since
            if reconnect_timeout is not None and now - outage_since >= reconnect_timeout:
                raise broken.error from None
            delay = backoff
            if reconnect_timeout is not None:
                delay = min(delay, outage_since + reconnect_timeout - now)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


async def _stream(
    http: httpx.AsyncClient, run_id: str, after: int | None, connect_timeout: float
) -> AsyncGenerator[Event | None, None]:
    """One request's events after ``after``, each once and in order, and ``None`` for each
    keep-alive; a break raises ``_Break``."""
    headers = {"Last-Event-ID": str(after)} if after is not None else {}
    timeout = httpx.Timeout(connect_timeout, read=IDLE_TIMEOUT_S)
    expected = (after or 0) + 1
    try:
        async with http.stream(
            "GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                error = client_error(response)
                if response.status_code in RETRYABLE_STATUSES:
                    raise _Break(error)
                raise error
            async for frame in _frames(response.aiter_lines()):
                if frame is None:
                    yield None
                elif frame.event == STREAM_ERROR_EVENT:
                    raise_stream_error(frame)
                elif frame.id is not None:
                    event = event_of(frame)
                    if event.id < expected:
                        continue  # one the caller has (a sound gateway sends none)
                    if event.id > expected:
                        skipped = f"from event {expected - 1} to {event.id}"
                        what = f"the event stream of run {run_id} skipped {skipped}"
                        raise _Break(ClientError(502, "event_gap", what))
                    expected += 1
                    yield event
    except httpx.TransportError as exc:  # refused, reset, cut mid-body, silent too long
        raise _Break(exc) from exc


async def _is_final(http: httpx.AsyncClient, run_id: str, connect_timeout: float) -> bool:
    try:
        response = await http.get(f"/v1/runs/{run_id}", timeout=connect_timeout)
    except httpx.TransportError as exc:
        raise _Break(exc) from exc
    if response.status_code >= 400:
        error = client_error(response)
        if response.status_code in RETRYABLE_STATUSES:
            raise _Break(error)
        raise error
    status = response.json().get("status")
    return status in ("completed", "failed", "cancelled")


def raise_stream_error(frame: _Frame) -> NoReturn:
    """The gateway's ``stream.error``: a break when a retry may mend it, else raised."""
    try:
        error = json.loads(frame.data).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("code", ""))
    failure = ClientError(
        503 if code in RETRYABLE_STREAM_CODES else 500,
        code or ErrorCode.UNAVAILABLE,
        str(error.get("message", "the event stream failed")),
        error.get("details"),
    )
    if code in RETRYABLE_STREAM_CODES:
        raise _Break(failure)
    raise failure


def event_of(frame: _Frame) -> Event:
    """An SSE message of the gateway (``data``: ``{seq, type, name, data, at}``) as an Event."""
    body = json.loads(frame.data) if frame.data else {}
    if not isinstance(body, dict):
        body = {"data": body}
    at = body.get("at")
    return Event(
        id=int(frame.id if frame.id is not None else body["seq"]),
        type=str(body.get("type") or frame.event),
        name=str(body.get("name") or ""),
        data=body.get("data"),
        at=datetime.fromisoformat(at).astimezone(UTC) if at else _EPOCH,
    )


async def _frames(lines: AsyncIterator[str]) -> AsyncIterator[_Frame | None]:
    """Server-sent events from text lines: ``id``/``event``/``data`` fields, blank-line ended;
    ``None`` for a comment (``:``), which the gateway sends as a keep-alive."""
    event_id: str | None = None
    event_type = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield _Frame(event_id, event_type, "\n".join(data))
            event_id, event_type, data = None, "message", []
            continue
        if line.startswith(":"):
            yield None
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event_type = value
        elif field == "id":
            event_id = value
    # An event the stream ended in the middle of is incomplete: dropped, as the SSE spec says.


def client_error(response: httpx.Response) -> ClientError:
    """The gateway's ``{"error": {"code", "message", "details"}}``, or the HTTP status alone."""
    try:
        body = response.json()
        error = body["error"]
        return ClientError(
            response.status_code,
            str(error.get("code", "")),
            str(error.get("message", "")),
            error.get("details"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:500]
        return ClientError(response.status_code, f"http_{response.status_code}", text)
